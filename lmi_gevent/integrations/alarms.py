"""``signal.alarm()`` and the real-time interval timer, per greenlet (concurrent mode).

A SIGALRM timeout — ``signal.alarm(n)`` with a handler that raises, as AWS's guides suggest for
logging before a Lambda timeout, or packages such as timeout-decorator — is process-wide. With
every slot in one process the signal lands in whatever runs when it fires: mostly gevent's hub,
which hands the exception to the main greenlet, and the whole runtime died with every
invocation in it; otherwise another invocation gets the exception. Under the official client
each slot is a process of its own, so an alarm only ever interrupts its own invocation.

:func:`install` gives each greenlet its own ``ITIMER_REAL``: ``signal.alarm``,
``signal.setitimer(signal.ITIMER_REAL, ...)`` and ``signal.getitimer(signal.ITIMER_REAL)``
keep their signatures and return values but schedule a gevent timer for the calling greenlet.
When it expires, the SIGALRM handler (``signal.signal(signal.SIGALRM, ...)`` as usual) is
called for that greenlet — with its frame, in a copy of its context (its request id) — and
whatever it raises is raised in that greenlet where it waits, as a real signal interrupts a
blocking call. ``SIG_IGN`` ignores the alarm; ``SIG_DFL``, which would kill a process, is
logged and ignored rather than ending every invocation. The CPU-time timers
(``ITIMER_VIRTUAL``, ``ITIMER_PROF``) stay process-wide.

Code that never yields (a C call, a busy loop) is interrupted at its next switch only, and an
alarm left set when an invocation ends stays with its slot, as it would stay with the process
that served it under the official client.
"""

from __future__ import annotations

import logging
import operator
import signal
import time
from typing import Any, Callable

log = logging.getLogger("lmi_gevent")


class _Timer:
    __slots__ = ("watcher", "due", "interval")

    def __init__(self, watcher: Any, due: float, interval: float) -> None:
        self.watcher = watcher
        self.due = due
        self.interval = interval


class GreenletAlarms:
    """One ``ITIMER_REAL`` per greenlet, on the gevent hub's loop."""

    def __init__(self, handler_of: Callable[[], Any] = lambda: signal.getsignal(signal.SIGALRM)
                 ) -> None:
        self._handler_of = handler_of
        self._timers: dict[Any, _Timer] = {}

    # --- the signal module's interface ---------------------------------------------------

    def alarm(self, seconds: int) -> int:
        seconds = operator.index(seconds)
        if seconds < 0:
            raise OverflowError("can't convert negative int to unsigned")
        remaining, _ = self._replace(_current(), float(seconds), 0.0)
        # Like alarm(2): whole seconds, rounded, and never 0 for an alarm still pending.
        return max(1, round(remaining)) if remaining > 0 else 0

    def setitimer(self, seconds: float, interval: float = 0.0) -> tuple[float, float]:
        if seconds < 0 or interval < 0:
            raise signal.ItimerError("setitimer: negative time")
        return self._replace(_current(), float(seconds), float(interval))

    def getitimer(self) -> tuple[float, float]:
        timer = self._timers.get(_current())
        if timer is None:
            return 0.0, 0.0
        return max(timer.due - time.monotonic(), 0.0), timer.interval

    def pending(self) -> int:
        return len(self._timers)

    # --- timers ------------------------------------------------------------------------------

    def _replace(self, owner: Any, seconds: float, interval: float) -> tuple[float, float]:
        """Set ``owner``'s timer (``seconds`` 0: none); return the old (remaining, interval)."""
        old = self._timers.pop(owner, None)
        previous = (0.0, 0.0)
        if old is not None:
            old.watcher.close()
            previous = (max(old.due - time.monotonic(), 1e-6), old.interval)
        if seconds > 0:
            self._start(owner, seconds, interval)
        return previous

    def _start(self, owner: Any, seconds: float, interval: float) -> None:
        import gevent

        watcher = gevent.get_hub().loop.timer(seconds)
        timer = _Timer(watcher, time.monotonic() + seconds, interval)
        self._timers[owner] = timer
        # update=True: counted from now, not from the loop's cached time (stale by as long
        # as the caller has run without yielding), so an alarm never fires early. gevent
        # 26 does this by default; explicit, so that a gevent whose default differs cannot.
        watcher.start(self._expire, owner, timer, update=True)

    def _expire(self, owner: Any, timer: _Timer) -> None:
        if self._timers.get(owner) is not timer:
            return  # replaced or cancelled meanwhile
        timer.watcher.close()
        del self._timers[owner]
        if owner.dead:
            return
        if timer.interval > 0:
            self._start(owner, timer.interval, timer.interval)
        handler = self._handler_of()
        if handler in (signal.SIG_IGN, None):
            return
        if handler == signal.SIG_DFL:
            log.warning("SIGALRM: an alarm expired with no handler set. A process would be "
                        "killed; lmi-gevent ignores it so other invocations go on.")
            return
        context = owner.gr_context
        try:
            if context is not None:
                context.copy().run(handler, signal.SIGALRM, owner.gr_frame)
            else:
                handler(signal.SIGALRM, owner.gr_frame)
        except BaseException as raised:  # noqa: BLE001 - it belongs to the owner, not the hub
            owner.throw(raised)


def _current() -> Any:
    import greenlet

    return greenlet.getcurrent()


def install() -> GreenletAlarms:
    """Replace ``signal.alarm``/``setitimer``/``getitimer`` (ITIMER_REAL) with per-greenlet
    timers. Call after ``gevent.monkey.patch_all()`` and before the handler is imported."""
    alarms = GreenletAlarms()
    real_setitimer, real_getitimer = signal.setitimer, signal.getitimer

    def setitimer(which: int, seconds: float, interval: float = 0.0) -> tuple[float, float]:
        if which != signal.ITIMER_REAL:
            return real_setitimer(which, seconds, interval)
        return alarms.setitimer(seconds, interval)

    def getitimer(which: int) -> tuple[float, float]:
        if which != signal.ITIMER_REAL:
            return real_getitimer(which)
        return alarms.getitimer()

    signal.alarm = alarms.alarm
    signal.setitimer = setitimer
    signal.getitimer = getitimer
    return alarms
