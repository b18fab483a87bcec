from __future__ import annotations

import logging

import pytest

from lmi_gevent.runtime_api.repeats import Repeats


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(caplog: pytest.LogCaptureFixture) -> tuple[Repeats, Clock, pytest.LogCaptureFixture]:
    caplog.set_level(logging.WARNING, logger="test.repeats")
    clock = Clock()
    return Repeats(logging.getLogger("test.repeats"), interval=1.0, clock=clock), clock, caplog


def test_1600_slots_failing_together_write_one_line_a_second_with_counts(setup) -> None:  # type: ignore[no-untyped-def]
    repeats, clock, caplog = setup
    for second in range(5):
        for slot in range(1600):
            clock.now = 100.0 + second + slot / 1600
            repeats.warning("/next", "/next failed (slot %d): refused", slot)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5  # the first at once, then one per second
    assert lines[0] == "/next failed (slot 0): refused"
    assert all(line.endswith("s, this one the latest]") for line in lines[1:])
    counted = 1 + sum(int(line.split("[")[1].split()[0]) for line in lines[1:])
    assert counted + 1599 == 5 * 1600  # every failure counted; the tail of the last second pending


def test_kinds_are_summarised_separately(setup) -> None:  # type: ignore[no-untyped-def]
    repeats, clock, caplog = setup
    for _ in range(10):
        repeats.warning("/next", "next failed")
        repeats.warning("post", "post failed")
    assert [r.getMessage() for r in caplog.records] == ["next failed", "post failed"]


def test_the_failures_not_written_yet_are_reported_when_a_call_succeeds(setup) -> None:  # type: ignore[no-untyped-def]
    repeats, clock, caplog = setup
    for _ in range(30):
        repeats.warning("/next", "next failed")
    repeats.ended("/next")  # within the interval: held back, so flapping cannot flood the log
    assert len(caplog.records) == 1
    clock.now += 1.5
    repeats.ended("/next")
    assert caplog.records[-1].getMessage() == "next failed [29 like this in the last 1.5s, then one succeeded]"
    repeats.ended("/next")  # nothing left to report
    assert len(caplog.records) == 2


def test_a_failure_after_a_quiet_interval_is_written_at_once(setup) -> None:  # type: ignore[no-untyped-def]
    repeats, clock, caplog = setup
    repeats.warning("post", "post failed %s", "once")
    clock.now += 60
    repeats.warning("post", "post failed %s", "again")
    assert [r.getMessage() for r in caplog.records] == ["post failed once", "post failed again"]
