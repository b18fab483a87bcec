"""``lmi-gevent local`` with the real runtime and a handler that holds the event loop for good:
Ctrl-C still ends everything — the runtime (through its stop watch) and the child process the
handler started, even one that ignores signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lmi_gevent.emulator import local as local_module
from tests.emulator.test_local import curl, wait_dead
from tests.support import REPO

pytestmark = pytest.mark.timeout(60)

APP = """
import json
import multiprocessing
import os
import signal
import time

never_written, keep_open = os.pipe()


def deaf_sleeper():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(600)


def handler(event, context):
    child = multiprocessing.Process(target=deaf_sleeper)
    child.start()
    with open("pids.json", "w") as pids:
        json.dump([os.getpid(), child.pid], pids)
    os.read(never_written, 1)
"""


def test_ctrl_c_ends_a_wedged_runtime_and_every_process_it_started(task_root) -> None:
    root = task_root(app=APP)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop(local_module.RUNTIME_CMD_ENV, None)  # the real runtime, not a stand-in
    local = subprocess.Popen(
        [sys.executable, "-m", "lmi_gevent.emulator.local", "app.handler", "--port", "0",
         "--concurrency", "2", "--timeout", "2", "--env", "LMI_GEVENT_DRAIN_TIMEOUT=1",
         "--env", "AWS_LAMBDA_LOG_FORMAT=JSON", "--env", "LMI_GEVENT_WORKERS=1"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(local.stdout), daemon=True)
    reader.start()
    try:
        url = _wait_for_url(lines, local)
        status, headers, body = curl(url, {})  # the emulator answers at --timeout
        assert json.loads(body)["errorType"] == "Sandbox.Timedout"
        runtime_pid, child_pid = json.loads((Path(root) / "pids.json").read_text())

        local.send_signal(signal.SIGINT)
        local.wait(timeout=30)
        reader.join(5)
    finally:
        if local.poll() is None:
            local.kill()
    output = "".join(lines)
    assert "Ending the process after SIGINT" in output, output
    assert wait_dead(runtime_pid) and wait_dead(child_pid), output


def _wait_for_url(lines: list[str], local: subprocess.Popen[str]) -> str:
    import re
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in list(lines):
            match = re.search(r"curl -s -XPOST (\S+)", line)
            if match:
                return match.group(1)
        assert local.poll() is None, "".join(lines)
        time.sleep(0.05)
    raise AssertionError("".join(lines))
