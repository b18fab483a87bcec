"""The classic loop: one invocation at a time. Never imports gevent (DESIGN.md invariant 2)."""

from __future__ import annotations

import logging
import random
import time

from .client import InvalidInvocation, RuntimeApiClient, RuntimeApiError
from .invoke import Invoker

log = logging.getLogger("lmi_gevent")


class Backoff:
    """Capped, jittered exponential delays between failed ``/next`` calls."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial = initial
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        ceiling = min(self.cap, self.initial * 2 ** min(self.failures - 1, 30))
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter": never hot, never in step

    def reset(self) -> None:
        self.failures = 0


def poll(client: RuntimeApiClient, backoff: Backoff, sleep=time.sleep):  # type: ignore[no-untyped-def]
    """The next invocation, retrying failed ``/next`` calls; PlatformFailure propagates."""
    while True:
        try:
            invocation = client.next_invocation()
        except InvalidInvocation as problem:
            log.error("Skipping an invocation that cannot be answered: %s", problem)
            continue
        except RuntimeApiError as problem:
            delay = backoff.next_delay()
            log.warning("/next failed (attempt %d), retrying in %.2fs: %s",
                        backoff.failures, delay, problem)
            sleep(delay)
            continue
        backoff.reset()
        return invocation


def serve(client: RuntimeApiClient, invoker: Invoker, backoff: Backoff) -> None:
    """Poll, invoke, answer, forever (until the platform fails or the process is stopped)."""
    while True:
        invocation = poll(client, backoff)
        invoker.run(invocation, client)
