"""Concurrent mode: N slot greenlets in one process, each long-polling ``/next``.

Each slot is either polling or running an invocation, so open polls + in-flight <= N at every
moment, and N polls are open when idle: the platform sees free capacity only as open polls
(docs/design.md, invariant 3). Imported only after ``gevent.monkey.patch_all()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from typing import Any, Callable, ContextManager

import gevent
import gevent.event
import gevent.pool

from ..invocation.invoker import InvocationCut, Invoker
from ..runtime_api import errors
from ..runtime_api.client import Invocation, PlatformFailure, RuntimeApiClient
from ..workers import scoreboard
from .sequential import Backoff, end_after_stop, poll

log = logging.getLogger("lmi_gevent")

# After the drain deadline, cut invocations get this long to post their error answers.
CUT_ANSWER_TIMEOUT = 1.0
_LOWEST_PRIORITY = -2  # libev's EV_MINPRI


class StopPolling(BaseException):
    """Raised into an idle slot's ``/next`` poll when the runtime shuts down."""


class Slot:
    """One unit of capacity: a greenlet with its own Runtime API connection."""

    def __init__(self, number: int, client: RuntimeApiClient) -> None:
        self.number = number
        self.client = client
        self.state = "starting"  # starting -> (yielding -> polling -> running -> idle)* -> stopped
        self.request_id: str | None = None  # while running; read by the stop watch's thread
        self.invocation_id: str | None = None
        self.greenlet: gevent.Greenlet | None = None


class SlotPool:
    """Serves invocations on N slots until a signal or a platform failure stops it."""

    def __init__(self, address: str, invoker: Invoker, *, size: int, drain_timeout: float,
                 retry_initial: float, retry_max: float) -> None:
        self.address = address
        self.invoker = invoker
        self.size = size
        self.drain_timeout = drain_timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.pool = gevent.pool.Pool(size)
        self.hub = gevent.get_hub()
        self.slots: list[Slot] = []
        self.stopping = gevent.event.Event()
        self.signum: int | None = None  # the first stop signal
        self.draining = False
        self.failure: PlatformFailure | None = None
        self.answered = 0
        self.status = scoreboard.current()  # what the supervisor sees of this worker
        self.heartbeat: Any = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        for number in range(self.size):
            slot = Slot(number, RuntimeApiClient(self.address))
            self.slots.append(slot)
            slot.greenlet = self.pool.spawn(self._serve_slot, slot)

    def request_stop(self, signum: int | None = None) -> None:
        """First signal: drain. Second signal: exit at once."""
        if self.stopping.is_set():
            log.warning("Second signal: exiting now without waiting for %d invocation(s).",
                        self.in_flight)
            _flush_and_exit(128 + (signum or signal.SIGTERM))
        self.signum = signum
        self.stopping.set()

    def wait(self) -> None:
        while True:
            try:
                self.stopping.wait()
                return
            except Exception as problem:  # noqa: BLE001 - the slots must go on serving
                # A signal handler of the function raised while gevent's hub ran; the hub
                # hands that to this (main) greenlet. It belongs to no invocation.
                log.error("A signal handler raised %s outside any invocation; ignored.",
                          type(problem).__name__, exc_info=problem)

    @property
    def in_flight(self) -> int:
        return sum(1 for slot in self.slots if slot.state == "running")

    def running_request_ids(self) -> list[str]:
        """Request ids of the invocations running now; safe to call from a native thread."""
        return [slot.request_id for slot in list(self.slots)
                if slot.state == "running" and slot.request_id]

    def wedged_view(self) -> tuple[list[tuple[int, str, str | None]], list[int]]:
        """(slot number, request id, invocation id) of each invocation running, and the
        descriptors of the open polls: read from a native thread while the loop is wedged."""
        running, polls = [], []
        for slot in list(self.slots):
            if slot.state == "running" and slot.request_id:
                running.append((slot.number, slot.request_id, slot.invocation_id))
            elif slot.state == "polling":
                fd = slot.client.connection_fd()
                if fd >= 0:
                    polls.append(fd)
        return running, polls

    def drain(self) -> int:
        """Stop polling, let in-flight invocations finish (bounded), cut the rest; exit code."""
        self.draining = True
        answered_before = self.answered
        spared = self._cancel_idle_polls()
        if self.failure is not None:
            log.error("Exiting: %s", self.failure)
            return 1
        log.info("Draining: %d invocation(s) in flight, up to %.1fs (LMI_GEVENT_DRAIN_TIMEOUT).",
                 self.in_flight + spared, self.drain_timeout)
        self.pool.join(timeout=self.drain_timeout)
        # Counted from answers, not slot states: a poll whose invocation had arrived but was
        # not yet read was still "polling" at the signal, and it is served too.
        finished = self.answered - answered_before
        cut = self.in_flight
        if cut:
            message = (f"The runtime is shutting down and this invocation did not finish within "
                       f"LMI_GEVENT_DRAIN_TIMEOUT={self.drain_timeout:g}s.")
            self.pool.kill(InvocationCut(errors.SHUTDOWN_ERROR, message), block=True,
                           timeout=CUT_ANSWER_TIMEOUT)
        log.warning("Drained: %d of %d in-flight invocation(s) finished, %d cut at the "
                    "%.1fs drain timeout.", finished, finished + cut, cut, self.drain_timeout)
        return 0

    def _cancel_idle_polls(self) -> int:
        """Kill the slots waiting on /next; return how many were spared for an arrived answer."""
        spared = 0
        for slot in self.slots:
            if slot.state != "polling":
                continue
            # An answer already waiting on the socket is an invocation: let the slot run it.
            if slot.client.has_unread_data():
                spared += 1
            elif slot.greenlet is not None:
                slot.greenlet.kill(StopPolling, block=False)
        return spared

    # --- one slot ----------------------------------------------------------------------------

    def _serve_slot(self, slot: Slot) -> None:
        backoff = Backoff(self.retry_initial, self.retry_max)
        try:
            while not self.draining:
                try:
                    self._serve_one(slot, backoff)
                except StopPolling:
                    break
                except PlatformFailure as failure:
                    self.failure = failure
                    self.stopping.set()
                    break
                except BaseException:  # noqa: BLE001 - a slot never dies (invariant 5)
                    if self.draining:
                        break
                    log.exception("Slot %d recovered from an unexpected error", slot.number)
                    gevent.sleep(backoff.next_delay())
        finally:
            slot.state = "stopped"
            slot.client.close()

    def _serve_one(self, slot: Slot, backoff: Backoff) -> None:
        slot.state = "yielding"
        take_turn(self.hub)
        if self.draining:
            raise StopPolling
        slot.state = "polling"
        self.status.polls(+1)
        try:
            invocation = poll(slot.client, backoff, sleep=gevent.sleep)
        finally:
            self.status.polls(-1)
        slot.request_id = invocation.request_id
        slot.invocation_id = invocation.invocation_id
        slot.state = "running"
        self.status.in_flight(+1)
        self.status.begin(slot.number, invocation.request_id, invocation.invocation_id,
                          invocation.deadline_ms)
        try:
            self.invoker.run(invocation, slot.client)
            self.answered += 1
            self.status.answered()
        finally:
            slot.state = "idle"
            slot.request_id = None
            self.status.end(slot.number)
            self.status.in_flight(-1)


def take_turn(hub: Any) -> None:
    """Yield for one turn of the event loop, after every greenlet whose I/O is ready now.

    gevent I/O that can complete at once never yields, so under CPU contention a slot whose
    next invocation was always already waiting served invocation after invocation while ready
    slots waited seconds (p99 1.4 s at N=16). ``gevent.sleep(0)`` resumes before the loop polls
    I/O, and ``gevent.idle()`` waits for a fully idle loop, which cost 23% of the requests
    benchmark's throughput. A zero-delay timer at the lowest priority fires in the next loop
    iteration after that iteration's I/O callbacks: a round-robin turn for ~2 µs. (The libuv
    loop has no priorities; there it is an ordinary zero-delay timer.)
    """
    timer = hub.loop.timer(0.0, priority=_LOWEST_PRIORITY)
    try:
        hub.wait(timer)
    finally:
        timer.close()


def deadline_guard(grace: float | None) -> Callable[[Invocation], ContextManager[Any]]:
    """Reclaim the slot of an invocation still running ``grace`` seconds past its deadline.

    On Managed Instances the platform marks a timed-out invocation failed but lets the code
    run on, holding its slot for good. A gevent.Timeout raises into the handler's greenlet at
    its next cooperative switch; a handler stuck in C code cannot be interrupted.
    """
    def guard(invocation: Invocation) -> ContextManager[Any]:
        if grace is None:
            return contextlib.nullcontext()
        seconds = max(invocation.deadline_ms / 1000 - time.time(), 0) + grace
        cut = InvocationCut(errors.TIMEOUT_ERROR,
                            f"Task timed out: still running {grace:g}s after its deadline "
                            f"(LMI_GEVENT_DEADLINE_GRACE); its slot was reclaimed.")
        return gevent.Timeout(seconds, cut)

    return guard


def beat_while_serving(hub: Any, interval: float) -> Any:
    """A heartbeat in the worker's shared status from the event loop itself: if the loop is
    stuck in C code, the beats stop and the supervisor can tell."""
    status = scoreboard.current()
    timer = hub.loop.timer(interval, interval, ref=False)  # never keeps the loop alive
    timer.start(status.beat)
    return timer


def serve(address: str, invoker: Invoker, *, size: int, drain_timeout: float,
          retry_initial: float, retry_max: float, heartbeat: float = 0.5,
          pool_record: bool = True, detector: Any = None,
          wedge_timeout: float | None = None) -> int:
    """Run the slots until SIGTERM/SIGINT (drain, exit 0) or a platform failure (exit 1).

    ``size`` is this process's share of the slots; ``pool_record`` False in a supervised
    worker, whose supervisor logs the pool record once for all of them. ``detector``: the
    stall detector, if any, so that a stop while a handler holds the event loop can name
    that invocation (:mod:`lmi_gevent.serving.stopping`).
    """
    from .stopping import StopWatch

    slots = SlotPool(address, invoker, size=size, drain_timeout=drain_timeout,
                     retry_initial=retry_initial, retry_max=retry_max)
    StopWatch(slots, grace=drain_timeout + CUT_ANSWER_TIMEOUT, detector=detector,
              wedge_timeout=wedge_timeout).install()
    if pool_record:
        log.debug({"event": "runtime_worker_pool_initializing", "workerCount": size,
                   "executionEnvironmentMaxConcurrency": size, "processCount": 1,
                   "slotsPerProcess": [size]})
    # The first beat tells the supervisor that this worker's signal handlers are installed.
    scoreboard.current().beat()
    if heartbeat > 0 and scoreboard.current().supervised:  # nobody reads one process's beats
        slots.heartbeat = beat_while_serving(slots.hub, heartbeat)
    slots.start()
    slots.wait()
    return end_after_stop(slots.signum, slots.drain())


def _flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    os._exit(code)
