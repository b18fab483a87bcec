"""Retries of answer posts (lmi_gevent.runtime_api.delivery) against scripted outcomes and a fake clock."""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import pytest

from lmi_gevent.runtime_api.client import Invocation, PlatformFailure, RuntimeApiError
from lmi_gevent.runtime_api.delivery import RetryPolicy, deliver
from lmi_gevent.invocation.invoker import Invoker
from lmi_gevent.invocation.logs import FunctionLog, StreamSink

LOST = RuntimeApiError("/response", None, "connection lost (Connection reset by peer)")
POLICY = RetryPolicy(initial=0.05, cap=1.0, budget=30.0)


class Clock:
    """time.time() and time.sleep() for deliver(): sleeping moves the clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(*outcomes: Any) -> Any:
    """A post() that yields ``outcomes`` in turn: an exception is raised, a status returned."""
    calls: list[int] = []

    def post() -> tuple[int, bytes]:
        calls.append(1)
        outcome = outcomes[min(len(calls), len(outcomes)) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome, b'{"errorType":"X"}'

    post.calls = calls  # type: ignore[attr-defined]
    return post


def test_a_lost_post_is_retried_at_once_and_delivered() -> None:
    clock = Clock()
    post = scripted(LOST, 202)
    outcome = deliver(post, "the response of invocation r-1", deadline=clock.now + 5,
                      policy=POLICY, sleep=clock.sleep, clock=clock.time)
    assert outcome is not None and outcome.delivered and outcome.attempts == 2
    assert clock.sleeps == []  # the first retry is immediate (a stale keep-alive connection)


def test_400_to_a_repeated_post_counts_as_delivered(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    caplog.set_level(logging.INFO, "lmi_gevent")
    outcome = deliver(scripted(LOST, 400), "the response of invocation r-2", deadline=clock.now + 5,
                      policy=POLICY, sleep=clock.sleep, clock=clock.time)
    assert outcome is not None and outcome.delivered and outcome.status == 400
    assert "The response of invocation r-2 had already reached the platform" in caplog.text


def test_400_to_a_first_post_is_a_refusal() -> None:
    clock = Clock()
    post = scripted(400)
    outcome = deliver(post, "the response of invocation r-3", deadline=clock.now + 5,
                      policy=POLICY, sleep=clock.sleep, clock=clock.time)
    assert outcome is not None and not outcome.delivered
    assert len(post.calls) == 1


@pytest.mark.parametrize("status", [410, 403, 413])
def test_a_verdict_on_the_answer_is_not_retried(status: int) -> None:
    clock = Clock()
    post = scripted(status, 202)
    outcome = deliver(post, "the error of invocation r-4", deadline=clock.now + 5,
                      policy=POLICY, sleep=clock.sleep, clock=clock.time)
    assert outcome is not None and outcome.status == status and len(post.calls) == 1


def test_proxy_statuses_are_retried_with_jittered_doubling_delays() -> None:
    clock = Clock()
    post = scripted(503, 502, 504, 429, 202)
    outcome = deliver(post, "the response of invocation r-5", deadline=clock.now + 60,
                      policy=POLICY, sleep=clock.sleep, clock=clock.time)
    assert outcome is not None and outcome.delivered and outcome.attempts == 5
    assert len(clock.sleeps) == 3  # no wait before the first retry
    for number, delay in enumerate(clock.sleeps):
        ceiling = min(POLICY.cap, POLICY.initial * 2 ** number)
        assert ceiling / 2 <= delay <= ceiling, clock.sleeps


def test_gives_up_only_past_the_deadline_and_names_the_invocation(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    deadline = clock.now + 3.0
    post = scripted(LOST)
    outcome = deliver(post, "the response of invocation r-6", deadline=deadline,
                      policy=POLICY, sleep=clock.sleep, clock=clock.time)
    assert outcome is None
    assert clock.now >= deadline  # tried up to the deadline...
    assert clock.now <= deadline + 1e-9  # ...and never slept past it
    assert max(clock.sleeps) <= POLICY.cap
    assert 5 < len(post.calls) < 30  # bounded: capped delays, not a spin
    assert "Gave up posting the response of invocation r-6" in caplog.text
    assert "deadline passed" in caplog.text


def test_without_a_deadline_the_budget_bounds_the_retries(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    start = clock.now
    outcome = deliver(scripted(LOST), "the init error", deadline=None,
                      policy=RetryPolicy(0.05, 0.5, budget=2.0), sleep=clock.sleep, clock=clock.time)
    assert outcome is None and clock.now == pytest.approx(start + 2.0)
    assert "LMI_GEVENT_ANSWER_RETRY_BUDGET=2s ran out" in caplog.text


def test_a_platform_failure_is_not_retried() -> None:
    clock = Clock()
    post = scripted(LOST, PlatformFailure("/response", 500, "boom"), 202)
    with pytest.raises(PlatformFailure):
        deliver(post, "the response of invocation r-7", deadline=clock.now + 5,
                policy=POLICY, sleep=clock.sleep, clock=clock.time)
    assert len(post.calls) == 2


class FlakyClient:
    """A RuntimeApiClient whose posts fail ``failures`` times with a reset before landing."""

    def __init__(self, failures: int, repeat_status: int = 202) -> None:
        self.failures = failures
        self.repeat_status = repeat_status
        self.posts: list[tuple[str, bytes]] = []

    def _land(self, kind: str, body: bytes) -> tuple[int, bytes]:
        self.posts.append((kind, body))
        if len(self.posts) <= self.failures:
            raise LOST
        return (self.repeat_status if len(self.posts) > 1 else 202), b""

    def post_response(self, invocation: Invocation, body: bytes, content_type: str) -> tuple[int, bytes]:
        return self._land("response", body)

    def post_error(self, invocation: Invocation, error: dict[str, Any], cause: Any) -> tuple[int, bytes]:
        return self._land("error", repr(error).encode())


def _invocation(deadline_s: float) -> Invocation:
    return Invocation({"lambda-runtime-aws-request-id": "r-8", "content-type": "application/json",
                       "lambda-runtime-deadline-ms": str(int(deadline_s * 1000))}, b'{"n": 1}')


@pytest.mark.parametrize("repeat_status", [202, 400])
def test_the_invoker_repeats_the_same_answer_and_never_a_different_one(repeat_status: int) -> None:
    client = FlakyClient(failures=2, repeat_status=repeat_status)
    invoker = Invoker(lambda event, context: {"got": event}, FunctionLog(StreamSink(io.StringIO()), json_format=False),
                      retry=RetryPolicy(0.001, 0.002, 1.0))
    invoker.run(_invocation(time.time() + 10), client)  # type: ignore[arg-type]
    assert [kind for kind, _ in client.posts] == ["response"] * 3
    assert len({body for _, body in client.posts}) == 1
