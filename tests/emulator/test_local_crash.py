"""``lmi-gevent local`` survives its runtime: a runtime that segfaults or calls ``os._exit``
mid-invocation is answered to the caller as the platform answers (Runtime.ExitError naming the
signal or the exit status), started again, and the log names signals by name."""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lmi_gevent.emulator import local as local_module
from tests.emulator.test_local import LocalRun, curl, wait_dead
from tests.emulator.test_local_wedged import _wait_for_url
from tests.support import REPO

pytestmark = pytest.mark.timeout(90)

APP = """
import ctypes, os


def handler(event, context):
    if event.get("crash") == "segv":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    if event.get("crash") == "exit":
        os._exit(7)
    return {"pid": os.getpid()}
"""

INIT_CRASH = """
import os
os._exit(9)
"""


class Local:
    """``python -m lmi_gevent.emulator.local`` with the real runtime, output collected."""

    def __init__(self, root: Path, handler: str, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        env.pop(local_module.RUNTIME_CMD_ENV, None)  # the real runtime, not a stand-in
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lmi_gevent.emulator.local", handler, "--port", "0", *args],
            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)  # type: ignore[arg-type]
        self.reader.start()

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.reader.join(5)


MODES = {"sequential": [], "concurrent, one process": ["--concurrency", "4", "--workers", "1"],
         "concurrent, 2 workers": ["--concurrency", "4", "--workers", "2"]}


@pytest.mark.parametrize("mode", list(MODES))
def test_a_crashing_runtime_is_answered_as_the_platform_would_and_started_again(
        task_root, mode: str) -> None:  # type: ignore[no-untyped-def]
    run = Local(task_root(app=APP), "app.handler", *MODES[mode])
    try:
        url = _wait_for_url(run.lines, run.proc)
        status, _, body = curl(url, {})
        first_pid = json.loads(body)["pid"]
        answers = {}
        for crash in ("segv", "exit"):
            status, headers, body = curl(url, {"crash": crash})
            answers[crash] = (status, headers.get("x-amz-function-error"), json.loads(body))
            status, _, body = curl(url, {})  # served by the runtime started again
            assert status == 200 and "pid" in json.loads(body), body
        last_pid = json.loads(body)["pid"]
    finally:
        code = run.stop()
    output = run.output()
    assert code == 0, output
    for crash, how in (("segv", "signal: segmentation fault"), ("exit", "exit status 7")):
        status, function_error, error = answers[crash]
        assert (status, function_error, error["errorType"]) == (200, "Unhandled", "Runtime.ExitError"), output
        prefix = rf"RequestId: {error['requestId'] if 'requestId' in error else '[0-9a-f-]+'} Error: Runtime exited with error: "
        if mode == "concurrent, 2 workers":  # the supervisor answers for the worker it lost,
            # in the same words, naming the worker
            assert re.fullmatch(prefix + re.escape(how) + r" \(worker \d, pid \d+; lmi-gevent "
                                r"replaces the worker\)", error["errorMessage"]), error
            continue
        assert re.fullmatch(prefix + how, error["errorMessage"]), error
    if mode == "concurrent, 2 workers":
        return
    assert first_pid != last_pid and wait_dead(first_pid) and wait_dead(last_pid)
    assert "runtime exited with signal SIGSEGV" in output and "-11" not in output, output
    assert "runtime exited with code 7" in output, output
    assert output.count("starting it again") == 2, output


def test_a_runtime_that_dies_in_init_ends_the_command_naming_how() -> None:
    # A stand-in that exits 3 before it ever polls, posting nothing: an init failure, not a
    # crash to restart.
    run = LocalRun(mode="crash")
    try:
        assert run.wait() == 3
    finally:
        run.close()
    output = run.output()
    assert "died in init (code 3)" in output and "starting it again" not in output, output


def test_a_handler_module_that_exits_during_import_is_not_restarted(task_root) -> None:  # type: ignore[no-untyped-def]
    run = Local(task_root(app=INIT_CRASH), "app.handler")
    code = run.proc.wait(timeout=30)
    run.reader.join(5)
    output = run.output()
    assert code != 0 and "starting it again" not in output, output
    # the runtime reports it as an init error, or dies of it: either way it is named
    assert "os._exit(9)" in output or "code 9" in output, output


def test_exits_are_named_as_the_platform_and_a_shell_name_them() -> None:
    assert local_module.exit_error(-signal.SIGSEGV) == "signal: segmentation fault"
    assert local_module.exit_error(-signal.SIGKILL) == "signal: killed"
    assert local_module.exit_error(-signal.SIGABRT) == "signal: aborted"
    assert local_module.exit_error(3) == "exit status 3"
    assert local_module.exit_name(-signal.SIGSEGV) == "signal SIGSEGV"
    assert local_module.exit_name(0) == "code 0"
