"""Per-greenlet SIGALRM timers (lmi_gevent.integrations.alarms), with real gevent greenlets.

The real ``signal`` module is not touched: the handler comes from ``handler_of``.
"""

from __future__ import annotations

import contextvars
import logging
import signal
import time

import gevent
import pytest

from lmi_gevent.integrations.alarms import GreenletAlarms

pytestmark = pytest.mark.timeout(30)

VAR: contextvars.ContextVar[str | None] = contextvars.ContextVar("test_alarms", default=None)


class Expired(Exception):
    pass


@pytest.fixture(autouse=True)
def fresh_loop_time() -> None:
    # This process's hub sits idle between tests, so its cached time can be minutes old; the
    # tests' own gevent timeouts (joinall, Timeout) count from that time unless refreshed.
    gevent.get_hub().loop.update_now()


def raising(signum, frame):  # type: ignore[no-untyped-def]
    assert signum == signal.SIGALRM and frame is not None
    raise Expired(VAR.get())


def test_an_alarm_interrupts_only_the_greenlet_that_set_it() -> None:
    alarms = GreenletAlarms(handler_of=lambda: raising)

    def with_alarm() -> str:
        VAR.set("owner")
        alarms.setitimer(0.05)
        try:
            gevent.sleep(5)
        except Expired as expired:
            return f"interrupted, handler saw {expired.args[0]}"
        return "slept"

    def without_alarm() -> str:
        VAR.set("bystander")
        gevent.sleep(0.2)
        return "slept"

    owner, bystander = gevent.spawn(with_alarm), gevent.spawn(without_alarm)
    started = time.monotonic()
    gevent.joinall([owner, bystander], timeout=10, raise_error=True)
    assert owner.value == "interrupted, handler saw owner", (
        owner.dead, owner.exception, bystander.value, time.monotonic() - started,
        alarms.pending())
    assert bystander.value == "slept"
    assert alarms.pending() == 0


def test_alarm_returns_what_was_left_and_zero_cancels() -> None:
    alarms = GreenletAlarms(handler_of=lambda: raising)

    def run() -> tuple[int, ...]:
        first = alarms.alarm(30)
        second = alarms.alarm(10)  # replaces the 30 s alarm: about 30 s were left
        remaining, interval = alarms.getitimer()
        cancelled = alarms.alarm(0)
        after = alarms.getitimer()
        return first, second, round(remaining), interval, cancelled, after

    assert gevent.spawn(run).get(timeout=5) == (0, 30, 10, 0.0, 10, (0.0, 0.0))
    assert alarms.pending() == 0


def test_an_interval_timer_repeats_until_cancelled() -> None:
    fired = []
    alarms = GreenletAlarms(handler_of=lambda: lambda signum, frame: fired.append(signum))

    def run() -> tuple[float, float]:
        alarms.setitimer(0.01, 0.01)
        with gevent.Timeout(5):
            while len(fired) < 3:
                gevent.sleep(0.005)
        return alarms.setitimer(0)

    _, interval = gevent.spawn(run).get(timeout=10)
    assert interval == 0.01 and fired[:3] == [signal.SIGALRM] * 3
    assert alarms.pending() == 0


def test_ignored_and_default_dispositions_do_not_raise(caplog) -> None:  # type: ignore[no-untyped-def]
    for disposition in (signal.SIG_IGN, signal.SIG_DFL):
        alarms = GreenletAlarms(handler_of=lambda d=disposition: d)

        def run(alarms: GreenletAlarms = alarms) -> str:
            alarms.setitimer(0.01)
            gevent.sleep(0.1)
            return "slept"

        with caplog.at_level(logging.WARNING, logger="lmi_gevent"):
            assert gevent.spawn(run).get(timeout=5) == "slept"
    assert "no handler set" in caplog.text


def test_an_alarm_counts_from_the_call_even_after_a_long_run_without_yielding() -> None:
    fired = []
    alarms = GreenletAlarms(handler_of=lambda: lambda signum, frame: fired.append(time.monotonic()))

    def run() -> float:
        busy_until = time.monotonic() + 0.3
        while time.monotonic() < busy_until:  # the loop's cached time falls 0.3 s behind
            pass
        set_at = time.monotonic()
        alarms.setitimer(0.2)
        with gevent.Timeout(5):
            while not fired:
                gevent.sleep(0.01)
        return fired[0] - set_at

    assert gevent.spawn(run).get(timeout=10) >= 0.19  # not at once, 0.3 s too early


def test_bad_values_are_refused_like_the_signal_module() -> None:
    alarms = GreenletAlarms()
    with pytest.raises(OverflowError):
        alarms.alarm(-1)
    with pytest.raises(signal.ItimerError):
        alarms.setitimer(-1.0)
    with pytest.raises(TypeError):
        alarms.alarm(1.5)  # type: ignore[arg-type]
