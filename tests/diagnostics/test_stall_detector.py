"""The stall detector in the real `lmi-gevent` process (concurrent mode) against the emulator.

A handler that sleeps in C (``libc.usleep`` through ctypes) holds the hub; one that sleeps
with the patched ``time.sleep`` does not. Reports are read from the runtime's own output
after it has been stopped, so every record it wrote is there.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lmi_gevent.emulator.api import Emulator, RuntimeProcess
from tests.support import start_runtime

pytestmark = pytest.mark.timeout(60)

APP = """
import ctypes
import time

import gevent
import greenlet

libc = ctypes.CDLL(None)


def handler(event, context):
    if "block" in event:
        libc.usleep(int(event["block"] * 1_000_000))
    if "sleep" in event:
        time.sleep(event["sleep"])
    if event.get("probe"):
        hub = gevent.get_hub()
        return {"trace": greenlet.gettrace() is not None,
                "monitor": hub.periodic_monitoring_thread is not None}
    return {"requestId": context.aws_request_id}
"""
BLOCK_LINE = next(number for number, line in enumerate(APP.splitlines(), start=1)
                  if "libc.usleep" in line)
CONCURRENCY = 4


def run_app(task_root: Callable[..., Path], emulator_factory: Callable[..., Emulator],
            **env: str) -> tuple[Emulator, RuntimeProcess, Path]:
    root = task_root(app=APP)
    emulator = emulator_factory(concurrency=CONCURRENCY, timeout=10)
    runtime = start_runtime(emulator, root, concurrency=CONCURRENCY,
                            env={"AWS_LAMBDA_LOG_FORMAT": "JSON", **env})
    return emulator, runtime, root


def stop_and_read_stalls(runtime: RuntimeProcess) -> list[dict[str, Any]]:
    """Stop the runtime (so its output is complete); its stall records, in order."""
    runtime.send_signal(signal.SIGTERM)
    runtime.wait(timeout=10)
    records = []
    for line in runtime.output().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if "stall" in record:
                records.append(record)
    return records


def test_warning_names_the_blocking_invocation_how_long_and_where(task_root, emulator_factory):
    emulator, runtime, root = run_app(task_root, emulator_factory)
    others: list[Any] = []
    # Three cooperative invocations are in flight while the fourth blocks the hub.
    background = threading.Thread(target=lambda: others.extend(
        emulator.invoke_many([{"sleep": 1.0}] * 3, parallel=3)))
    background.start()
    emulator.wait_for(lambda stats: stats["in_flight"] == 3)
    blocker = emulator.invoke({"block": 0.5}).json()["requestId"]
    background.join()

    stalls = stop_and_read_stalls(runtime)

    assert len(stalls) == 1, runtime.output()
    record, stall = stalls[0], stalls[0]["stall"]
    assert record["level"] == "WARNING" and record["logger"] == "lmi_gevent"
    assert record["requestId"] == stall["requestId"] == blocker
    assert f"Invocation {blocker} blocked the event loop" in record["message"]
    assert not any(result.json()["requestId"] in record["message"] for result in others)
    assert stall["seconds"] >= 0.5  # usleep(0.5 s) never returns early
    assert stall["sampled"] is True
    where = f"{root / 'app.py'}:{BLOCK_LINE}"
    assert stall["site"] == where
    assert stall["stack"][-1] == f"{where} in handler"
    assert f'File "{root / "app.py"}", line {BLOCK_LINE}, in handler' in record["message"]
    assert "libc.usleep(" in record["message"]


def test_repeated_stalls_at_one_call_site_are_reported_once(task_root, emulator_factory):
    emulator, runtime, _ = run_app(task_root, emulator_factory)
    ids = [result.json()["requestId"]
           for result in emulator.invoke_many([{"block": 0.2}] * 5, parallel=1)]

    stalls = stop_and_read_stalls(runtime)

    full = [record for record in stalls if "Stack where it blocked" in record["message"]]
    assert len(full) == 1, runtime.output()
    assert full[0]["requestId"] == ids[0]
    assert len(stalls) <= 2  # the full report, plus at most one count


def test_repeats_are_counted_at_the_tenth(task_root, emulator_factory):
    emulator, runtime, root = run_app(task_root, emulator_factory)
    ids = [result.json()["requestId"]
           for result in emulator.invoke_many([{"block": 0.15}] * 10, parallel=1)]

    stalls = stop_and_read_stalls(runtime)

    assert [record["stall"]["count"] for record in stalls] == [1, 10], runtime.output()
    summary = stalls[1]
    assert summary["requestId"] == ids[-1]
    assert f"blocked at {root / 'app.py'}:{BLOCK_LINE} 10 times so far" in summary["message"]


def test_cooperative_sleep_is_not_a_stall(task_root, emulator_factory):
    emulator, runtime, _ = run_app(task_root, emulator_factory)
    emulator.invoke_many([{"sleep": 0.3}] * CONCURRENCY, parallel=CONCURRENCY)
    assert emulator.stats()["max_in_flight"] == CONCURRENCY

    assert stop_and_read_stalls(runtime) == []


def test_the_detector_is_installed_by_default(task_root, emulator_factory):
    emulator, runtime, _ = run_app(task_root, emulator_factory)
    assert emulator.invoke({"probe": True}).json() == {"trace": True, "monitor": True}
    runtime.stop()


def test_threshold_off_means_no_detector(task_root, emulator_factory):
    emulator, runtime, _ = run_app(task_root, emulator_factory, LMI_GEVENT_STALL_THRESHOLD="off")
    assert emulator.invoke({"probe": True}).json() == {"trace": False, "monitor": False}
    emulator.invoke({"block": 0.3})

    assert stop_and_read_stalls(runtime) == []


def test_text_log_keeps_the_report_in_one_event_under_the_blocked_request_id(
        task_root, emulator_factory):
    emulator, runtime, _ = run_app(task_root, emulator_factory, AWS_LAMBDA_LOG_FORMAT="Text")
    blocker = emulator.invoke({"block": 0.3}).json()["requestId"]
    runtime.send_signal(signal.SIGTERM)
    runtime.wait(timeout=10)

    warnings = [line for line in runtime.output().split("\n") if "blocked the event loop" in line]
    assert len(warnings) == 1, runtime.output()
    level, _, request_id, message = warnings[0].split("\t", 3)
    assert (level, request_id) == ("[WARNING]", blocker)
    assert "\rStack where it blocked" in message  # \r: the platform splits events on \n
