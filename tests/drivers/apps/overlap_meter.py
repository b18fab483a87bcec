"""Counts how many invocations are inside a driver's wait at the same moment.

Process-wide on purpose: the count is *across* invocations. Plain integers are enough:
greenlets switch only at blocking calls, never between these statements.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

in_flight = 0
peak = 0


@contextlib.contextmanager
def waiting() -> Iterator[None]:
    global in_flight, peak
    in_flight += 1
    peak = max(peak, in_flight)
    try:
        yield
    finally:
        in_flight -= 1


def answer(**extra: object) -> dict[str, object]:
    """The handler's reply: the peak so far (the test takes the max over all replies)."""
    return {"peak": peak, **extra}
