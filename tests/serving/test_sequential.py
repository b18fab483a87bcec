"""The sequential loop's signal rules and back-off, without a process or a server."""

from __future__ import annotations

import signal
import socket

import pytest

from lmi_gevent.invocation.invoker import InvocationCut
from lmi_gevent.serving.sequential import Backoff, Stopper, StopRequested


def test_backoff_grows_with_equal_jitter_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(initial=0.1, cap=1.0)
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [min(1.0, 0.1 * 2 ** k) for k in range(8)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    backoff.reset()
    assert 0.05 <= backoff.next_delay() <= 0.1


@pytest.fixture
def pair():  # type: ignore[no-untyped-def]
    ours, platform = socket.socketpair()
    yield ours, platform
    ours.close()
    platform.close()


def _signal_while_waiting(stopper: Stopper, sock: socket.socket) -> None:
    # What the interpreter does when a signal interrupts wait_for_answer's select().
    stopper._idle, stopper._waiting_on = True, sock
    try:
        stopper._on_signal(signal.SIGTERM, None)
    finally:
        stopper._idle, stopper._waiting_on = False, None


def test_signal_while_waiting_with_nothing_arrived_stops_at_once(pair) -> None:  # type: ignore[no-untyped-def]
    stopper = Stopper()
    with pytest.raises(StopRequested):
        _signal_while_waiting(stopper, pair[0])


def test_signal_after_an_invocation_arrived_serves_it_first(pair) -> None:  # type: ignore[no-untyped-def]
    ours, platform = pair
    platform.sendall(b"HTTP/1.1 200 OK\r\n")  # the start of an invocation, not yet read
    stopper = Stopper()
    _signal_while_waiting(stopper, ours)  # no StopRequested: the invocation is ours
    assert stopper.requested
    with pytest.raises(StopRequested):  # ...and no further /next is waited for
        stopper.wait_for_answer(ours)
    with pytest.raises(StopRequested):  # nor a back-off sleep after a failed read
        stopper.sleep(30)


def test_signal_while_running_then_a_second_one_cuts_the_invocation() -> None:
    stopper = Stopper()
    stopper._on_signal(signal.SIGINT, None)
    assert stopper.requested
    with pytest.raises(InvocationCut):
        stopper._on_signal(signal.SIGINT, None)
