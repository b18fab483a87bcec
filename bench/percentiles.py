"""Percentiles of latency samples; stdlib only, shared by the load generator and the bench."""

from __future__ import annotations

import math


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty).

    Nearest rank, not interpolation: a p99 is then always a latency that really happened.
    """
    if not ordered:
        return 0.0
    rank = min(len(ordered), max(1, math.ceil(q * len(ordered))))
    return ordered[rank - 1]
