"""Helpers shared by the integration tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from lmi_gevent.emulator.api import Emulator, RuntimeProcess

REPO = Path(__file__).resolve().parents[1]
RUNTIME = [sys.executable, "-m", "lmi_gevent"]
OFFICIAL_RUNTIME = [sys.executable, "-m", "awslambdaric"]


def start_runtime(emulator: Emulator, root: Path, handler: str = "app.handler", *,
                  concurrency: int = 1, env: dict[str, str] | None = None,
                  argv: list[str] | None = None, wait: bool = True) -> RuntimeProcess:
    """Start lmi-gevent (or ``argv``) against ``emulator`` and wait for its polls."""
    full_env = dict(env or {})
    if concurrency > 1:
        full_env.setdefault("AWS_LAMBDA_MAX_CONCURRENCY", str(concurrency))
        # One process unless the test asks for workers: `auto` would depend on the machine.
        full_env.setdefault("LMI_GEVENT_WORKERS", "1")
    runtime = emulator.start_runtime((argv or RUNTIME) + [handler], env=full_env, cwd=root)
    if wait:
        try:
            emulator.wait_for(lambda stats: stats["open_polls"] >= concurrency, timeout=20)
        except TimeoutError:
            raise AssertionError(f"runtime never polled; output:\n{runtime.output()}") from None
    return runtime


def wait_delivered(emulator: Emulator, count: int, timeout: float = 10) -> None:
    """Wait until ``count`` invocations were written to the runtime's sockets.

    The emulator counts an invocation in flight when it hands it to a poll, a moment before
    the bytes go out; a signal test that must not race the delivery waits for this instead.
    """
    emulator.wait_for(lambda stats: stats["status_codes"]["next"].get("200", 0) >= count,
                      timeout=timeout)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def init_error(emulator: Emulator) -> tuple[str, dict[str, Any]]:
    """The init error the emulator recorded: its Error-Type header and its parsed body."""
    recorded = emulator.stats()["init_error"]
    assert recorded is not None, "no init error was posted"
    return recorded["type"], json.loads(recorded["body"])


def run_python(code: str, *args: str, timeout: float = 60) -> Any:
    """Run ``code`` in a fresh interpreter that imports this checkout's lmi_gevent; it prints
    one JSON document last, which is returned."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def alive(pid: int) -> bool:
    """Running: a zombie waiting for its reaper counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
