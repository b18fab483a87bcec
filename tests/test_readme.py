"""The README's promises: its two commands work, and it stays a front page."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def first_block() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", README, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_the_readme_is_a_front_page() -> None:
    # The reference lives in docs/ (tests/test_docs.py); the README stays short.
    assert len(README.splitlines()) <= 200
    for page in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / page).exists(), page


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = first_block()[2]
    assert "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited early: {process.stdout.read()}")  # type: ignore[union-attr]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port}")


def send_like_curl(curl_line: str) -> str:
    """The README's curl line, sent with Python's own HTTP client: the test needs no curl."""
    words = shlex.split(curl_line)
    assert words[0] == "curl", curl_line
    method, data, url = "GET", None, None
    rest = iter(words[1:])
    for word in rest:
        if word.startswith("-X"):
            method = word[2:] or next(rest)
        elif word in ("-d", "--data"):
            data = next(rest).encode()
        elif not word.startswith("-"):
            url = word
        else:
            raise AssertionError(f"the README's curl line uses {word!r}, which this test does not translate")
    assert url is not None, curl_line
    request = urllib.request.Request(url, data=data, method=method)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
    with direct.open(request, timeout=20) as answer:
        return answer.read().decode()


def test_the_curl_translation_keeps_method_url_and_body() -> None:
    with http_echo() as port:
        echoed = send_like_curl(f"curl -XPOST \"http://127.0.0.1:{port}/x?y=1\" -d '{{\"a\": 1}}'")
    assert echoed == 'POST /x?y=1 {"a": 1}'


@contextlib.contextmanager
def http_echo() -> Iterator[int]:
    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = f"{self.command} {self.path} ".encode() + body
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(60)
def test_first_command_runs_the_hello_handler_and_its_curl_line_gets_the_answer() -> None:
    run_line, curl_line = first_block()[:2]
    # The install steps are the fresh machine's; here the package is installed already, in the
    # environment running these tests, so its bin directory stands in for .venv/bin.
    command = run_line.rsplit("&& ", 1)[1].replace(".venv/bin/", str(Path(sys.executable).parent) + "/")
    # The README's line as written, on a port that is free here rather than 8080.
    readme_port = re.search(r"//localhost:(\d+)/", curl_line).group(1)
    assert "--port" not in command and readme_port == "8080", (command, curl_line)
    port = _free_port()
    command += f" --port {port}"
    curl_line = curl_line.replace(f"localhost:{readme_port}/", f"localhost:{port}/")
    process = subprocess.Popen(shlex.split(command), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for_port(port, process)
        assert '"message": "Hello, Lambda!"' in send_like_curl(curl_line)
        process.send_signal(signal.SIGINT)  # Ctrl-C: the runtime drains and everything exits
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output
        assert "Drained" in output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
