"""asyncio inside concurrent handlers, on every Python CI runs (docs/pythons.md).

Two hazards, both in a sync handler that runs its own ``asyncio.run`` while other slots do too:
- Python 3.14 keeps the current task per OS thread, which all slot greenlets share: a coroutine
  step that yields to gevent (a blocking call in an ``async def``, or ``asyncio.run``'s own
  executor shutdown) left its task "entered" for every other greenlet, and they hung;
- gevent #2213: under ``patch_all`` on CPython 3.13.12+/3.14.3+ an executor result is set
  without waking the loop, so each such await waits for the next timer (~2 s).
The runtime's per-greenlet asyncio hook covers both; these tests fail if either comes back.
"""

from __future__ import annotations

import pytest

from tests.support import start_runtime

pytestmark = pytest.mark.timeout(120)

APP = """
import asyncio, concurrent.futures, time

pool = concurrent.futures.ThreadPoolExecutor(2)
state = {"now": 0, "max": 0}


def noop():
    return 1


async def timed(make):
    start = time.perf_counter()
    assert await make() is not None
    return time.perf_counter() - start


async def executor_results(rounds):
    loop = asyncio.get_running_loop()
    kinds = {
        "run_in_executor": lambda: loop.run_in_executor(None, noop),
        "to_thread": lambda: asyncio.to_thread(noop),
        "getaddrinfo": lambda: loop.getaddrinfo("localhost", 80),
        "wrap_future": lambda: asyncio.wrap_future(pool.submit(noop)),
        # the baseline: a timer, which wakes the loop whatever the bug does
        "sleep": lambda: asyncio.sleep(0.01, result=1),
    }
    return {kind: max([await timed(make) for _ in range(rounds)]) for kind, make in kinds.items()}


async def blocking_steps(seconds):
    me = asyncio.current_task()
    seen = []
    for _ in range(3):
        time.sleep(seconds)  # blocks inside the step: gevent runs the other slots meanwhile
        seen.append(asyncio.current_task() is me)
        await asyncio.sleep(0)
    child = await asyncio.create_task(asyncio.sleep(0, result=asyncio.current_task))
    return {"own_task": all(seen) and me is not None, "child_saw": child() is me,
            "tasks": len(asyncio.all_tasks())}


def handler(event, context):
    state["now"] += 1
    state["max"] = max(state["max"], state["now"])
    try:
        if event["action"] == "executor":
            result = {"latency": asyncio.run(executor_results(event["rounds"]))}
        else:
            result = asyncio.run(blocking_steps(event["seconds"]))
        result["running_after"] = asyncio.events._get_running_loop() is not None
        result["max_overlap"] = state["max"]
        return result
    finally:
        state["now"] -= 1
"""


@pytest.fixture
def app(task_root):  # type: ignore[no-untyped-def]
    return task_root(app=APP)


def test_coroutines_that_block_mid_step_keep_their_own_current_task(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    # On 3.14 without a current task per greenlet, all but one of these hang until the timeout.
    n = 4
    emulator = emulator_factory(concurrency=n, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=n)
    results = emulator.invoke_many([{"action": "blocking", "seconds": 0.05}] * n, parallel=n)
    assert all(r.status == 200 and r.function_error is None for r in results), \
        ([r.body[:300] for r in results], runtime.output()[-3000:])
    bodies = [r.json() for r in results]
    assert max(b["max_overlap"] for b in bodies) == n  # the steps really interleaved
    assert all(b["own_task"] and b["child_saw"] and not b["running_after"] for b in bodies), bodies
    assert all(b["tasks"] == 1 for b in bodies), bodies  # all_tasks() names only its own loop's
    assert "Cannot enter into task" not in runtime.output()


def test_executor_results_wake_the_loop_at_once(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    # gevent #2213 costs ~2 s per await where it triggers; an await that completes normally
    # takes milliseconds. The bound is generous for a loaded machine, far below the bug's cost.
    n = 3
    emulator = emulator_factory(concurrency=n, timeout=60)
    runtime = start_runtime(emulator, app, concurrency=n)
    # One alone first (one loop in the process: only #2213 can slow it), then n at once.
    results = [emulator.invoke({"action": "executor", "rounds": 3})]
    results += emulator.invoke_many([{"action": "executor", "rounds": 3}] * n, parallel=n)
    assert all(r.status == 200 and r.function_error is None for r in results), \
        ([r.body[:300] for r in results], runtime.output()[-3000:])
    latencies = [r.json()["latency"] for r in results]
    for latency in latencies:
        assert set(latency) == {"run_in_executor", "to_thread", "getaddrinfo", "wrap_future", "sleep"}
        slow = {kind: seconds for kind, seconds in latency.items() if seconds >= 1.0}
        assert not slow, latencies
