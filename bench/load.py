"""The load generator: ``python -m bench.load``, a process of its own so that its CPU is not
the runtime's, driven by JSON lines on stdin and answering with JSON lines on stdout.

Closed loop: ``concurrency`` greenlets, each with one keep-alive HTTP/1.1 connection to the
Invoke API, send the next invocation as soon as the previous answer arrives. So exactly
``concurrency`` invocations are outstanding, which is what "N concurrent callers" means.
The HTTP client is a few lines over a raw gevent socket: http.client costs several times
more CPU per call, and the load generator must never be the bottleneck.

For each job it prints ``{"event": "measuring"}`` when the warm-up ends and
``{"event": "window_closed"}`` when the measured window ends (the bench takes its CPU
snapshots of the runtime and the emulator at those two moments), then ``{"event": "done",
...}`` with the figures of the window once the last calls are back. It exits when stdin
closes, so it cannot outlive the bench.
"""

from __future__ import annotations

import json
import os
import resource
import socket as _stdlib_socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import gevent
from gevent import socket

from .percentiles import percentile

# Answers are small; this is only a guard against a runaway peer.
MAX_HEAD = 64 * 1024


class ProtocolError(Exception):
    """The peer sent something that is not an HTTP/1.1 answer we understand."""


class Connection:
    """One keep-alive connection that sends a prepared request and reads one answer."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        # One write per request; without NODELAY loopback adds delayed-ACK stalls.
        self.sock.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send ``request``; return (status, function_failed) of the answer."""
        self.sock.sendall(request)
        head = self._read_head()
        status = int(head[9:12])
        lowered = head.lower()
        self._skip_body(_content_length(lowered))
        return status, b"\r\nx-amz-function-error:" in lowered

    def _read_head(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                head, self.buffer = self.buffer[:end + 2], self.buffer[end + 4:]
                return head
            if len(self.buffer) > MAX_HEAD:
                raise ProtocolError("answer head too long")
            self._fill()

    def _skip_body(self, length: int) -> None:
        while len(self.buffer) < length:
            self._fill()
        self.buffer = self.buffer[length:]

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def _content_length(lowered_head: bytes) -> int:
    start = lowered_head.find(b"\r\ncontent-length:")
    if start < 0:
        raise ProtocolError("answer without Content-Length (the emulator always sends one)")
    start += len(b"\r\ncontent-length:")
    return int(lowered_head[start:lowered_head.index(b"\r\n", start)])


@dataclass
class Job:
    """One measurement, as the bench sends it (see ``bench.services.LoadGenerator.run``)."""

    host: str
    port: int
    path: str
    body: str
    concurrency: int
    warmup: float
    duration: float
    max_requests: int
    timeout: float
    # Callers start evenly over this many seconds. Started all at once, N callers of a
    # fixed-duration handler stay in lock-step and hit the runtime in bursts of N, which
    # measures the burst rather than the steady rate that independent callers produce.
    spread: float = 0.0

    def request_bytes(self) -> bytes:
        body = self.body.encode()
        head = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        return head.encode("latin-1") + body


@dataclass
class Window:
    """The measured interval, in time.perf_counter() seconds, and what happened in it."""

    start: float
    end: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    issued: int = 0


def _caller(job: Job, conn: Connection | None, request: bytes, window: Window,
            delay: float) -> None:
    """One closed-loop caller: invoke, wait, repeat until the window ends (or the cap)."""
    try:
        gevent.sleep(delay)
        while window.issued < job.max_requests and time.perf_counter() < window.end:
            if conn is None:
                conn = _reconnect(job)
                continue
            window.issued += 1
            started = time.perf_counter()
            try:
                status, failed = conn.exchange(request)
            except (OSError, ProtocolError, ValueError):
                window.errors += 1
                conn.close()
                conn = None  # a fresh connection keeps the concurrency level
                continue
            finished = time.perf_counter()
            if window.start <= finished <= window.end:
                if status != 200 or failed:
                    window.errors += 1
                else:
                    window.latencies.append(finished - started)
    finally:
        if conn is not None:
            conn.close()


def _reconnect(job: Job) -> Connection | None:
    try:
        return Connection(job.host, job.port, job.timeout)
    except OSError:
        gevent.sleep(0.05)  # the server is refusing: do not spin
        return None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_job(job: Job, emit: Any) -> dict[str, Any]:
    """Open the connections, run the warm-up and the window, return the window's figures."""
    connections = [Connection(job.host, job.port, job.timeout) for _ in range(job.concurrency)]
    request = job.request_bytes()
    start = time.perf_counter() + job.warmup
    window = Window(start, start + job.duration)
    step = job.spread / job.concurrency
    callers = [gevent.spawn(_caller, job, conn, request, window, number * step)
               for number, conn in enumerate(connections)]
    gevent.sleep(max(0.0, window.start - time.perf_counter()))
    emit({"event": "measuring"})
    cpu_before = _cpu_seconds()
    # Callers also stop once max_requests were issued (the soak counts invocations, not time).
    gevent.joinall(callers, timeout=max(0.0, window.end - time.perf_counter()))
    measured = min(job.duration, time.perf_counter() - window.start)
    cpu_used = _cpu_seconds() - cpu_before
    emit({"event": "window_closed"})
    # The last calls finish within one handler duration; the timeout bounds a stuck one.
    gevent.joinall(callers, timeout=job.timeout)
    gevent.killall(callers, timeout=2)
    return summarize(window, measured, cpu_used)


def summarize(window: Window, duration: float, cpu_seconds: float) -> dict[str, Any]:
    ordered = sorted(window.latencies)
    completed = len(ordered)
    return {
        "event": "done",
        "completed": completed,
        "errors": window.errors,
        "throughput": completed / duration,
        "latency_ms": {name: percentile(ordered, q) * 1000
                       for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))},
        "cpu_seconds": cpu_seconds,
        "duration": duration,
    }


class Channel:
    """JSON lines over stdin/stdout without blocking the hub while waiting for a job."""

    def __init__(self) -> None:
        self.pending = b""

    def read(self) -> dict[str, Any] | None:
        while b"\n" not in self.pending:
            socket.wait_read(0)
            chunk = os.read(0, 65536)
            if not chunk:
                return None  # the bench went away: stop
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return json.loads(line)

    @staticmethod
    def write(message: dict[str, Any]) -> None:
        os.write(1, (json.dumps(message) + "\n").encode())


def main() -> int:
    channel = Channel()
    channel.write({"event": "ready", "pid": os.getpid()})
    while True:
        message = channel.read()
        if message is None:
            return 0
        try:
            channel.write(run_job(Job(**message), channel.write))
        except (OSError, ProtocolError, TypeError, ValueError) as problem:
            channel.write({"event": "failed", "error": f"{type(problem).__name__}: {problem}"})


if __name__ == "__main__":
    sys.exit(main())
