"""Records written by a monitor thread (logs.write_without_hub): the function's own format,
one write each, for each sink."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from tests.support import REPO

CODE = """
import logging, os, sys, threading
from lmi_gevent.invocation import logs
fd = int(sys.argv[2]) if len(sys.argv) > 2 else None
logs.setup(log_format=sys.argv[1], log_level=None, telemetry_fd=fd, log_socket=None)
def monitor():
    logs.write_without_hub(logging.ERROR, "stuck at app.py:5\\nStack:\\n  line", "req-1",
                           {"wedge": {"seconds": 2.5}})
thread = threading.Thread(target=monitor)
thread.start()
thread.join()
"""


def run(*args: str, pass_fds: tuple[int, ...] = ()) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # Bytes, not text mode: universal newlines would turn the record's \r into \n.
    done = subprocess.run([sys.executable, "-c", CODE, *args], capture_output=True,
                          env=env, timeout=30, pass_fds=pass_fds, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("utf-8")


def test_text_record_is_one_line_under_the_request_id() -> None:
    out = run("Text")
    assert out.count("\n") == 1
    level, stamp, request_id, message = out.rstrip("\n").split("\t")
    assert (level, request_id) == ("[ERROR]", "req-1")
    assert stamp.endswith("Z") and len(stamp) == len("2026-01-01T00:00:00.000Z")
    assert message == "stuck at app.py:5\rStack:\r  line"


def test_json_record_has_the_lambda_fields_and_the_extra_ones() -> None:
    record = json.loads(run("JSON"))
    assert record["level"] == "ERROR" and record["logger"] == "lmi_gevent"
    assert record["requestId"] == "req-1" and record["wedge"] == {"seconds": 2.5}
    assert record["message"].splitlines()[0] == "stuck at app.py:5"
    assert record["timestamp"].endswith("Z")


# Per-level frame types for JSON; text without AWS_LAMBDA_LOG_LEVEL uses the plain one, as
# the logging handler does.
@pytest.mark.parametrize("log_format, frame_type", [("JSON", 0xA55A0016), ("Text", 0xA55A0003)])
def test_telemetry_fd_gets_one_whole_frame(log_format: str, frame_type: int) -> None:
    read, write = os.pipe()
    try:
        run(log_format, str(write), pass_fds=(write,))
        os.close(write)
        write = -1
        data = os.read(read, 1 << 16)
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)
    kind, length, _ = struct.unpack(">IIQ", data[:16])
    assert kind == frame_type and length == len(data) - 16
    assert b"stuck at app.py:5" in data[16:]
