"""The bench's helper processes: the load generator and the slow upstream server.

Both are children speaking JSON lines, each in its own session so that a kill reaches
everything it started, and both exit by themselves when their stdin closes, so they cannot
outlive the bench even if it dies without cleaning up.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Mapping

# The directory holding the ``bench`` package, so the children import this checkout.
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ServiceError(RuntimeError):
    """A helper process failed, answered out of turn or said nothing in time."""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PROJECT_ROOT, path) if p)
    return env


class JsonLineProcess:
    """A child that reads JSON lines on stdin and writes JSON lines on stdout."""

    def __init__(self, module: str, env: Mapping[str, str] | None = None) -> None:
        self.name = module
        self.popen = subprocess.Popen(
            [sys.executable, "-m", module], cwd=PROJECT_ROOT, env=dict(env or child_env()),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        self._pending = b""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def send(self, message: Mapping[str, Any]) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write((json.dumps(message) + "\n").encode())
        self.popen.stdin.flush()

    def read(self, timeout: float) -> dict[str, Any]:
        """The next line as a dict; raises ServiceError after ``timeout`` s or on exit."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            self._fill(deadline)
        line, _, self._pending = self._pending.partition(b"\n")
        return json.loads(line)

    def _fill(self, deadline: float) -> None:
        assert self.popen.stdout is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServiceError(f"{self.name} said nothing for too long")
        with selectors.DefaultSelector() as selector:
            selector.register(self.popen.stdout, selectors.EVENT_READ)
            if not selector.select(remaining):
                raise ServiceError(f"{self.name} said nothing for too long")
        # Raw reads: a buffered readline could hold a second line where select cannot see it.
        chunk = os.read(self.popen.stdout.fileno(), 65536)
        if not chunk:
            raise ServiceError(f"{self.name} exited with {self.popen.wait(5)}")
        self._pending += chunk

    def stop(self) -> None:
        """Close stdin (the child exits by itself), then make sure of it."""
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.popen.wait(3)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()

    def __enter__(self) -> JsonLineProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Upstream(JsonLineProcess):
    """``bench.upstream``: answers GETs after ``?ms=`` milliseconds, on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__("bench.upstream")
        try:
            self.port: int = self.read(timeout=20)["port"]
        except BaseException:
            self.stop()
            raise

    def url(self, delay_ms: float) -> str:
        return f"http://127.0.0.1:{self.port}/?ms={delay_ms:g}"


Callback = Callable[[], None]


class LoadGenerator(JsonLineProcess):
    """``bench.load``: closed-loop invocations from its own process."""

    def __init__(self) -> None:
        super().__init__("bench.load")
        try:
            self.read(timeout=20)  # {"event": "ready"}
        except BaseException:
            self.stop()
            raise

    def run(self, job: Mapping[str, Any], on_measuring: Callback | None = None,
            on_window_closed: Callback | None = None) -> dict[str, Any]:
        """Run one job; the callbacks fire as the measured window opens and closes."""
        self.send(job)
        limit = job["warmup"] + job["duration"] + job["timeout"] + 30
        deadline = time.monotonic() + limit
        while True:
            message = self.read(timeout=max(0.1, deadline - time.monotonic()))
            event = message.get("event")
            if event == "measuring" and on_measuring is not None:
                on_measuring()
            elif event == "window_closed" and on_window_closed is not None:
                on_window_closed()
            elif event == "done":
                return message
            elif event == "failed":
                raise ServiceError(f"load generator failed: {message.get('error')}")
