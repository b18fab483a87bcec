"""Logs stay useful under faults: an unreachable Runtime API at N=1600 writes a line or two a
second with counts (it wrote one line per slot per retry, ~400 a second), and the process still
stops on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from lmi_gevent.emulator.api import RuntimeProcess

pytestmark = pytest.mark.timeout(90)


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("slots", [1, 1600])
def test_an_unreachable_runtime_api_is_summarised_not_repeated_per_slot(
        tmp_path: Path, slots: int) -> None:
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return {}\n")
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{unused_port()}",
               AWS_LAMBDA_MAX_CONCURRENCY=str(slots), LMI_GEVENT_WORKERS="1",
               LMI_GEVENT_RETRY_MAX="0.5")
    runtime = RuntimeProcess([sys.executable, "-m", "lmi_gevent", "app.handler"], env, tmp_path)
    try:
        runtime.wait_for_output("/next failed", timeout=30)
        first = time.monotonic()
        time.sleep(4)
        output = runtime.output()
        watched = time.monotonic() - first
        assert runtime.returncode is None, output
        runtime.send_signal(signal.SIGTERM)
        assert runtime.wait(timeout=30) == 0, runtime.output()
    finally:
        runtime.kill()
    lines = [line for line in output.splitlines() if "/next failed" in line]
    # the first at once, then at most one a second (a little slack for the slow start-up)
    assert 2 <= len(lines) <= watched + 3, "\n".join(lines[:20])
    counts = [int(n) for n in re.findall(r"\[(\d+) like this in the last", output)]
    assert counts, output[-2000:]
    if slots == 1600:  # every slot retries (retry cap 0.5 s): the counts show hundreds a second
        assert max(counts) >= 400, counts


@pytest.mark.parametrize("concurrency", [1, 4])
def test_every_error_line_is_complete(emulator_factory, task_root, concurrency: int) -> None:  # type: ignore[no-untyped-def]
    # A 7 MiB response's error line ended in an empty "Traceback (most recent call last):";
    # a MarshalError keeps that header, as awslambdaric prints it byte for byte.
    from tests.support import start_runtime

    root = task_root(app="def handler(event, context):\n"
                         "    return 'x' * (7 << 20) if event['big'] else {1, 2}\n")
    emulator = emulator_factory(concurrency=concurrency)
    runtime = start_runtime(emulator, root, concurrency=concurrency)
    big = emulator.invoke({"big": True}).json()
    assert big["errorType"] == "Function.ResponseSizeTooLarge"
    assert emulator.invoke({"big": False}).json()["errorType"] == "Runtime.MarshalError"
    lines = [line for line in runtime.output().split("\n") if line.startswith("[ERROR]")]
    assert len(lines) == 2, lines
    too_large, marshal = lines
    assert too_large.startswith("[ERROR] Function.ResponseSizeTooLarge: Response payload size")
    assert "Traceback" not in too_large and too_large.endswith("bytes).")
    assert marshal == ("[ERROR] Runtime.MarshalError: Unable to marshal response: Object of type "
                       "set is not JSON serializable\rTraceback (most recent call last):")
