"""Fixtures for `lmi-gevent check`: a slow HTTP server on loopback, and a way to run check."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

import pytest

from lmi_gevent import check


class SlowServer:
    """Answers every GET after ``delay`` seconds; counts how many requests overlapped."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/slow"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # http.server's naming
                server._enter()
                try:
                    time.sleep(server.delay)
                finally:
                    server._leave()
                body = b'{"slow": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _enter(self) -> None:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def start(self) -> SlowServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def slow_server() -> Iterator[SlowServer]:
    server = SlowServer(delay=0.3).start()
    yield server
    server.stop()


class CheckRun(NamedTuple):
    code: int
    stdout: str
    stderr: str

    def report(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    def kinds(self, severity: str) -> list[str]:
        return [f["class"] for f in self.report()["findings"] if f["severity"] == severity]


@pytest.fixture
def run_check(capsys: pytest.CaptureFixture[str]) -> Callable[..., CheckRun]:
    """``run_check("app.handler", "--root", root, ...)``: check.main in this process."""

    def run(*argv: object) -> CheckRun:
        capsys.readouterr()  # start from empty buffers
        code = check.main([str(arg) for arg in argv])
        captured = capsys.readouterr()
        return CheckRun(code, captured.out, captured.err)

    return run
