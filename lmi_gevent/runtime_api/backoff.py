"""Capped, jittered exponential delays: between failed ``/next`` calls, and between attempts
to post an answer (:mod:`lmi_gevent.runtime_api.delivery`)."""

from __future__ import annotations

__all__ = ["Backoff"]


class Backoff:
    """Capped, jittered exponential delays: ``initial`` doubling per failure up to ``cap``."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial = initial
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        import random  # only once something failed: not part of a cold start

        self.failures += 1
        ceiling = min(self.cap, self.initial * 2 ** min(self.failures - 1, 30))
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter": never hot, never in step

    def reset(self) -> None:
        self.failures = 0
