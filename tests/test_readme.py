"""The README's promises: its two commands work, and it stays a front page."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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


@pytest.mark.timeout(60)
def test_first_command_runs_the_hello_handler_and_curl_gets_its_answer() -> None:
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
        answer = subprocess.run(curl_line, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=20)
        assert answer.returncode == 0, answer.stderr
        assert '"message": "Hello, Lambda!"' in answer.stdout
        process.send_signal(signal.SIGINT)  # Ctrl-C: the runtime drains and everything exits
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output
        assert "Drained" in output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
