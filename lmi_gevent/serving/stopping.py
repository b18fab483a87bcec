"""SIGTERM/SIGINT in concurrent mode: drained by the hub, or ended from a native thread when a
handler holds the event loop and never gives it back.

The drain (:meth:`lmi_gevent.serving.slots.SlotPool.drain`) runs in the hub's thread. A handler
stuck in a C call that never returns (a read on a pipe or a device, a lock taken in C) keeps
that thread from running any Python code again, signal handlers included: without help the
process cannot be stopped short of SIGKILL, and nobody learns why.

So the signals reach two places:

* a Python-level handler (``signal.signal``), which CPython runs in the main thread once it
  executes Python again — promptly while the hub waits for I/O (gevent's loop checks for
  signals) — and which hands the signal to the slots as before (first: drain; second: exit);
* ``signal.set_wakeup_fd``: the interpreter's C-level handler writes the signal number to a
  pipe, in whatever thread the signal lands, even while the main thread is blocked. A native
  thread waits on that pipe. After the first signal it gives the process
  ``LMI_GEVENT_DRAIN_TIMEOUT`` plus the time cut invocations get to post their errors plus
  :data:`EXIT_MARGIN`; if the process is still alive then, it writes one record naming the
  invocation that holds the loop (and where), and the invocations that cannot be answered,
  and ends the process with ``os._exit``. A second signal while the loop is held ends it at
  once. Its records are single ``os.write`` calls; it never touches the hub or a lock.

When the hub is healthy the drain ends the process long before that deadline, and this thread
only waits.

The same thread watches for a wedge while serving: a timer on the event loop notes each turn
of the loop; once the loop has not turned for ``LMI_GEVENT_WEDGE_TIMEOUT`` seconds, the thread
stops the process taking invocations and answers for it (:meth:`StopWatch.end_wedge`): the
invocations the platform handed to its open polls and those running are answered with
``Runtime.WorkerWedged``, the other polls are shut, and the process exits (a supervisor
replaces it). Imported only in concurrent mode, after patching.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import gevent
from gevent import monkey

from ..diagnostics.stacks import call_site, format_stack, frames_from, user_stack
from ..diagnostics.stalls import Holder, StallDetector
from ..invocation.logs import write_without_hub
from ..runtime_api import errors
from ..runtime_api.without_hub import HandedInvocation, post_error, take_poll
from ..workers import scoreboard
from ..workers.assignment import WEDGED_EXIT
from . import function_signals

if TYPE_CHECKING:
    from .slots import SlotPool

# After the drain timeout and the cut invocations' answer time: time to exit normally.
EXIT_MARGIN = 1.0
# How long the hub gets to answer "are you running?" before it is taken as held.
HUB_PROBE_TIMEOUT = 0.5
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The loop notes its turns, and the thread looks, this often (at most; less for short timeouts).
LOOP_TURN_PERIOD = 1.0

_start_new_thread = monkey.get_original("_thread", "start_new_thread")
_allocate_lock = monkey.get_original("_thread", "allocate_lock")
_select = monkey.get_original("select", "select")


class StopWatch:
    """Owns SIGTERM/SIGINT for the slots, and ends the process if the drain cannot run."""

    def __init__(self, slots: SlotPool, *, grace: float, detector: StallDetector | None = None,
                 wedge_timeout: float | None = None) -> None:
        self.slots = slots
        self.wedge_timeout = wedge_timeout
        self.turn_period = min(LOOP_TURN_PERIOD, (wedge_timeout or 4.0) / 4)
        self.loop_turned = time.monotonic()  # written by the loop's timer, read by the thread
        self._turn_timer: Any = None
        self.grace = grace  # drain timeout + the cut invocations' answer time
        self.detector = detector
        self.hub = gevent.get_hub()
        self._wakeup_read = -1
        self._first_signal: int | None = None

    def install(self) -> None:
        """Call from the main thread, once the slots exist."""
        read, write = os.pipe()
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        self._wakeup_read = read
        for signum in STOP_SIGNALS:
            function_signals.runtime_signal(signum, self._on_signal)
        os.register_at_fork(after_in_child=_forget_in_child)
        if self.wedge_timeout:
            self._turn_timer = self.hub.loop.timer(self.turn_period, self.turn_period, ref=False)
            self._turn_timer.start(self._note_turn)
        _start_new_thread(self._watch, ())

    def _note_turn(self) -> None:
        self.loop_turned = time.monotonic()

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Runs in the main thread in whichever greenlet is current (often the hub): it must
        # not block, so the work happens in a greenlet of its own, as gevent.signal_handler did.
        gevent.spawn(self.slots.request_stop, signum)

    # --- the native thread ---------------------------------------------------------------------

    def _watch(self) -> None:
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if deadline is None and self.wedge_timeout:
                timeout = self.turn_period
            ready, _, _ = _select([self._wakeup_read], [], [], timeout)
            if not ready:
                silent = time.monotonic() - self.loop_turned
                if deadline is None and self.wedge_timeout and silent >= self.wedge_timeout:
                    self.end_wedge(silent)
                if deadline is not None and time.monotonic() >= deadline:
                    self._exit(f"it did not stop within {self.grace + EXIT_MARGIN:g}s of "
                               f"the signal (LMI_GEVENT_DRAIN_TIMEOUT="
                               f"{self.slots.drain_timeout:g}s, plus time to answer and exit)")
                continue
            for signum in os.read(self._wakeup_read, 64):
                if signum not in STOP_SIGNALS:
                    continue
                if self._first_signal is None:
                    self._first_signal = signum
                    deadline = time.monotonic() + self.grace + EXIT_MARGIN
                    self._note_first_signal(signum)
                elif not self._hub_responds():
                    self._exit("a second signal arrived while the event loop was held")

    def end_wedge(self, silent: float) -> None:
        """The loop is wedged: stop taking invocations, answer for it, exit. Never returns."""
        running, polls = self.slots.wedged_view()
        handed = [found for found in map(take_poll, polls) if found is not None]
        holder = self._holder()
        site = call_site(holder.stack) if holder is not None else "an unknown place"
        why = (f"its event loop has not run for {silent:.1f}s (LMI_GEVENT_WEDGE_TIMEOUT="
               f"{self.wedge_timeout:g}s), held at {site}")
        ids = [request_id for _, request_id, _ in running] + [h.request_id for h in handed]
        self._write(logging.ERROR, f"Worker wedged: {why}. Answering {len(ids)} invocation(s) "
                    f"with {errors.WEDGED_ERROR} ({', '.join(ids) or 'none'}) and exiting so "
                    f"that the capacity comes back.", holder, {"wedged": ids})
        scoreboard.write_wedge_report(f"wedged: {why}")
        status = scoreboard.current()
        for number, request_id, invocation_id in running:
            if self._answer_wedged(HandedInvocation(request_id, invocation_id), why,
                                   "the worker running this invocation was wedged"):
                status.end(number)  # answered: the supervisor must not answer it again
        for invocation in handed:
            self._answer_wedged(invocation, why, "this invocation was handed to a wedged "
                                                 "worker and never ran")
        os._exit(WEDGED_EXIT if status.supervised else 1)

    def _answer_wedged(self, invocation: HandedInvocation, why: str, what: str) -> bool:
        message = (f"RequestId: {invocation.request_id} Error: {what}: {why}; lmi-gevent "
                   f"ended the worker")
        body = errors.error_body(errors.WEDGED_ERROR, message, None, invocation.request_id)
        status = post_error(self.slots.address, invocation, body)
        return 200 <= status < 300 or status == 400  # 400: it was answered already

    def _hub_responds(self) -> bool:
        answered = _allocate_lock()
        answered.acquire()
        self.hub.loop.run_callback_threadsafe(answered.release)
        return answered.acquire(timeout=HUB_PROBE_TIMEOUT)

    def _note_first_signal(self, signum: int) -> None:
        if self._hub_responds():
            return  # the drain runs as usual
        name = signal.Signals(signum).name
        self._write(logging.ERROR, f"{name} arrived while the event loop is held, so the "
                    f"drain cannot start; the process ends in {self.grace + EXIT_MARGIN:g}s "
                    f"unless the loop is given back first.", self._holder())

    def _exit(self, why: str) -> None:
        name = signal.Signals(self._first_signal or signal.SIGTERM).name
        unanswered = self.unanswered()
        listed = ", ".join(unanswered) if unanswered else "none"
        self._write(logging.ERROR, f"Ending the process after {name}: {why}. Invocations that "
                    f"cannot be answered: {listed}.", self._holder(),
                    {"unanswered": unanswered})
        os._exit(128 + (self._first_signal or signal.SIGTERM))

    # --- what to say ------------------------------------------------------------------------------

    def unanswered(self) -> list[str]:
        """Request ids of the invocations still running (read without the hub)."""
        return self.slots.running_request_ids()

    def _holder(self) -> Holder | None:
        if self.detector is not None:
            holder = self.detector.holder()
            if holder is not None:
                return holder
        frame = _current_frame(self.hub.thread_ident)
        if frame is None:
            return None
        stack = frames_from(frame)
        del frame
        return Holder(None, None, 0.0, stack)

    def _write(self, level: int, message: str, holder: Holder | None,
               fields: dict[str, Any] | None = None) -> None:
        lines = [message]
        request_id = None
        if holder is not None:
            request_id = holder.request_id
            who = f"invocation {holder.request_id}" if holder.request_id else "unknown"
            held = f" for {holder.seconds:.1f}s" if holder.seconds else ""
            lines.append(f"The event loop is held{held} by {who} at {call_site(holder.stack)}; "
                         "stack (most recent call last):")
            lines.extend(format_stack(user_stack(holder.stack)))
        where = None
        if holder is not None:
            where = {"site": call_site(holder.stack), "seconds": round(holder.seconds, 3),
                     "stack": [f"{f.filename}:{f.lineno} in {f.function}"
                               for f in user_stack(holder.stack)]}
        write_without_hub(level, "\n".join(lines), request_id, {"stop": {
            **(fields or {}), "holder": request_id, **(where or {"site": None})}})


def _current_frame(thread_ident: int) -> Any:
    import sys

    return sys._current_frames().get(thread_ident)


def _forget_in_child() -> None:
    """A forked child is not the runtime: the wakeup pipe and the drain are not its own."""
    signal.set_wakeup_fd(-1)
    function_signals.uninstall()  # the child keeps what the function registered
