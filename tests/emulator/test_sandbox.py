"""The sandbox's rules in-process (gevent hub, no sockets), for races that sockets cannot
stage deterministically."""

from __future__ import annotations

import pytest

pytest.importorskip("gevent")

from lmi_gevent.emulator._sandbox import Invocation, Poll, Sandbox, Settings

pytestmark = pytest.mark.timeout(10)


def make_invocation(body: bytes = b"{}") -> Invocation:
    return Invocation(body=body, content_type="application/json", trace_id="Root=1-x")


def test_invocation_written_to_a_dead_poll_is_requeued_for_the_next_one():
    sandbox = Sandbox(Settings(concurrency=2))
    poll = sandbox.open_poll()
    assert isinstance(poll, Poll)
    inv = make_invocation()
    assert sandbox.submit(inv) is None
    assert poll.result.get(timeout=1) is inv
    sandbox.requeue(inv)  # what the /next handler does when the write fails
    stats = sandbox.stats()
    assert (stats["requeued"], stats["in_flight"], stats["queued"]) == (1, 0, 1)
    assert sandbox.open_poll() is inv  # the next poll gets it first
    assert sandbox.stats()["dispatched"] == 2


def test_requeue_goes_straight_to_a_waiting_poll():
    sandbox = Sandbox(Settings(concurrency=2))
    first, second = sandbox.open_poll(), sandbox.open_poll()
    inv = make_invocation()
    sandbox.submit(inv)
    assert first.result.get(timeout=1) is inv
    sandbox.requeue(inv)
    assert second.result.get(timeout=1) is inv
    assert sandbox.stats()["queued"] == 0


def test_cancelled_poll_is_not_handed_an_invocation():
    sandbox = Sandbox(Settings())
    poll = sandbox.open_poll()
    sandbox.cancel_poll(poll, "disconnect")
    assert poll.result.get(timeout=1) is None
    inv = make_invocation()
    sandbox.submit(inv)
    assert inv.state == "queued"
    assert sandbox.stats()["open_polls"] == 0
