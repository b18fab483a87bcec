"""What the emulator saw: counters, high-water marks, a bounded event timeline and the last
answers the runtime posted. Stdlib only and free of I/O, so it is cheap to update on every
request and easy to read in a test."""

from __future__ import annotations

import resource
import time
from collections import Counter, deque
from typing import Any

# Endpoints as they are named in status counts and fault injection.
ENDPOINTS = ("next", "response", "error", "init_error", "invoke", "control", "other")

_COUNTERS = (
    "invocations_received",
    "dispatched",
    "answered",
    "responses",
    "errors",
    "timed_out",
    "late_answers",
    "oversized_responses",
    "oversized_errors",
    "rejected_queue_full",
    "rejected_unavailable",
    "rejected_init_failed",
    "runtime_exits",
    "requeued",
    "abandoned",
    "polls_opened_total",
    "polls_disconnected",
    "invocation_id_mismatches",
    "invocation_id_missing",
    "invalid_request_ids",
    "capacity_exceeded",
    "errors_with_type_header",
    "errors_with_xray_cause",
    "faults_applied",
    "repeated_answers",
    "repeated_answers_different",
    "bad_requests",
    "streamed_responses",
    "stream_errors",
    "function_url_requests",
)


class Record:
    """Counters and the timeline. ``capacity`` is N, used only to count moments where the
    runtime held more polls + invocations than it is allowed (DESIGN invariant 3)."""

    def __init__(self, capacity: int, max_events: int = 20000, max_answers: int = 200) -> None:
        self.capacity = capacity
        self.events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self.answers: deque[dict[str, Any]] = deque(maxlen=max_answers)
        self.open_polls = 0
        self.in_flight = 0
        self.queued = 0
        self.init_error: dict[str, Any] | None = None
        # When the first GET /next arrived (monotonic): on Lambda, init ends there.
        self.first_poll_t: float | None = None
        self._started = time.monotonic()
        self.reset()

    def reset(self) -> None:
        """Zero the counters; high-water marks restart from the present state."""
        self.counts: Counter[str] = Counter({name: 0 for name in _COUNTERS})
        self.status_codes: dict[str, Counter[int]] = {name: Counter() for name in ENDPOINTS}
        self.max_open_polls = self.open_polls
        self.max_in_flight = self.in_flight
        self.max_queued = self.queued
        self.max_polls_plus_in_flight = self.open_polls + self.in_flight
        self.events.clear()
        self.answers.clear()
        self._cpu_base = _cpu_seconds()

    def count(self, name: str, by: int = 1) -> None:
        self.counts[name] += by

    def status(self, endpoint: str, code: int) -> None:
        self.status_codes[endpoint][code] += 1

    def event(self, kind: str, request_id: str | None = None, **extra: Any) -> dict[str, Any]:
        # Monotonic time is CLOCK_MONOTONIC on Linux, shared by every process, so a test can
        # compare these stamps with its own time.monotonic().
        entry: dict[str, Any] = {"t": time.monotonic(), "kind": kind}
        if request_id is not None:
            entry["request_id"] = request_id
        entry["open_polls"] = self.open_polls
        entry["in_flight"] = self.in_flight
        entry.update(extra)
        self.events.append(entry)
        return entry

    def shift(self, *, polls: int = 0, in_flight: int = 0, queued: int = 0) -> None:
        """Apply a change of state and keep the high-water marks."""
        before = self.open_polls + self.in_flight
        self.open_polls += polls
        self.in_flight += in_flight
        self.queued += queued
        self.max_open_polls = max(self.max_open_polls, self.open_polls)
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_queued = max(self.max_queued, self.queued)
        total = self.open_polls + self.in_flight
        self.max_polls_plus_in_flight = max(self.max_polls_plus_in_flight, total)
        if total > self.capacity and total > before:
            self.counts["capacity_exceeded"] += 1

    def snapshot(self) -> dict[str, Any]:
        user, system = _cpu_seconds()
        base_user, base_system = self._cpu_base
        stats: dict[str, Any] = dict(self.counts)
        stats.update(
            open_polls=self.open_polls,
            max_open_polls=self.max_open_polls,
            in_flight=self.in_flight,
            max_in_flight=self.max_in_flight,
            queued=self.queued,
            max_queued=self.max_queued,
            max_polls_plus_in_flight=self.max_polls_plus_in_flight,
            init_error=self.init_error,
            first_poll_t=self.first_poll_t,
            status_codes={
                endpoint: {str(code): n for code, n in sorted(codes.items())}
                for endpoint, codes in self.status_codes.items()
            },
            cpu_user_seconds=round(user - base_user, 6),
            cpu_system_seconds=round(system - base_system, 6),
            uptime_seconds=round(time.monotonic() - self._started, 6),
            events_recorded=len(self.events),
        )
        return stats


def _cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime
