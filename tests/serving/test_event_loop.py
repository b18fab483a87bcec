"""serving/event_loop.py and serving/task_steps.py in a patched interpreter: the one loop per
process, run from slot greenlets; blocking calls inside async def holding only their task."""

from __future__ import annotations

import pytest

from tests.support import run_python

pytestmark = pytest.mark.timeout(60)

PRELUDE = """
from gevent import monkey; monkey.patch_all()
import json, time
from lmi_gevent.integrations import asyncio as per_greenlet
per_greenlet.install()
import asyncio, gevent
from lmi_gevent.serving.event_loop import GreenletLoop
process = GreenletLoop()
state = {"now": 0, "max": 0}
"""


def test_blocking_steps_overlap_and_each_task_stays_current_in_its_own_steps() -> None:
    result = run_python(PRELUDE + """
async def blocker(i):
    me = asyncio.current_task()
    state["now"] += 1; state["max"] = max(state["max"], state["now"])
    time.sleep(0.2)  # blocks the step: other tasks' steps run meanwhile
    same_after_block = asyncio.current_task() is me
    await asyncio.sleep(0.01)
    time.sleep(0.05)
    state["now"] -= 1
    return [i, same_after_block and asyncio.current_task() is me,
            asyncio.get_running_loop() is process.loop]

slots = [gevent.spawn(process.run, blocker(i)) for i in range(6)]
gevent.joinall(slots, timeout=20)
print(json.dumps({"values": [s.value for s in slots], "max": state["max"]}))
""")
    assert result["values"] == [[i, True, True] for i in range(6)]
    assert result["max"] == 6


def test_exceptions_come_back_to_the_slot_and_a_cut_slot_cancels_its_task() -> None:
    result = run_python(PRELUDE + """
async def fails():
    time.sleep(0.01)
    raise KeyError("from the task")

cancelled = []
async def forever():
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        cancelled.append(True)
        raise

try:
    process.run(fails())
    raised = None
except KeyError as problem:
    raised = str(problem)
slot = gevent.spawn(process.run, forever())
gevent.sleep(0.1)
slot.kill(block=True)
gevent.sleep(0.1)
sync = asyncio.run(asyncio.sleep(0, result="own loop"))  # beside the process's loop
process.close()
print(json.dumps({"raised": raised, "cancelled": cancelled, "sync": sync,
                  "closed": process.loop.is_closed()}))
""")
    assert result == {"raised": "'from the task'", "cancelled": [True], "sync": "own loop",
                      "closed": True}


def test_a_slot_waiting_when_the_loop_stops_gets_an_error_not_a_hang() -> None:
    result = run_python(PRELUDE + """
async def forever():
    await asyncio.Event().wait()

slot = gevent.spawn(process.run, forever())
gevent.sleep(0.1)
process.loop.call_soon_threadsafe(process.loop.stop)  # as if run_forever had ended
slot.join(timeout=5)
try:
    process.run(forever())
    after = None
except RuntimeError as problem:
    after = str(problem)
print(json.dumps({"ready": slot.ready(), "error": str(slot.exception), "after": after}))
""")
    assert result["ready"] is True
    assert "event loop stopped before the invocation's task ended" in result["error"]
    assert result["after"] == "the process's event loop has stopped"
