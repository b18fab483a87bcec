"""An answer the handler produced reaches the platform (docs/design.md, invariant 8).

A post of a response, an error or an init error that fails on the way — the connection reset
while posting, closed before the status came back, a 502/503/504 from a proxy in between — is
sent again on a fresh connection, after capped, jittered delays, until the invocation's
deadline has passed. Retrying is safe because the platform refuses a second answer for an
invocation with 400: a 400 to a *repeated* post therefore means the first attempt got through,
and counts as delivered. Only the same answer is ever repeated, never a different one.
"""

from __future__ import annotations

import logging
import time

from ..records import Record
from .backoff import Backoff
from .client import PlatformFailure, RuntimeApiError
from .repeats import REPEATS

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Callable

log = logging.getLogger("lmi_gevent")

# Statuses that say "not taken, try again" rather than judge the answer; 500 is not among them:
# on a post it means the platform is in a non-recoverable state (PlatformFailure).
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class RetryPolicy(Record):
    """Retry timings (settings LMI_GEVENT_ANSWER_RETRY_INITIAL, _MAX and _BUDGET)."""

    initial: float = 0.05
    cap: float = 1.0
    # How long to keep trying when there is no deadline to go by (init errors, unusable
    # Lambda-Runtime-Deadline-Ms headers).
    budget: float = 30.0


class Outcome(Record):
    """What the platform last said to a post, and after how many attempts."""

    status: int
    reply: bytes
    attempts: int

    @property
    def delivered(self) -> bool:
        # 400 to a repeat: the platform already holds this answer (a first attempt's 400 is a
        # real refusal, e.g. an unknown request id).
        return self.status == 202 or (self.status == 400 and self.attempts > 1)


def deliver(post: Callable[[], tuple[int, bytes]], what: str, *, deadline: float | None,
            policy: RetryPolicy, sleep: Callable[[float], object] | None = None,
            clock: Callable[[], float] = time.time) -> Outcome | None:
    """Call ``post`` until the platform answers it; None when it never did by ``deadline``.

    ``what`` names the answer in log lines ("the response of invocation 8f…"); ``deadline`` is
    epoch seconds (None: ``policy.budget`` from now). PlatformFailure propagates. The first
    retry is immediate (a keep-alive connection closed by the server fails on first use);
    later ones wait a jittered, doubling delay and stop once the deadline has passed.
    """
    sleep = sleep or time.sleep  # looked up per call: concurrent mode patches time.sleep
    limit = deadline if deadline is not None else clock() + policy.budget
    backoff = Backoff(policy.initial, policy.cap)
    attempts = 0
    while True:
        attempts += 1
        try:
            status, reply = post()
        except PlatformFailure:
            raise
        except RuntimeApiError as problem:
            failure = str(problem)
        else:
            outcome = Outcome(status, reply, attempts)
            if outcome.delivered and status == 400:
                log.info("%s had already reached the platform: the repeated post (attempt %d) "
                         "was refused with 400.", _capital(what), attempts)
            if status not in RETRYABLE_STATUSES:
                return outcome
            failure = f"HTTP {status}: {reply[:200].decode('utf-8', 'replace')}"
        if attempts == 1:
            delay = 0.0
        else:
            now = clock()
            if now >= limit:
                _give_up(what, attempts, now - limit, deadline is None, policy, failure)
                return None
            delay = min(backoff.next_delay(), limit - now)
        REPEATS.warning("post", "Could not post %s (attempt %d), retrying in %.2fs: %s", what,
                        attempts, delay, failure)
        if delay:
            sleep(delay)


def _give_up(what: str, attempts: int, late: float, budgeted: bool, policy: RetryPolicy,
             failure: str) -> None:
    if budgeted:
        reason = f"LMI_GEVENT_ANSWER_RETRY_BUDGET={policy.budget:g}s ran out"
    else:
        reason = f"the invocation's deadline passed {late:.2f}s ago"
    log.error("Gave up posting %s after %d attempts: %s. Last failure: %s", what, attempts,
              reason, failure)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
