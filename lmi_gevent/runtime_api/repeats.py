"""Repeated failures of one kind, summarised: the first is logged at once, the rest at most
once per interval as one line with their count, so that 1600 slots failing the same way write
a line a second, not one per slot per retry, and no failure goes uncounted.

Stdlib only and lock-free (one thread, or greenlets that switch only at I/O), so both serving
modes and the supervisor can use it.
"""

from __future__ import annotations

import logging
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing is not imported on a classic cold start
if TYPE_CHECKING:
    from typing import Callable

log = logging.getLogger("lmi_gevent")


class _Kind:
    __slots__ = ("last_line_at", "unlogged", "last")

    def __init__(self, last_line_at: float) -> None:
        self.last_line_at = last_line_at
        self.unlogged = 0  # occurrences since the last line written
        self.last = ""


class Repeats:
    """Per-kind summaries of a repeated warning (``kind``: a short constant name): at most one
    line per ``interval`` per kind, however many slots fail and recover."""

    def __init__(self, logger: logging.Logger = log, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.kinds: dict[str, _Kind] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        """Log ``message % args`` now, or count it into the next summary line."""
        now = self.clock()
        state = self.kinds.get(kind)
        if state is None:
            state = self.kinds[kind] = _Kind(now - self.interval)  # the first is written at once
        state.unlogged += 1
        state.last = message % args if args else message
        if now - state.last_line_at >= self.interval:
            self._write(state, now, "this one the latest")

    def ended(self, kind: str) -> None:
        """A call of ``kind`` succeeded: report the failures not written yet (rate permitting)."""
        state = self.kinds.get(kind)
        if state is not None and state.unlogged:
            now = self.clock()
            if now - state.last_line_at >= self.interval:
                self._write(state, now, "then one succeeded")

    def _write(self, state: _Kind, now: float, tail: str) -> None:
        if state.unlogged == 1 and tail == "this one the latest":
            self.logger.warning("%s", state.last)
        else:
            self.logger.warning("%s [%d like this in the last %.1fs, %s]", state.last,
                                state.unlogged, now - state.last_line_at, tail)
        state.last_line_at, state.unlogged = now, 0


REPEATS = Repeats()  # the process's summaries; call sites name their kind
