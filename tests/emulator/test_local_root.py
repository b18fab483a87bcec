"""``lmi-gevent local --root DIR``: the task root, as ``check --root`` takes it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lmi_gevent.emulator import local

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]

APP = """
import os


def handler(event, context):
    return {"cwd": os.getcwd(), "task_root": os.environ["LAMBDA_TASK_ROOT"]}
"""


def _wait_for_url(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(r"curl -s -XPOST (\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"no invoke URL in {''.join(seen)!r}")


def test_local_root_is_the_task_root_and_the_working_directory(tmp_path):
    root = tmp_path / "task"
    root.mkdir()
    (root / "app.py").write_text(APP)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop(local.RUNTIME_CMD_ENV, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmi_gevent.emulator.local", "app.handler", "--port", "0",
         "--root", "../task"], cwd=elsewhere, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        url = _wait_for_url(proc)
        request = urllib.request.Request(url, data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = json.loads(answer.read())
    finally:
        proc.terminate()  # local forwards it: the runtime drains and exits, then local
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert body == {"cwd": str(root), "task_root": str(root)}


def test_local_root_that_is_not_a_directory_is_bad_usage_naming_it(tmp_path, capsys):
    assert local.main(["app.handler", "--root", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "--root" in err and "missing: not a directory" in err
