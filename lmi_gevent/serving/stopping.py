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
only waits. Imported only in concurrent mode, after patching.
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

if TYPE_CHECKING:
    from .slots import SlotPool

# After the drain timeout and the cut invocations' answer time: time to exit normally.
EXIT_MARGIN = 1.0
# How long the hub gets to answer "are you running?" before it is taken as held.
HUB_PROBE_TIMEOUT = 0.5
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_start_new_thread = monkey.get_original("_thread", "start_new_thread")
_allocate_lock = monkey.get_original("_thread", "allocate_lock")
_select = monkey.get_original("select", "select")


class StopWatch:
    """Owns SIGTERM/SIGINT for the slots, and ends the process if the drain cannot run."""

    def __init__(self, slots: SlotPool, *, grace: float,
                 detector: StallDetector | None = None) -> None:
        self.slots = slots
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
            signal.signal(signum, self._on_signal)
        os.register_at_fork(after_in_child=_forget_in_child)
        _start_new_thread(self._watch, ())

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Runs in the main thread in whichever greenlet is current (often the hub): it must
        # not block, so the work happens in a greenlet of its own, as gevent.signal_handler did.
        gevent.spawn(self.slots.request_stop, signum)

    # --- the native thread ---------------------------------------------------------------------

    def _watch(self) -> None:
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            ready, _, _ = _select([self._wakeup_read], [], [], timeout)
            if not ready:
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
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM
                      else signal.default_int_handler)
