"""A handler that never gives the event loop back (a blocking read on a pipe nobody writes):
the block is reported while it lasts, and SIGTERM still ends the process.

The real `lmi-gevent` process (concurrent mode, JSON logs) behind the emulator. The blocked
invocation is never answered, so it is started from a thread the test does not join.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lmi_gevent.serving.slots import CUT_ANSWER_TIMEOUT
from lmi_gevent.emulator.api import Emulator, RuntimeProcess
from lmi_gevent.serving.stopping import EXIT_MARGIN
from tests.support import start_runtime

pytestmark = pytest.mark.timeout(60)

APP = """
import json
import os
import time

never_written, keep_open = os.pipe()


def handler(event, context):
    if event.get("read"):
        print(json.dumps({"blocking": context.aws_request_id}), flush=True)
        os.read(never_written, 1)
    if "sleep" in event:
        time.sleep(event["sleep"])
    return {"requestId": context.aws_request_id}
"""
READ_LINE = next(number for number, line in enumerate(APP.splitlines(), start=1)
                 if "os.read(" in line)
CONCURRENCY = 3
DRAIN_TIMEOUT = 1.0
# Reports at 10 x 0.1 s = 1 s, then 2 s, 4 s... The wedge watch (which would end the process
# itself after LMI_GEVENT_WEDGE_TIMEOUT) is off: these tests are about the reports and SIGTERM.
ENV = {"AWS_LAMBDA_LOG_FORMAT": "JSON", "LMI_GEVENT_STALL_THRESHOLD": "0.1",
       "LMI_GEVENT_WEDGE_AFTER": "10", "LMI_GEVENT_DRAIN_TIMEOUT": str(DRAIN_TIMEOUT),
       "LMI_GEVENT_WEDGE_TIMEOUT": "off"}
# The process must be gone by then: drain timeout, answer time, exit margin, and slack for
# a loaded CI machine (the bound proves "stoppable", not speed).
EXIT_BOUND = DRAIN_TIMEOUT + CUT_ANSWER_TIMEOUT + EXIT_MARGIN + 5


def records(runtime: RuntimeProcess, key: str) -> list[dict[str, Any]]:
    found = []
    for line in runtime.output().splitlines():
        if line.startswith("{") and f'"{key}"' in line:
            record = json.loads(line)
            if key in record:
                found.append(record)
    return found


def wedge_the_loop(emulator: Emulator, runtime: RuntimeProcess) -> str:
    """Start the invocation that blocks; return its request id once it is blocked."""
    def invoke() -> None:
        try:
            emulator.invoke({"read": True}, timeout=30)
        except OSError:  # the runtime is killed or ends while this invocation is blocked
            pass

    threading.Thread(target=invoke, daemon=True).start()
    runtime.wait_for_output('"blocking"', timeout=20)
    return records(runtime, "blocking")[0]["blocking"]


@pytest.fixture
def wedged(task_root, emulator_factory) -> tuple[Emulator, RuntimeProcess, Path, str]:
    root = task_root(app=APP)
    emulator = emulator_factory(concurrency=CONCURRENCY, timeout=30)
    runtime = start_runtime(emulator, root, concurrency=CONCURRENCY, env=ENV)
    assert emulator.invoke({"sleep": 0}).status == 200  # healthy before the block
    emulator.wait_for(lambda stats: stats["open_polls"] == CONCURRENCY, timeout=10)
    return emulator, runtime, root, wedge_the_loop(emulator, runtime)


def test_a_wedge_is_reported_while_it_lasts_with_the_request_id_and_stack(wedged) -> None:
    emulator, runtime, root, blocked = wedged
    runtime.wait_for_output(lambda text: len(records(runtime, "wedge")) >= 2, timeout=20)

    assert runtime.returncode is None  # still blocked: reported while it lasts
    assert emulator.stats()["in_flight"] == 1
    wedges = records(runtime, "wedge")
    assert len(wedges) >= 2, runtime.output()
    first, second = wedges[:2]
    for record in (first, second):
        assert record["level"] == "ERROR" and record["logger"] == "lmi_gevent"
        assert record["requestId"] == record["wedge"]["requestId"] == blocked
        assert f"Invocation {blocked} has held the event loop for" in record["message"]
        assert record["wedge"]["site"] == f"{root / 'app.py'}:{READ_LINE}"
        assert record["wedge"]["stack"][-1] == f"{root / 'app.py'}:{READ_LINE} in handler"
        assert "os.read(never_written, 1)" in record["message"]
    # Growing intervals: the first at >= 1 s held, the next at >= 2 s.
    assert 1.0 <= first["wedge"]["seconds"] < second["wedge"]["seconds"]
    assert second["wedge"]["seconds"] >= 2.0
    runtime.kill()


def test_sigterm_ends_a_wedged_runtime_naming_what_held_it(wedged) -> None:
    emulator, runtime, root, blocked = wedged
    signalled = time.monotonic()
    runtime.send_signal(signal.SIGTERM)

    code = runtime.wait(timeout=EXIT_BOUND)
    took = time.monotonic() - signalled

    assert code == 128 + signal.SIGTERM, runtime.output()
    assert took >= DRAIN_TIMEOUT  # the drain timeout was given to it
    stops = records(runtime, "stop")
    assert len(stops) == 2, runtime.output()  # "arrived while held", then "ending"
    noticed, ending = stops
    assert "SIGTERM arrived while the event loop is held" in noticed["message"]
    assert ending["requestId"] == ending["stop"]["holder"] == blocked
    assert ending["stop"]["unanswered"] == [blocked]
    assert ending["stop"]["site"] == f"{root / 'app.py'}:{READ_LINE}"
    assert f"Invocations that cannot be answered: {blocked}." in ending["message"]
    assert f"by invocation {blocked} at {root / 'app.py'}:{READ_LINE}" in ending["message"]


def test_a_second_sigterm_ends_a_wedged_runtime_at_once(wedged) -> None:
    emulator, runtime, root, blocked = wedged
    runtime.send_signal(signal.SIGTERM)
    runtime.wait_for_output("SIGTERM arrived while the event loop is held", timeout=10)
    runtime.send_signal(signal.SIGTERM)

    assert runtime.wait(timeout=EXIT_BOUND) == 128 + signal.SIGTERM
    ending = records(runtime, "stop")[-1]
    assert "a second signal arrived while the event loop was held" in ending["message"]
    assert ending["stop"]["unanswered"] == [blocked]


SHORT_WEDGE_APP = """
import ctypes

libc = ctypes.CDLL(None)


def handler(event, context):
    libc.usleep(1_300_000)
    return {"requestId": context.aws_request_id}
"""


def test_the_usual_stall_record_follows_when_the_block_ends(task_root, emulator_factory) -> None:
    root = task_root(app=SHORT_WEDGE_APP)
    emulator = emulator_factory(concurrency=2, timeout=30)
    # Wedge records at 0.5 s and 1 s of a 1.3 s block, then the stall record once it ends.
    runtime = start_runtime(emulator, root, concurrency=2,
                            env={**ENV, "LMI_GEVENT_WEDGE_AFTER": "5"})
    blocked = emulator.invoke({}).json()["requestId"]
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(timeout=EXIT_BOUND) == 0  # a healthy loop drains as usual

    wedges, stalls = records(runtime, "wedge"), records(runtime, "stall")
    assert [record["requestId"] for record in wedges] == [blocked, blocked], runtime.output()
    assert 0.5 <= wedges[0]["wedge"]["seconds"] < 1.0 <= wedges[1]["wedge"]["seconds"]
    assert len(stalls) == 1 and stalls[0]["requestId"] == blocked
    assert stalls[0]["stall"]["seconds"] >= 1.3
    assert records(runtime, "stop") == []  # the stop watch only waited


def test_a_supervisor_replacing_a_wedged_worker_logs_what_the_wedge_monitor_saw(
        task_root, emulator_factory) -> None:
    # Two worker processes (the multi-core mode): the wedged one's monitor fills its wedge
    # report, which the supervisor logs when it replaces the worker.
    root = task_root(app=APP)
    emulator = emulator_factory(concurrency=4, timeout=1)
    runtime = start_runtime(emulator, root, concurrency=4, env={
        "LMI_GEVENT_WORKERS": "2", "AWS_LAMBDA_LOG_LEVEL": "INFO",
        "LMI_GEVENT_STALL_THRESHOLD": "0.1", "LMI_GEVENT_WEDGE_AFTER": "3",
        "LMI_GEVENT_DEADLINE_GRACE": "1", "LMI_GEVENT_WORKER_HEARTBEAT": "0.1"})
    stuck = emulator.invoke({"read": True}, timeout=20)
    assert stuck.function_error == "Unhandled"  # the platform's own timeout, after 1 s

    output = runtime.wait_for_output("Killing and replacing it.", timeout=20)
    blocked = records(runtime, "blocking")[0]["blocking"]
    assert (f"last wedge report: invocation {blocked} held the event loop for" in output
            and f"at {root / 'app.py'}:{READ_LINE}; stack (innermost first): "
                f"{root / 'app.py'}:{READ_LINE} in handler" in output), output
    emulator.wait_for(lambda stats: stats["open_polls"] == 4, timeout=20)  # capacity is back
    runtime.stop()
