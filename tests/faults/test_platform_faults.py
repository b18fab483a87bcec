"""The real runtime driven through platform-side faults, each at a few percent of calls:
/next answered 500 or closed before it answers, posts reset before or after the platform took
the answer, closed right after the 202, or refused with a proxy's 503. Proof by counts: every
invocation gets exactly one accepted answer (none lost, none different), the runtime stays up.
The long soak lives in ``python -m bench soak``."""

from __future__ import annotations

import pytest

from tests.support import start_runtime

pytestmark = pytest.mark.timeout(180)

# Every other invocation fails, so the error endpoint's faults are drawn as often as the
# response's: at a 3% rate a run of only a few dozen error posts could draw none of a kind.
FAIL_EVERY = 2
APP = f"""
def handler(event, context):
    if event["i"] % {FAIL_EVERY} == 0:
        raise ValueError(f"odd one {{event['i']}}")
    return {{"echo": event["i"]}}
"""
FAST_RETRIES = {"LMI_GEVENT_RETRY_INITIAL": "0.01", "LMI_GEVENT_RETRY_MAX": "0.05",
                "LMI_GEVENT_ANSWER_RETRY_INITIAL": "0.01", "LMI_GEVENT_ANSWER_RETRY_MAX": "0.05"}


@pytest.mark.parametrize("concurrency, workers, invocations, parallel", [
    pytest.param(1, "1", 800, 4, id="sequential"),
    pytest.param(256, "1", 2000, 128, id="N=256"),
    pytest.param(256, "2", 1000, 128, id="N=256-two-workers"),
])
def test_no_answer_is_lost_or_doubled_under_platform_faults(
        emulator_factory, task_root, concurrency, workers, invocations, parallel) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=concurrency, timeout=30, max_answers=10)
    runtime = start_runtime(emulator, task_root(app=APP), concurrency=concurrency,
                            env=dict(FAST_RETRIES, LMI_GEVENT_WORKERS=workers))
    emulator.inject_platform_faults(rate=0.03, seed=12)

    results = emulator.invoke_many([{"i": i} for i in range(invocations)], parallel=parallel)

    for i, result in enumerate(results):
        if i % FAIL_EVERY == 0:
            assert result.function_error == "Unhandled", (i, result)
            assert result.json()["errorMessage"] == f"odd one {i}"
        else:
            assert result.status == 200 and result.json() == {"echo": i}, (i, result)
    stats = emulator.stats()
    assert stats["timed_out"] == 0, stats  # no answer lost
    assert stats["responses"] + stats["errors"] == stats["answered"] == invocations, stats
    assert stats["repeated_answers_different"] == 0, stats  # never a second, different answer
    assert stats["capacity_exceeded"] == 0, stats
    applied = {key: n for key, n in stats.items() if key.startswith("faults_") and key != "faults_pending"}
    for kind in ("next_status", "next_close", "response_reset", "response_reset_accepted",
                 "response_close_accepted", "response_status", "error_reset_accepted",
                 "error_close_accepted"):
        assert applied.get(f"faults_{kind}", 0) > 0, applied  # every fault was exercised
    # A post that was taken before the reset was repeated, and refused as already delivered.
    assert stats["repeated_answers"] > 0, stats
    assert runtime.returncode is None, runtime.output()
    emulator.clear_faults()
    assert emulator.invoke({"i": 1}).json() == {"echo": 1}
    assert "Gave up posting" not in runtime.output()
