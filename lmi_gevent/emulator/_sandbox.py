"""The emulated execution environment: invocations waiting, polls waiting, invocations in
flight, and the rules that move an invocation from the Invoke API to the runtime and its
answer back. No sockets here: the servers call in, and every method runs to completion
without yielding (one gevent hub, so no locks are needed)."""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
import uuid
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gevent import get_hub
from gevent.event import AsyncResult
from gevent.queue import Queue

from ._record import Record

# Lambda's synchronous payload limit; RIE accepts a response up to 100 bytes over it.
MAX_EVENT_BYTES = 6 * 1024 * 1024
MAX_RESPONSE_BYTES = MAX_EVENT_BYTES + 100
# RIE reads error bodies through a 1 MiB limit.
MAX_ERROR_BYTES = 1024 * 1024
ACCOUNT_ID = "012345678912"
REGION = "us-east-1"

Headers = tuple[tuple[str, str], ...]


@dataclass
class Settings:
    """Everything the emulator can be told; defaults match `python -m lmi_gevent.emulator`."""

    concurrency: int = 1
    timeout: float = 30.0
    # Invocations allowed to wait for a poll; None means max(100, 4 x concurrency).
    queue: int | None = None
    # Imitate RIE/LMI: no queue at all, reject an invoke when no /next poll is open.
    strict: bool = False
    function_name: str = "function"
    max_events: int = 20000
    max_answers: int = 200

    @property
    def queue_size(self) -> int:
        return self.queue if self.queue is not None else max(100, 4 * self.concurrency)

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"


class StreamRelay:
    """A streamed response on its way from the runtime to the caller, chunk by chunk.

    The Runtime API side ``put``s each chunk as it reads it and ``end``s the relay with the
    trailers; the Invoke API side iterates it and writes each chunk as soon as it comes.
    """

    def __init__(self, content_type: str) -> None:
        self.content_type = content_type
        self._queue: Queue = Queue()
        self.trailers: dict[str, str] = {}
        self.ended = False
        self.chunks = 0
        self.bytes = 0
        self.kept = bytearray()  # the first 64 KiB, for /_lmi/answers

    def put(self, chunk: bytes) -> None:
        self.chunks += 1
        self.bytes += len(chunk)
        if len(self.kept) < 65536:
            self.kept += chunk[:65536 - len(self.kept)]
        if not self.ended:
            self._queue.put(chunk)

    def end(self, trailers: dict[str, str]) -> None:
        """No more chunks reach the caller (the stream finished, or was cut)."""
        if self.ended:
            return
        self.ended = True
        self.trailers = trailers
        self._queue.put(None)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            yield chunk


@dataclass(frozen=True)
class CallerAnswer:
    """What the Invoke API sends back to the caller of one invocation; ``stream`` is set
    instead of ``body`` for a streamed response."""

    status: int
    headers: Headers
    body: bytes
    stream: StreamRelay | None = None


@dataclass(frozen=True)
class Rejection:
    """A Runtime API answer that is not 2xx: status and the platform's error type."""

    status: int
    error_type: str
    message: str

    def body(self) -> bytes:
        return json.dumps({"errorType": self.error_type, "errorMessage": self.message}).encode()


FAULT_ACTIONS = ("status", "reset", "close")
# How many answered request ids are remembered to recognise a repeated post.
ANSWERED_MEMORY = 250_000
WORKER_EXIT_ERROR = "Runtime.ExitError"  # the platform's answer for a runtime process that died


@dataclass
class Fault:
    """An injected failure of one endpoint: ``action`` is ``status`` (answer ``status`` without
    acting), ``reset`` (drop the connection with a RST) or ``close`` (close it, FIN, without
    answering). ``accepted`` (posts only): take the answer first, then reset instead of
    answering 202, or close right after the 202. It applies to the next ``remaining`` calls
    (None: no limit), each with probability ``rate`` (None: every call)."""

    action: str
    status: int | None = None
    remaining: int | None = 1
    rate: float | None = None
    accepted: bool = False

    @property
    def reset(self) -> bool:
        return self.action == "reset"


@dataclass(eq=False)
class Invocation:
    body: bytes
    content_type: str
    trace_id: str
    client_context: str = ""
    cognito_identity: str = ""
    tenant_id: str | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    state: str = "queued"  # queued -> dispatched -> answered | timed_out; or abandoned
    deadline_ms: int = 0
    outcome: AsyncResult = field(default_factory=AsyncResult)
    timer: Any = None
    relay: StreamRelay | None = None

    def runtime_headers(self, function_arn: str) -> Headers:
        """The headers of the /next answer that carries this invocation."""
        headers = [
            ("Content-Type", self.content_type),
            ("Lambda-Runtime-Aws-Request-Id", self.request_id),
            ("Lambda-Runtime-Invocation-Id", self.invocation_id),
            ("Lambda-Runtime-Deadline-Ms", str(self.deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", function_arn),
            ("Lambda-Runtime-Trace-Id", self.trace_id),
            ("Lambda-Runtime-Client-Context", self.client_context),
            ("Lambda-Runtime-Cognito-Identity", self.cognito_identity),
        ]
        if self.tenant_id is not None:
            headers.append(("Lambda-Runtime-Aws-Tenant-Id", self.tenant_id))
        return tuple(headers)


class Poll:
    """A waiting GET /next. Its result is the Invocation handed to it, or None when the poll
    ended without one (the runtime hung up, the server stopped)."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result: AsyncResult = AsyncResult()


def new_trace_id() -> str:
    """A fresh X-Ray trace header value, unsampled, as the platform would hand out."""
    root = f"1-{int(time.time()):08x}-{random.getrandbits(96):024x}"
    return f"Root={root};Parent={random.getrandbits(64):016x};Sampled=0"


def decode_client_context(value: str) -> str:
    """Caller's base64 X-Amz-Client-Context -> compact JSON for the runtime header.

    Re-serialising matters: a pretty-printed document would put line breaks into a header.
    Raises ValueError for anything that is not base64 of a JSON object; "" stays "".
    """
    if not value:
        return ""
    try:
        document = json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"client context is not base64-encoded JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("client context must be a JSON object")
    return json.dumps(document, separators=(",", ":"))


def decode_cognito_identity(value: str) -> str:
    """Caller's X-Amz-Cognito-Identity JSON -> the runtime header, keeping the two fields RIE
    keeps. Raises ValueError unless it is a JSON object; "" stays ""."""
    if not value:
        return ""
    try:
        document = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"X-Amz-Cognito-Identity is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("X-Amz-Cognito-Identity must be a JSON object")
    kept = {key: str(document.get(key, "")) for key in ("cognitoIdentityId", "cognitoIdentityPoolId")}
    return json.dumps(kept, separators=(",", ":"))


def function_error(error_type: str, message: str) -> CallerAnswer:
    """A failed invocation as Lambda's Invoke API reports it: 200 + X-Amz-Function-Error."""
    body = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
    return _unhandled(body, error_type)


def _unhandled(body: bytes, error_type: str) -> CallerAnswer:
    headers = (
        ("Content-Type", "application/json"),
        ("X-Amz-Function-Error", "Unhandled"),
        ("Error-Type", error_type),  # RIE's Managed Instances responder sets it too
        ("X-Amz-Executed-Version", "$LATEST"),
    )
    return CallerAnswer(200, headers, body)


class Sandbox:
    """Routes invocations between the Invoke API and the Runtime API and records it all."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.record = Record(settings.concurrency, settings.max_events, settings.max_answers)
        self._queue: deque[Invocation] = deque()
        self._polls: OrderedDict[Poll, None] = OrderedDict()
        self._in_flight: dict[str, Invocation] = {}
        self._faults: dict[str, deque[Fault]] = {}
        self._fault_dice = random.Random()
        # request id -> (endpoint, crc32 of the body) of its accepted answer, so that a
        # repeated post can be told apart from a different second answer.
        self._answered: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._init_error_answer: CallerAnswer | None = None
        # Called (in the hub, must not block) with the recorded init error.
        self.init_error_listeners: list[Callable[[dict[str, Any]], None]] = []

    # ---- Invoke API side -------------------------------------------------------------

    def submit(self, inv: Invocation) -> CallerAnswer | None:
        """Take a new invocation. Returns an immediate answer (rejection), or None when the
        caller must wait on ``inv.outcome``."""
        self.record.count("invocations_received")
        self.record.event("invoke", inv.request_id)
        if self._init_error_answer is not None:
            self.record.count("rejected_init_failed")
            return self._init_error_answer
        if self._polls:
            self._dispatch(inv, self._polls.popitem(last=False)[0])
            return None
        if self.settings.strict:
            return self._reject(inv, "rejected_unavailable", 400, "Runtime.Unavailable",
                                "No runtime is polling /next: every slot is busy or none started.")
        if len(self._queue) >= self.settings.queue_size:
            return self._reject(inv, "rejected_queue_full", 429, "TooManyRequestsException",
                                f"Rate Exceeded: {len(self._queue)} invocations already wait "
                                f"for a free slot (queue size {self.settings.queue_size}).")
        self._queue.append(inv)
        self.record.shift(queued=1)
        return None

    def _reject(self, inv: Invocation, counter: str, status: int, error_type: str,
                message: str) -> CallerAnswer:
        inv.state = "rejected"
        self.record.count(counter)
        self.record.event("reject", inv.request_id, status=status, error_type=error_type)
        body = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
        headers = (("Content-Type", "application/json"), ("X-Amzn-ErrorType", error_type))
        return CallerAnswer(status, headers, body)

    def is_live(self, request_id: str) -> bool:
        """True while an invocation with this id waits or runs."""
        return request_id in self._in_flight or any(inv.request_id == request_id for inv in self._queue)

    def abandon(self, inv: Invocation) -> None:
        """The caller hung up. A queued invocation is dropped; a dispatched one runs on and
        its answer is discarded, as on Lambda."""
        if inv.state != "queued":
            return
        self._queue.remove(inv)
        self.record.shift(queued=-1)
        inv.state = "abandoned"
        self.record.count("abandoned")
        self.record.event("abandon", inv.request_id)
        inv.outcome.set(None)

    # ---- Runtime API side ------------------------------------------------------------

    def open_poll(self) -> Invocation | Poll:
        """A GET /next arrived: hand it a queued invocation now, or a Poll to wait on."""
        self.record.count("polls_opened_total")
        entry = self.record.event("poll_open")
        if self.record.first_poll_t is None:
            self.record.first_poll_t = entry["t"]
        if self._queue:
            inv = self._queue.popleft()
            self.record.shift(queued=-1)
            self._dispatch(inv, None)
            return inv
        poll = Poll()
        self._polls[poll] = None
        self.record.shift(polls=1)
        return poll

    def cancel_poll(self, poll: Poll, reason: str) -> None:
        """A waiting poll ended without an invocation (its connection closed)."""
        if self._polls.pop(poll, False) is False:
            return  # already handed an invocation; the writer deals with a dead socket
        self.record.shift(polls=-1)
        self.record.count("polls_disconnected")
        self.record.event("poll_close", reason=reason)
        poll.result.set(None)

    def _dispatch(self, inv: Invocation, poll: Poll | None) -> None:
        timeout = self.settings.timeout
        inv.state = "dispatched"
        inv.deadline_ms = int((time.time() + timeout) * 1000)
        inv.timer = get_hub().loop.timer(timeout)
        inv.timer.start(self._expire, inv)
        self._in_flight[inv.request_id] = inv
        self.record.shift(polls=-1 if poll is not None else 0, in_flight=1)
        self.record.count("dispatched")
        self.record.event("dispatch", inv.request_id)
        if poll is not None:
            poll.result.set(inv)

    def requeue(self, inv: Invocation) -> None:
        """The /next answer carrying ``inv`` never reached the runtime: give it to another
        poll. Ignored once the invocation was answered or timed out."""
        if inv.state != "dispatched" or self._in_flight.get(inv.request_id) is not inv:
            return
        del self._in_flight[inv.request_id]
        self._stop_timer(inv)
        inv.state = "queued"
        self.record.shift(in_flight=-1)
        self.record.count("requeued")
        self.record.event("requeue", inv.request_id)
        if self._polls:
            self._dispatch(inv, self._polls.popitem(last=False)[0])
        else:
            self._queue.appendleft(inv)
            self.record.shift(queued=1)

    def _expire(self, inv: Invocation) -> None:
        # Runs in the hub. On LMI a timeout is not enforced: the caller gets its error, but
        # the invocation keeps its slot (stays in flight) until the runtime answers (410).
        if inv.state != "dispatched":
            return
        inv.state = "timed_out"
        self._stop_timer(inv)
        self.record.count("timed_out")
        self.record.event("timeout", inv.request_id)
        seconds = self.settings.timeout
        message = f"Task timed out after {seconds:.2f} seconds"
        if inv.relay is not None:  # the caller already has the head: cut its stream
            inv.relay.end(_stream_error_trailers("Sandbox.Timedout", message))
            return
        inv.outcome.set(function_error("Sandbox.Timedout", message))

    @staticmethod
    def _stop_timer(inv: Invocation) -> None:
        if inv.timer is not None:
            inv.timer.close()
            inv.timer = None

    def answer(self, request_id: str, kind: str, headers: dict[str, str], body: bytes) -> Rejection | None:
        """POST /invocation/{id}/response or /error. None means 202 Accepted."""
        inv = self._in_flight.get(request_id)
        echo = self._echo_state(inv, headers)
        self._log_answer(request_id, kind, headers, body, echo)
        checked = self._check_answer(inv, request_id, echo, kind, body)
        if not isinstance(checked, Invocation):
            return checked
        if kind == "error":
            return self._take_error(checked, headers, body)
        return self._take_response(checked, headers, body)

    def start_stream(self, request_id: str, headers: dict[str, str]) -> Rejection | StreamRelay:
        """A streamed POST /response began: the caller gets the head now and each chunk as
        the runtime sends it. Finish with :meth:`end_stream`."""
        inv = self._in_flight.get(request_id)
        echo = self._echo_state(inv, headers)
        # A stream cannot be compared before it is read: a repeated one counts as a repeat of
        # the same answer (see _count_repeat).
        checked = self._check_answer(inv, request_id, echo, "stream", b"")
        if not isinstance(checked, Invocation):
            self._log_answer(request_id, "response", headers, b"", echo)
            return checked
        relay = StreamRelay(headers.get("content-type") or "application/octet-stream")
        checked.relay = relay
        self.record.count("streamed_responses")
        self.record.event("stream_start", request_id)
        answer_headers = (
            ("Content-Type", relay.content_type),
            ("X-Amz-Executed-Version", "$LATEST"),
            ("X-Amzn-RequestId", request_id),
        )
        checked.outcome.set(CallerAnswer(200, answer_headers, b"", relay))
        return relay

    def end_stream(self, request_id: str, headers: dict[str, str], relay: StreamRelay,
                   trailers: dict[str, str], *, truncated: bool = False) -> Rejection | None:
        """The streamed answer's body ended (with ``trailers``, or cut short)."""
        if truncated:
            trailers = _stream_error_trailers("Runtime.TruncatedResponse",
                                              "the runtime's stream ended without its last chunk")
        relay.end(trailers)
        inv = self._in_flight.get(request_id)
        self._log_answer(request_id, "response", {**headers, **trailers}, bytes(relay.kept),
                         self._echo_state(inv, headers), body_bytes=relay.bytes)
        if "lambda-runtime-function-error-type" in trailers:
            self.record.count("stream_errors")
        if inv is None or inv.relay is not relay:
            return None
        if inv.state == "timed_out":
            self._finish(inv, "late_answer")
            self.record.count("late_answers")
            return Rejection(410, "InvokeTimeout", "Invoke timeout")
        self.record.count("responses")
        self._remember_answer(inv, "stream", b"")
        self._finish(inv, "stream")
        if truncated:
            return Rejection(400, "TruncatedHTTPRequest", "the streamed response was cut short")
        return None

    def _check_answer(self, inv: Invocation | None, request_id: str, echo: str | None,
                      kind: str, body: bytes) -> Invocation | Rejection:
        """The invocation an answer may go to, or the Runtime API's refusal."""
        if inv is None:
            self._count_repeat(request_id, kind, body)
            self.record.count("invalid_request_ids")
            return Rejection(400, "InvalidRequestID", "Invalid request ID")
        if inv.state == "timed_out":
            self._finish(inv, "late_answer")
            self.record.count("late_answers")
            return Rejection(410, "InvokeTimeout", "Invoke timeout")
        if echo == "mismatch":
            # RIE's Managed Instances server takes a wrong echo for a stale answer from an
            # earlier, timed-out attempt: 410, and the invocation stays open.
            self.record.count("invocation_id_mismatches")
            return Rejection(410, "InvokeTimeout", "Invoke timeout")
        if echo == "missing":
            self.record.count("invocation_id_missing")  # RIE accepts it; we only count it
        return inv

    def _take_response(self, inv: Invocation, headers: dict[str, str], body: bytes) -> Rejection | None:
        if len(body) > MAX_RESPONSE_BYTES:
            self.record.count("oversized_responses")
            self._finish(inv, "oversized", function_error(
                "Function.ResponseSizeTooLarge",
                f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."))
            return Rejection(413, "RequestEntityTooLarge",
                             f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).")
        # RIE's default when the runtime names no content type.
        content_type = headers.get("content-type") or "application/octet-stream"
        answer_headers = (
            ("Content-Type", content_type),
            ("X-Amz-Executed-Version", "$LATEST"),
            ("X-Amzn-RequestId", inv.request_id),
        )
        self.record.count("responses")
        self._remember_answer(inv, "response", body)
        self._finish(inv, "response", CallerAnswer(200, answer_headers, body))
        return None

    def _take_error(self, inv: Invocation, headers: dict[str, str], body: bytes) -> Rejection | None:
        if len(body) > MAX_ERROR_BYTES:
            # RIE rejects the body before the invocation sees it: the invocation stays open.
            self.record.count("oversized_errors")
            return Rejection(413, "RequestEntityTooLarge",
                             f"Exceeded maximum allowed payload size ({MAX_ERROR_BYTES} bytes).")
        error_type = headers.get("lambda-runtime-function-error-type", "")
        if error_type:
            self.record.count("errors_with_type_header")
        if "lambda-runtime-function-xray-error-cause" in headers:
            self.record.count("errors_with_xray_cause")
        self.record.count("errors")
        self._remember_answer(inv, "error", body)
        self._finish(inv, "error", _unhandled(body, error_type or "Unhandled"))
        return None

    def _count_repeat(self, request_id: str, kind: str, body: bytes) -> None:
        accepted = self._answered.get(request_id)
        if accepted is None:
            return
        self.record.count("repeated_answers")
        if accepted != (kind, zlib.crc32(body)):
            # A second, different answer: the runtime broke "one answer per invocation".
            self.record.count("repeated_answers_different")
            self.record.event("repeat_different", request_id, endpoint=kind)

    def _remember_answer(self, inv: Invocation, kind: str, body: bytes) -> None:
        self._answered[inv.request_id] = (kind, zlib.crc32(body))
        if len(self._answered) > ANSWERED_MEMORY:
            self._answered.popitem(last=False)

    def _finish(self, inv: Invocation, how: str, answer: CallerAnswer | None = None) -> None:
        del self._in_flight[inv.request_id]
        self._stop_timer(inv)
        self.record.shift(in_flight=-1)
        self.record.count("answered")
        self.record.event("answer", inv.request_id, how=how)
        if inv.state == "dispatched" and answer is not None:
            inv.outcome.set(answer)
        inv.state = "answered"

    @staticmethod
    def _echo_state(inv: Invocation | None, headers: dict[str, str]) -> str | None:
        if inv is None:
            return None
        echoed = headers.get("lambda-runtime-invocation-id", "")
        if not echoed:
            return "missing"
        return "ok" if echoed == inv.invocation_id else "mismatch"

    def _log_answer(self, request_id: str, kind: str, headers: dict[str, str], body: bytes,
                    echo: str | None, body_bytes: int | None = None) -> None:
        self.record.answers.append({
            "t": time.monotonic(),
            "endpoint": kind,
            "request_id": request_id,
            "headers": dict(headers),
            "body": body[:65536].decode("utf-8", "replace"),
            "body_bytes": len(body) if body_bytes is None else body_bytes,
            "invocation_id_echo": echo,
            "error_type_header": headers.get("lambda-runtime-function-error-type"),
            "xray_cause_present": "lambda-runtime-function-xray-error-cause" in headers,
        })

    def runtime_exited(self, how: str, *, fail_queue: bool = False) -> int:
        """The runtime process died (``how``: "signal: segmentation fault", "exit status 1"):
        as the platform does, every invocation it held is answered with Runtime.ExitError, and
        with ``fail_queue`` (it died in init) the waiting ones too. Returns how many."""
        self.record.count("runtime_exits")
        self.record.event("runtime_exit", how=how)
        # A stream already begun ends as truncated when its connection closes (end_stream).
        held = [inv for inv in self._in_flight.values() if inv.relay is None]
        for inv in held:
            message = f"RequestId: {inv.request_id} Error: Runtime exited with error: {how}"
            self._finish(inv, "runtime_exit", function_error(WORKER_EXIT_ERROR, message))
        while fail_queue and self._queue:
            inv = self._queue.popleft()
            self.record.shift(queued=-1)
            inv.state = "rejected"
            inv.outcome.set(function_error(WORKER_EXIT_ERROR, f"RequestId: {inv.request_id} "
                                           f"Error: Runtime exited with error: {how}"))
            held.append(inv)
        return len(held)

    def init_error(self, headers: dict[str, str], body: bytes) -> Rejection | None:
        """POST /runtime/init/error: recorded once; every waiting and later caller fails."""
        if self.record.init_error is not None:
            return Rejection(403, "InvalidStateTransition", "State transition from Failed to Failed is not allowed")
        error_type = headers.get("lambda-runtime-function-error-type", "") or "Runtime.Unknown"
        text = body.decode("utf-8", "replace")
        self.record.init_error = {"type": error_type, "body": text, "message": _error_message(body)}
        self.record.event("init_error", error_type=error_type)
        self._log_answer("", "init_error", headers, body, None)
        caller_body = body if _is_json_object(body) else json.dumps(
            {"errorType": error_type, "errorMessage": text}).encode()
        self._init_error_answer = _unhandled(caller_body, error_type)
        self._fail_queue(self._init_error_answer)
        for listener in list(self.init_error_listeners):
            listener(self.record.init_error)
        return None

    def _fail_queue(self, answer: CallerAnswer) -> None:
        while self._queue:
            inv = self._queue.popleft()
            self.record.shift(queued=-1)
            inv.state = "rejected"
            self.record.count("rejected_init_failed")
            inv.outcome.set(answer)

    # ---- faults, markers -------------------------------------------------------------

    def add_fault(self, endpoint: str, fault: Fault) -> None:
        self._faults.setdefault(endpoint, deque()).append(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def take_fault(self, endpoint: str) -> Fault | None:
        """The fault to apply to this call of ``endpoint``, if any (the first that fires)."""
        pending = self._faults.get(endpoint)
        if not pending:
            return None
        for fault in pending:
            if fault.rate is not None and self._fault_dice.random() >= fault.rate:
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    pending.remove(fault)
            self.record.count("faults_applied")
            self.record.count(f"faults_{endpoint}_{fault.action}{'_accepted' if fault.accepted else ''}")
            self.record.event("fault", endpoint=endpoint, action=fault.action, status=fault.status,
                              accepted=fault.accepted)
            return fault
        return None

    def seed_faults(self, seed: int) -> None:
        """Make the rate-based faults repeat the same pattern."""
        self._fault_dice.seed(seed)

    def pending_faults(self) -> dict[str, list[dict[str, Any]]]:
        return {name: [vars(f).copy() for f in faults] for name, faults in self._faults.items() if faults}

    def mark(self, name: str) -> dict[str, Any]:
        return self.record.event("marker", name=name)

    def stats(self) -> dict[str, Any]:
        stats = self.record.snapshot()
        stats["settings"] = {
            "concurrency": self.settings.concurrency,
            "timeout": self.settings.timeout,
            "queue": self.settings.queue_size,
            "strict": self.settings.strict,
            "function_name": self.settings.function_name,
        }
        stats["faults_pending"] = self.pending_faults()
        return stats


def _stream_error_trailers(error_type: str, message: str) -> dict[str, str]:
    document = json.dumps({"errorType": error_type, "errorMessage": message, "stackTrace": []})
    return {"lambda-runtime-function-error-type": error_type,
            "lambda-runtime-function-error-body": base64.b64encode(document.encode()).decode()}


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:
        return False


def _error_message(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
    if isinstance(document, dict):
        return str(document.get("errorMessage", ""))
    return str(document)
