"""The stall detector: warn when an invocation blocks the gevent hub (concurrent mode).

All N invocations share one thread. A handler that calls into C without yielding (a
blocking driver, ``ctypes``, an unpatched sleep) or computes for long freezes every other
invocation in the process. This module names the invocation that did it, for how long, and
the stack where it blocked, once per call site.

How it works, and who does what:

* gevent's monitor thread (``GEVENT_MONITOR_THREAD_ENABLE``) wakes up every
  ``max_blocking_time`` seconds; when no greenlet switch happened since its last look it
  publishes :class:`gevent.events.EventLoopBlocked`. Our subscriber runs in that OS thread
  and only copies the blocked thread's frames (file, line, function: no I/O, no locks, no
  gevent calls, no logging), tagged with the number of the run it saw.
* A greenlet trace function in the hub thread numbers every run of a greenlet, times it,
  and keeps a reference to the greenlet's context object (``gr_context``, which greenlet
  refuses to hand to another thread while the greenlet runs). The monitor thread reads
  :data:`~lmi_gevent.invocation.context.REQUEST_ID` through that reference while the block lasts:
  reading it when the run ends would be too late when the handler returned and its
  answer was posted without yielding (the slot has reset the variable by then). When a
  run that lasted at least the threshold ends, the trace function queues a report with the
  exact duration.
* A short-lived greenlet logs the queued reports through ``logging.getLogger("lmi_gevent")``
  with the blocked invocation's request id on the record, once the block is over: nothing
  is ever written from the monitor thread.

* A block that lasts (a C call that never returns) is also reported *while it lasts*: once
  the loop has been held for ``wedge_after`` seconds, a monitoring function on the same
  thread writes one record naming the invocation, how long so far and the stack where it
  is stuck, with a single ``os.write`` (:func:`lmi_gevent.invocation.logs.write_without_hub`: no
  logging lock, no hub), and again at twice that time, four times, and so on. The usual
  report still follows if the run ever ends.

gevent's own report is not used: it states ``max_blocking_time`` rather than the real
duration, repeats every period while the block lasts, cannot tell which invocation blocked,
and is printed from the monitor thread.

Imported only in concurrent mode, after ``gevent.monkey.patch_all()``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from time import perf_counter

import gevent
import gevent.events
import greenlet

from ..integrations.monkey import plugins_scanned_once
from ..records import Record
from ..invocation.context import REQUEST_ID, TENANT_ID
from ..workers import scoreboard
from .shared_state import GLOBALS_ENV
from .stacks import Frame, call_site, format_stack, frames_from, user_stack

TYPE_CHECKING = False  # typing.TYPE_CHECKING; records, not dataclasses: see Stall
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger("lmi_gevent")

# Frames kept per sample: enough to reach the handler from deep inside a driver.
# Call sites reported in full; past this, new sites are only counted (memory stays bounded).
MAX_CALL_SITES = 100
# Repeats at one call site are summarised at these counts (and every 10x after).
FIRST_REPEAT_SUMMARY = 10


class Stall(Record):
    """One run of a greenlet that held the hub for at least the threshold.

    (The records here are typed tuples and small classes, not dataclasses: this module is
    imported before a worker's first poll, where five ``@dataclass`` decorators cost ~3 ms.)"""

    seconds: float
    request_id: str | None
    tenant_id: str | None
    stack: list[Frame]  # outermost first
    sampled: bool  # False: the stack is where the greenlet yielded, not where it blocked


class CallSite:
    """Stalls seen at one place in the code (the innermost frame of user code)."""

    __slots__ = ("where", "count", "total", "longest", "next_summary")

    def __init__(self, where: str) -> None:
        self.where = where
        self.count = 0
        self.total = 0.0
        self.longest = 0.0
        self.next_summary = FIRST_REPEAT_SUMMARY

    def __repr__(self) -> str:
        return (f"CallSite({self.where!r}, count={self.count}, total={self.total:.3f}, "
                f"longest={self.longest:.3f})")


class _Sample:
    __slots__ = ("run", "stack", "request_id", "tenant_id")

    def __init__(self, run: int, stack: list[Frame], request_id: str | None = None,
                 tenant_id: str | None = None) -> None:
        self.run = run
        self.stack = stack
        self.request_id = request_id
        self.tenant_id = tenant_id


class Holder(Record):
    """The greenlet holding the event loop right now, as seen from another thread."""

    request_id: str | None
    tenant_id: str | None
    seconds: float  # how long its current run has lasted so far
    stack: list[Frame]  # where the hub's thread is now, outermost first


class _Wedge:
    __slots__ = ("run", "next_report")

    def __init__(self, run: int, next_report: float) -> None:
        self.run = run
        self.next_report = next_report  # seconds held at which the next record is written


class _Run(Record):
    """The greenlet now running in the hub thread (one tuple, so that the monitor thread
    never sees the fields of two different runs)."""

    number: int
    started: float
    greenlet: Any
    context: contextvars.Context | None


def watch(threshold: float, wedge_after: float | None = None) -> StallDetector:
    """Start warning about runs of a greenlet longer than ``threshold`` seconds, and about
    a run still going after ``wedge_after`` seconds while it lasts.

    Call from the hub's thread (the main thread), after patching. Returns the detector so
    that tests and tools can :meth:`~StallDetector.stop` it.
    """
    detector = StallDetector(threshold, wedge_after)
    detector.start()
    return detector


class StallDetector:
    def __init__(self, threshold: float, wedge_after: float | None = None) -> None:
        if not threshold > 0:
            raise ValueError(f"the stall threshold must be above 0 seconds, got {threshold!r}")
        self.threshold = threshold
        self.wedge_after = wedge_after
        self._wedge: _Wedge | None = None
        self.hub = gevent.get_hub()
        self.sites: dict[str, CallSite] = {}
        self.unreported_sites = 0
        self._run = _Run(0, perf_counter(), greenlet.getcurrent(), None)
        self._sample: _Sample | None = None
        self._queue: list[Stall] = []
        self._flush_scheduled = False
        self._previous_trace: Callable[[str, Any], Any] | None = None
        self._started = False
        # Under `lmi-gevent check` every repeat is logged: check tells a one-time stall on
        # first use from one that recurs in steady state.
        self.report_repeats = bool(os.environ.get(GLOBALS_ENV))

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        monitor = _start_monitor_thread(self.hub, sample_period=self.threshold / 2)
        if self.wedge_after is not None:
            monitor.add_monitoring_function(self._watch_for_wedge, self.threshold / 2)
        monitor.add_monitoring_function(self._sample_early, self.threshold / 2)
        gevent.events.subscribers.append(self._on_event_loop_blocked)
        current = greenlet.getcurrent()
        self._run = _Run(0, perf_counter(), current, _context_of(current))
        self._previous_trace = greenlet.settrace(self._on_switch)
        self._started = True
        self._start_sampler_thread()
        # A child forked without exec has no monitor thread and is not the runtime.
        os.register_at_fork(after_in_child=self.stop)

    def stop(self) -> None:
        """Uninstall the trace function and the subscriber (the monitor thread stays)."""
        if not self._started:
            return
        self._started = False
        greenlet.settrace(self._previous_trace)
        if self._on_event_loop_blocked in gevent.events.subscribers:
            gevent.events.subscribers.remove(self._on_event_loop_blocked)

    # --- monitor thread ---------------------------------------------------------------------

    def _on_event_loop_blocked(self, event: object) -> None:
        # Runs in gevent's monitor OS thread. An exception here would reach gevent's error
        # handler from the wrong thread, so nothing may escape.
        try:
            if isinstance(event, gevent.events.EventLoopBlocked):
                self._take_sample(event.greenlet)
        except Exception:  # noqa: BLE001, S110 - see above; a lost sample only degrades the stack
            pass

    def _take_sample(self, blocked: Any) -> None:
        run = self._run
        if run.greenlet is not blocked or (self._sample is not None
                                           and self._sample.run == run.number):
            return  # a stale event, or this block is already sampled
        frame = sys._current_frames().get(self.hub.thread_ident)
        stack = frames_from(frame)
        del frame  # frames hold the handler's locals; do not keep them alive
        sample = _Sample(run.number, stack)
        if run.context is not None:  # Context.get is safe from any thread
            sample.request_id = run.context.get(REQUEST_ID)
            sample.tenant_id = run.context.get(TENANT_ID)
        if self._run.number == run.number:  # still the same block: all of it belongs to it
            self._sample = sample

    def _sample_early(self, hub: Any) -> None:
        # gevent's own check formats a full report (source lines of every thread) before it
        # tells us; a block that starves this thread of the GIL is often over by then, and
        # the stall was pinned on the next yield. A run already long is sampled here first.
        try:
            run = self._run
            if (run.greenlet not in (self.hub, None)
                    and perf_counter() - run.started >= self.threshold / 4):
                self._take_sample(run.greenlet)
        except Exception:  # noqa: BLE001, S110 - as in _on_event_loop_blocked
            pass

    def _start_sampler_thread(self) -> None:
        # A native thread of its own samples long runs, so that a monitor thread busy
        # formatting gevent's report cannot miss them: one long C call holding the GIL
        # (building a 1 GB buffer) gives gevent no look inside the block, and the handler
        # yields soon after it ends; this thread looks as soon as the GIL is free again.
        from gevent.monkey import get_original

        start_new_thread = get_original("_thread", "start_new_thread")
        sleep = get_original("time", "sleep")

        def sample_while_started() -> None:
            while self._started:
                sleep(self.threshold / 4)
                self._sample_early(self.hub)

        start_new_thread(sample_while_started, ())

    def holder(self) -> Holder | None:
        """Who holds the event loop now, for how long, and where; None while the hub runs.

        Safe from any thread: it reads one tuple and the hub thread's current frame.
        """
        run = self._run
        if run.greenlet is self.hub or run.greenlet is None:
            return None
        seconds = perf_counter() - run.started
        frame = sys._current_frames().get(self.hub.thread_ident)
        stack = frames_from(frame)
        del frame
        context = run.context
        if self._run.number != run.number:
            return None  # it yielded meanwhile
        return Holder(context.get(REQUEST_ID) if context is not None else None,
                      context.get(TENANT_ID) if context is not None else None, seconds, stack)

    def _watch_for_wedge(self, hub: Any) -> None:
        # A monitoring function of gevent's monitor thread: an exception would end that thread.
        try:
            self._report_wedge_if_due()
        except Exception:  # noqa: BLE001, S110 - a lost wedge record must not stop the monitor
            pass

    def _report_wedge_if_due(self) -> None:
        assert self.wedge_after is not None
        run = self._run
        if run.greenlet is self.hub or perf_counter() - run.started < self.wedge_after:
            return
        wedge = self._wedge
        if wedge is None or wedge.run != run.number:
            wedge = self._wedge = _Wedge(run.number, self.wedge_after)
        holder = self.holder()
        if holder is None or holder.seconds < wedge.next_report:
            return
        while wedge.next_report <= holder.seconds:
            wedge.next_report *= 2
        self.write_wedge_record(holder, wedge.next_report)

    def write_wedge_record(self, holder: Holder, next_report: float | None) -> str:
        """Write the record for a block that still lasts (monitor thread); return its text."""
        from ..invocation.logs import write_without_hub

        stack = user_stack(holder.stack)
        where = call_site(holder.stack)
        who = (f"Invocation {holder.request_id}" if holder.request_id
               else "A greenlet outside any invocation's context")
        lines = [
            f"{who} has held the event loop for {holder.seconds:.1f}s so far at {where}, and "
            "still does: no other invocation in this process can run, answer or time out "
            "until it returns. It is stuck in a call that never yields (a C call, a read on a "
            "pipe or device, a lock taken in C).",
            "Stack where it is stuck (most recent call last):",
            *format_stack(stack),
        ]
        if next_report is not None:
            lines.append(f"Reported again at {next_report:.0f}s if it lasts "
                         f"(LMI_GEVENT_WEDGE_AFTER).")
        message = "\n".join(lines)
        # In a supervised worker: what the supervisor logs if it replaces this process.
        scoreboard.write_wedge_report(
            f"invocation {holder.request_id or '-'} held the event loop for "
            f"{holder.seconds:.1f}s at {where}; stack (innermost first): "
            + " <- ".join(f"{f.filename}:{f.lineno} in {f.function}" for f in reversed(stack)))
        write_without_hub(logging.ERROR, message, holder.request_id, {"wedge": {
            "requestId": holder.request_id, "seconds": round(holder.seconds, 3), "site": where,
            "stack": [f"{f.filename}:{f.lineno} in {f.function}" for f in stack]}})
        return message

    # --- hub thread -------------------------------------------------------------------------

    def _on_switch(self, event: str, args: Any) -> Any:
        # Runs inside every greenlet switch in the hub thread: it must not switch, block or
        # log. It only times the run that is ending, queues a report, and notes the context
        # of the run that starts.
        now = perf_counter()
        ended, target = self._run, args[1]
        self._run = _Run(ended.number + 1, now, target,
                         None if target is self.hub else _context_of(target))
        if now - ended.started >= self.threshold and ended.greenlet not in (self.hub, None):
            self._queue_stall(ended, now - ended.started)
        if self._previous_trace is not None:
            return self._previous_trace(event, args)
        return None

    def _queue_stall(self, run: _Run, seconds: float) -> None:
        sample = self._sample
        if sample is None or sample.run != run.number:
            # The block ended before the monitor thread looked (or it could not get the GIL):
            # all we have is where the greenlet yielded, and its ids as they are now.
            context = run.context
            sample = _Sample(run.number, frames_from(getattr(run.greenlet, "gr_frame", None)),
                             context.get(REQUEST_ID) if context is not None else None,
                             context.get(TENANT_ID) if context is not None else None)
            sampled = False
        else:
            sampled = True
        self._queue.append(Stall(seconds, sample.request_id, sample.tenant_id, sample.stack,
                                 sampled))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.hub.loop.run_callback(self._flush)

    def _flush(self) -> None:
        # A loop callback runs in the hub greenlet, which must never wait; logging may
        # (handler locks are gevent locks), so it happens in a greenlet of its own.
        self._flush_scheduled = False
        stalls, self._queue = self._queue, []
        gevent.spawn(self._report_all, stalls)

    def _report_all(self, stalls: list[Stall]) -> None:
        for stall in stalls:
            # This greenlet's own context: the record carries the blocked invocation's ids.
            REQUEST_ID.set(stall.request_id)
            TENANT_ID.set(stall.tenant_id)
            self.report(stall)

    # --- reporting ----------------------------------------------------------------------------

    def report(self, stall: Stall) -> None:
        """Log ``stall`` in full the first time its call site blocks; count it after that."""
        where = call_site(stall.stack)
        site = self.sites.get(where)
        if site is None:
            if len(self.sites) >= MAX_CALL_SITES:
                self._count_unreported_site()
                return
            site = self.sites[where] = CallSite(where)
        site.count += 1
        site.total += stall.seconds
        site.longest = max(site.longest, stall.seconds)
        if site.count == 1:
            self._log_first(stall, site)
        elif site.count >= site.next_summary:
            site.next_summary *= 10
            self._log_summary(stall, site)
        elif self.report_repeats:
            log.warning("The event loop was blocked again at %s: invocation %s, %.3fs.",
                        site.where, stall.request_id or "-", stall.seconds,
                        extra={"stall": self._fields(stall, site)})

    def _log_first(self, stall: Stall, site: CallSite) -> None:
        # Greenlets start with an empty context: one a handler spawned carries no request id.
        who = (f"Invocation {stall.request_id}" if stall.request_id
               else "A greenlet outside any invocation's context (spawned by a handler, or "
                    "the runtime's own)")
        where = "where it blocked" if stall.sampled else "where it next yielded"
        summary = (
            f"{who} blocked the event loop for {stall.seconds:.3f}s at {site.where} "
            f"(LMI_GEVENT_STALL_THRESHOLD={self.threshold:g}s): no other invocation in this "
            "process ran meanwhile. A C extension or CPU-bound code did not yield to gevent; "
            "use a gevent-compatible library, or run the call in gevent's threadpool.")
        lines = [
            summary,
            f"Stack {where} (most recent call last):",
            *format_stack(user_stack(stall.stack)),
            "Later stalls at this call site are counted, not shown.",
        ]
        log.warning(_line_break().join(lines), extra={"stall": self._fields(stall, site)})

    def _log_summary(self, stall: Stall, site: CallSite) -> None:
        log.warning("The event loop was blocked at %s %d times so far (longest %.3fs, %.3fs in "
                    "all); the latest: invocation %s, %.3fs. The first report has the stack.",
                    site.where, site.count, site.longest, site.total, stall.request_id or "-",
                    stall.seconds, extra={"stall": self._fields(stall, site)})

    def _count_unreported_site(self) -> None:
        self.unreported_sites += 1
        if self.unreported_sites == 1:
            log.warning("The event loop was blocked at more than %d different call sites; "
                        "stalls at new call sites are no longer reported.", MAX_CALL_SITES)

    def _fields(self, stall: Stall, site: CallSite) -> dict[str, Any]:
        # Structured copy of the report for JSON logs (and `lmi-gevent check`).
        return {"requestId": stall.request_id, "seconds": round(stall.seconds, 6),
                "threshold": self.threshold, "site": site.where, "count": site.count,
                "sampled": stall.sampled,
                "stack": [f"{f.filename}:{f.lineno} in {f.function}"
                          for f in user_stack(stall.stack)]}


def _context_of(target: Any) -> contextvars.Context | None:
    """The context object ``target`` will run in, created now if it has none yet.

    A greenlet without a context gets one at its first ``ContextVar.set``, in the middle of
    its run, where the monitor thread could not find it. An empty context means exactly what
    no context means (every variable at its default), so we give it one up front.
    """
    try:
        context = target.gr_context
        if context is None:
            context = target.gr_context = contextvars.Context()
        return context
    except (AttributeError, ValueError):  # not a greenlet, or one of another thread
        return None


# --- the monitor thread ------------------------------------------------------------------------

def _start_monitor_thread(hub: Any, sample_period: float) -> Any:
    """Start gevent's monitor thread with a period of ``sample_period`` seconds.

    Half the threshold: gevent reports only a block that spans a whole period, so this is
    what guarantees a sample for every block longer than the threshold.

    The hub greenlet is started first: gevent's monitor thread stops for good, silently, when
    it finds the hub falsy, which a hub greenlet not yet switched to is. On a busy machine
    its first look could come before the runtime's first yield, and then no stall or wedge
    was ever reported by that process.
    """
    if not hub:
        gevent.sleep(0)  # one turn of the loop: the hub greenlet is running from now on
    gevent.config.max_blocking_time = sample_period
    # gevent prints its own report (from the monitor thread) unless told not to; the user
    # can still ask for it with GEVENT_MONITOR_PRINT_BLOCKING_REPORTS.
    if ("GEVENT_MONITOR_PRINT_BLOCKING_REPORTS" not in os.environ
            and "print_blocking_reports" in gevent.config.settings):
        gevent.config.print_blocking_reports = False
    gevent.config.monitor_thread = True
    with warnings.catch_warnings(), plugins_scanned_once(), _memory_watched_only_if_asked():
        # Without psutil gevent warns that it cannot watch memory, on stderr of every
        # function; the detector does not use memory monitoring.
        warnings.filterwarnings("ignore", message="Unable to monitor memory usage")
        monitor = hub.start_periodic_monitoring_thread()
    if "print_blocking_reports" not in gevent.config.settings:
        # gevent < 25.4.1: this method is the documented place to redirect its report.
        monitor._show_blocking_report = lambda hub, report, greenlet: (greenlet, report)
    return monitor


@contextlib.contextmanager
def _memory_watched_only_if_asked() -> Iterator[None]:
    """gevent's monitor thread watches memory only with ``GEVENT_MONITOR_MEMORY_MAX`` set
    (``gevent.config.max_memory_usage``); without it that check does nothing, every period.
    Yet starting the thread imports psutil and reads ``/proc/self/smaps`` for it (~10 ms of
    a worker's start): unless a limit is set, the thread is told there is no psutil."""
    from gevent import _monitor

    if gevent.config.max_memory_usage:
        yield
        return
    find_psutil = _monitor.get_this_psutil_process
    _monitor.get_this_psutil_process = lambda: None
    try:
        yield
    finally:
        _monitor.get_this_psutil_process = find_psutil


def _line_break() -> str:
    """The separator that keeps a multi-line report in one log event.

    Text records on stdout are split into events at newlines, so there (as the official
    client does for errors) lines are joined with a carriage return; JSON and framed
    records keep newlines intact.
    """
    from ..invocation.logs import FramedSink, JsonFormatter, LambdaLogHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, LambdaLogHandler):
            framed = isinstance(handler.sink, FramedSink)
            return "\n" if framed or isinstance(handler.formatter, JsonFormatter) else "\r"
    return "\n"
