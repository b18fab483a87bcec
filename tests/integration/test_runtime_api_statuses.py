"""What the runtime does with each Runtime API status (docs/protocol.md), in both modes."""

from __future__ import annotations

import pytest

from tests.support import start_runtime

pytestmark = pytest.mark.timeout(60)

APP = "def handler(event, context):\n    return {'echo': event}\n"
MODES = [pytest.param(1, id="sequential"), pytest.param(3, id="concurrent")]


@pytest.fixture
def app(task_root):  # type: ignore[no-untyped-def]
    return task_root(app=APP)


@pytest.mark.parametrize("concurrency", MODES)
@pytest.mark.parametrize("status", [400, 403, 410])
def test_refused_answer_is_logged_and_serving_goes_on(emulator_factory, app, concurrency, status) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=concurrency, timeout=1)
    runtime = start_runtime(emulator, app, concurrency=concurrency)
    emulator.inject("response", status=status)
    emulator.invoke({"n": 1})  # refused by the fault: the caller gets the platform's timeout
    assert emulator.invoke({"n": 2}).json() == {"echo": {"n": 2}}
    assert runtime.returncode is None
    assert f"Runtime API answered {status} to the response of invocation" in runtime.output()


@pytest.mark.parametrize("concurrency", MODES)
def test_413_on_a_response_becomes_a_size_error_answer(emulator_factory, app, concurrency) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=concurrency, timeout=5)
    runtime = start_runtime(emulator, app, concurrency=concurrency)
    emulator.inject("response", status=413)
    result = emulator.invoke({"n": 1})
    assert result.function_error == "Unhandled", runtime.output()
    assert result.json()["errorType"] == "Function.ResponseSizeTooLarge"
    assert emulator.invoke({"n": 2}).status == 200


@pytest.mark.parametrize("concurrency", MODES)
def test_500_on_a_post_exits_promptly(emulator_factory, app, concurrency) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=concurrency, timeout=2)
    runtime = start_runtime(emulator, app, concurrency=concurrency)
    emulator.inject("response", status=500)
    emulator.invoke({"n": 1})
    assert runtime.wait(10) == 1
    assert "non-recoverable" in runtime.output() or "Exiting" in runtime.output()


@pytest.mark.parametrize("concurrency", MODES)
def test_failing_next_is_retried_and_every_invocation_answered(emulator_factory, app, concurrency) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=concurrency, timeout=10)
    runtime = start_runtime(emulator, app, concurrency=concurrency,
                            env={"LMI_GEVENT_RETRY_INITIAL": "0.01", "LMI_GEVENT_RETRY_MAX": "0.05"})
    # Faults hit the next /next calls: the open polls are already waiting, so answers free them.
    emulator.inject("next", status=503, count=3)
    emulator.inject("next", status=500, count=2)
    emulator.inject("next", reset=True, count=3)
    results = emulator.invoke_many([{"i": i} for i in range(12)], parallel=4)
    assert [r.json() for r in results] == [{"echo": {"i": i}} for i in range(12)]
    stats = emulator.wait_for(lambda s: s["open_polls"] == concurrency, timeout=10)
    assert stats["faults_applied"] == 8, stats
    assert stats["max_polls_plus_in_flight"] <= concurrency
    assert "/next failed (attempt 1)" in runtime.output()
    assert runtime.returncode is None
