"""A block that holds the GIL throughout (one long C call: building a large buffer) is reported
at the handler's frame and under its invocation.

gevent's monitor reports a block only after two looks inside it, and one C call that never
releases the GIL gives it none before it ends: the report then fell back to where the greenlet
next yielded, in the runtime's slot loop, "outside any invocation's context" (its ids reset).
The detector's own sampler thread looks as soon as the GIL is free again."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from tests.support import start_runtime

pytestmark = pytest.mark.timeout(90)

APP = """
def touch(data):
    return len(data)


def handler(event, context):
    data = b"x" * (1 << 29)  # one C call holding the GIL for a long while
    size = touch(data)
    return {"requestId": context.aws_request_id, "size": size}
"""


def test_a_gil_holding_allocation_is_reported_at_the_handlers_frame(task_root, emulator_factory) -> None:  # type: ignore[no-untyped-def]
    root = task_root(app=APP)
    emulator = emulator_factory(concurrency=2, timeout=30)
    runtime = start_runtime(emulator, root, concurrency=2, env={
        "AWS_LAMBDA_LOG_FORMAT": "JSON", "LMI_GEVENT_STALL_THRESHOLD": "0.05"})
    request_ids = [emulator.invoke({}).json()["requestId"] for _ in range(3)]
    runtime.send_signal(signal.SIGTERM)
    runtime.wait(timeout=20)
    stalls: list[dict[str, Any]] = [record for record in map(json.loads, (
        line for line in runtime.output().splitlines() if line.startswith("{")))
        if "stall" in record]
    assert stalls, runtime.output()
    # Every report names one of the invocations, never "outside any invocation's context".
    assert all(record["stall"]["requestId"] in request_ids for record in stalls), stalls
    assert not any("outside any invocation" in record["message"] for record in stalls)
    # and the blocking line's frame is the handler's own code (the handler or what it calls)
    assert any(record["stall"]["site"].startswith(str(root / "app.py")) for record in stalls), stalls
