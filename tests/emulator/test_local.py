"""``lmi-gevent local`` (lmi_gevent.emulator.local) end to end, with a stand-in runtime."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lmi_gevent.emulator import local

pytestmark = pytest.mark.timeout(30)

STANDIN = Path(__file__).with_name("standin_runtime.py")
REPO = Path(__file__).resolve().parents[2]


class LocalRun:
    """``python -m lmi_gevent.emulator.local ...`` with its output collected line by line."""

    def __init__(self, *args: str, mode: str = "serve") -> None:
        env = dict(os.environ, STANDIN_MODE=mode,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        env[local.RUNTIME_CMD_ENV] = f"{sys.executable} {STANDIN}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lmi_gevent.emulator.local", "app.handler", "--port", "0", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_line(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r} in {self.output()!r}")

    def output(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float = 15) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def runs():
    started: list[LocalRun] = []

    def start(*args: str, mode: str = "serve") -> LocalRun:
        run = LocalRun(*args, mode=mode)
        started.append(run)
        return run

    yield start
    for run in started:
        run.close()


def curl(url: str, payload: object) -> tuple[int, dict[str, str], bytes]:
    """What the printed curl line does, with http.client."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/" + path, body=json.dumps(payload))
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_dead(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not pid_alive(pid)


def test_local_serves_curl_and_forwards_sigint_for_a_drain(runs):
    run = runs("--concurrency", "2", "--env", "EXTRA=yes")
    url = run.wait_line(r"try: curl -s -XPOST (\S+)").group(1)
    assert url.endswith("/2015-03-31/functions/function/invocations")
    status, _, body = curl(url, {"hi": 1})
    answer = json.loads(body)
    assert status == 200
    assert answer["event"] == {"hi": 1} and answer["handler"] == "app.handler"
    assert answer["env"]["AWS_LAMBDA_MAX_CONCURRENCY"] == "2"
    assert answer["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == "lambda-managed-instances"
    assert answer["env"]["EXTRA"] == "yes"
    assert answer["env"]["LAMBDA_TASK_ROOT"] == os.getcwd()
    run.proc.send_signal(signal.SIGINT)
    assert run.wait() == 0
    assert "stand-in: drained after signal 2" in run.output()
    assert wait_dead(answer["pid"])


def test_local_with_concurrency_one_sets_no_max_concurrency(runs, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_MAX_CONCURRENCY", "64")  # the shell's value must not leak
    run = runs()
    url = run.wait_line(r"try: curl -s -XPOST (\S+)").group(1)
    answer = json.loads(curl(url, {})[2])
    assert answer["env"]["AWS_LAMBDA_MAX_CONCURRENCY"] is None
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait() == 0


def test_local_init_error_is_printed_and_exits_non_zero(runs):
    run = runs(mode="init_error")
    code = run.wait()
    assert code != 0
    assert "init error Runtime.ImportModuleError: No module named 'nothere'" in run.output()


def test_local_exits_with_the_code_of_a_crashed_runtime(runs):
    run = runs(mode="crash")
    assert run.wait() == 3
    assert "runtime exited with code 3" in run.output()


def test_local_second_signal_kills_a_runtime_that_does_not_drain(runs):
    run = runs(mode="stubborn")
    pid = int(run.wait_line(r"stand-in: ready pid=(\d+)").group(1))
    run.proc.send_signal(signal.SIGTERM)
    run.wait_line(r"forwarded to the runtime")
    assert pid_alive(pid)
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait() != 0
    assert wait_dead(pid)


def test_local_killed_outright_takes_the_runtime_with_it(runs):
    run = runs()
    pid = int(run.wait_line(r"stand-in: ready pid=(\d+)").group(1))
    run.proc.kill()
    run.wait()
    assert wait_dead(pid)


@pytest.mark.parametrize("argv, flag", [
    (["app.handler", "--concurrency", "0"], "--concurrency"),
    (["app.handler", "--port", "http"], "--port"),
    (["app.handler", "--env", "NOEQUALS"], "--env"),
    (["app.handler", "--timeout", "-1"], "--timeout"),
    (["app.handler", "--bogus"], "--bogus"),
    ([], "HANDLER"),
])
def test_bad_arguments_name_the_flag_and_exit_2(argv, flag, capsys):
    assert local.main(argv) == 2
    assert flag in capsys.readouterr().err


def test_only_non_loopback_hosts_are_warned_about():
    assert local.host_warning("127.0.0.1") is None
    assert local.host_warning("::1") is None
    assert local.host_warning("localhost") is None
    assert "no authentication" in (local.host_warning("0.0.0.0") or "")


def test_runtime_command_defaults_to_lmi_gevent_and_can_be_replaced(monkeypatch):
    monkeypatch.delenv(local.RUNTIME_CMD_ENV, raising=False)
    assert local.runtime_command("app.fn") == [sys.executable, "-m", "lmi_gevent", "app.fn"]
    assert local.runtime_command("app.fn", ["run", "{handler}", "-v"]) == ["run", "app.fn", "-v"]
    monkeypatch.setenv(local.RUNTIME_CMD_ENV, "python3 stand-in.py")
    assert local.runtime_command("app.fn") == ["python3", "stand-in.py", "app.fn"]
