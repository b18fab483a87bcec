"""The emulator's two servers on gevent: the Runtime API the runtime polls, and the Invoke API
(plus the ``/_lmi/`` control API) that callers and tests use.

Why StreamServer and not pywsgi: a waiting ``GET /next`` must stop counting as an open poll
the moment its runtime hangs up, which needs the raw socket; and the small parser in
``_http`` costs a fraction of a WSGI environ per request, so the stand-in is never the
bottleneck of a benchmark. Imported only by the emulator's entry points, never by
``import lmi_gevent``.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qs

try:  # the kernel's view of a connection, for telling a crossed FIN from a read answer
    import fcntl
    import termios
except ImportError:  # pragma: no cover - not on Windows
    fcntl = termios = None  # type: ignore[assignment]

from gevent import get_hub, sleep
from gevent.server import StreamServer

from . import _http, function_url
from ._sandbox import (
    MAX_EVENT_BYTES,
    CallerAnswer,
    Fault,
    Invocation,
    Poll,
    Rejection,
    Sandbox,
    Settings,
    decode_client_context,
    decode_cognito_identity,
    new_trace_id,
)

__all__ = ["EmulatorServer", "Sandbox", "Settings"]

RUNTIME_PREFIX = "/2018-06-01/runtime/"
INVOKE_PREFIX = "/2015-03-31/functions/"
CONTROL_PREFIX = "/_lmi/"
FAULT_ENDPOINTS = ("next", "response", "error", "init_error", "invoke")
POST_ENDPOINTS = ("response", "error", "init_error")
# Thousands of slots may long-poll at once; the default listen backlog would drop them.
BACKLOG = 4096
_JSON = ("Content-Type", "application/json")
# How long to wait for a peer's RST after its FIN where the kernel cannot tell us whether
# it took our bytes (loopback round trips take microseconds).
UNREAD_CHECK_SECONDS = 0.05
# Where it can (Linux): the longest wait for the peer's kernel to acknowledge or refuse what we
# wrote last. A busy machine may run the loopback's softirq late, so this is generous; the
# wait ends as soon as the kernel knows, which on an idle machine is at once.
UNREAD_VERDICT_SECONDS = 2.0
_TCP_CLOSE = 7  # tcpi_state once a RST has been received (include/net/tcp_states.h)
# The most frequent answer of all, rendered once.
_ACCEPTED = _http.render_response(202, (_JSON,), b'{"status":"OK"}')


class Connection:
    """One accepted socket: a buffered reader and a few ways to answer or drop it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb", 65536)
        # gevent keeps the real, non-blocking socket here; peeking at it from a hub callback
        # must never block or switch.
        self.raw: Any = getattr(sock, "_sock", sock)
        # Set while an answer we wrote may still sit unread at the peer; called if the peer
        # then resets the connection (see serve_connection).
        self.on_reset_unread: Callable[[], None] | None = None

    def send(self, status: int, headers: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
             body: bytes = b"", *, close: bool = False) -> None:
        self.sock.sendall(_http.render_response(status, headers, body, close=close))

    def send_json(self, status: int, document: Any, *, close: bool = False) -> None:
        self.send(status, (_JSON,), json.dumps(document).encode(), close=close)

    def peer_gone(self) -> bool:
        """True when the peer has closed or reset the connection (seen without blocking)."""
        try:
            return self.raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def reset(self) -> None:
        """Drop the connection with a TCP RST, the way a crashed platform would."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


class HangupWatch:
    """Calls ``on_hangup`` (in the hub; it must not block) if the peer closes the connection
    while the handler waits for something else, e.g. an idle long-poll."""

    def __init__(self, conn: Connection, on_hangup: Callable[[], None]) -> None:
        self._conn = conn
        self._on_hangup = on_hangup
        self._io = get_hub().loop.io(conn.sock.fileno(), 1)
        self._io.start(self._readable)

    def _readable(self) -> None:
        try:
            gone = self._conn.peer_gone()
        except Exception:  # never let a hub callback raise
            gone = True
        # Either the peer left or it sent more bytes early; in both cases stop watching so
        # a pipelined request cannot make this callback spin.
        self._io.stop()
        if gone:
            self._on_hangup()

    def close(self) -> None:
        self._io.close()


Router = Callable[[_http.Request, Connection], bool]


def serve_connection(sock: socket.socket, address: Any, *, router: Router,
                     on_bad_request: Callable[[], None] | None = None) -> None:
    """Read requests off one keep-alive connection until it closes; ``router`` answers each
    and returns False when the connection must not be reused."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    conn = Connection(sock)
    try:
        while True:
            request = _http.read_request_head(conn.rfile)
            if request is None:
                _check_unread_after_eof(conn)
                return
            conn.on_reset_unread = None  # the peer is talking, so it read our last answer
            if request.streamed_answer and "chunked" in request.headers.get("transfer-encoding", ""):
                request.body_stream = _http.ChunkedBody(conn.rfile)
            else:
                _http.read_body(request, conn.rfile, conn.sock)
            if not router(request, conn) or not request.keep_alive:
                return
            if request.body_stream is not None and not request.body_stream.complete:
                return  # a route left a stream unread: the connection is out of step
    except _http.BadRequest as exc:
        if on_bad_request is not None:
            on_bad_request()
        _try_send(conn, 400, {"errorType": "BadRequest", "errorMessage": str(exc)})
    except (ConnectionResetError, BrokenPipeError):
        # Linux answers close() with RST instead of FIN only when unread data was left in
        # the receive buffer: the peer never read what we wrote last. (A RST that follows
        # the peer's FIN is reported as EPIPE, one before it as ECONNRESET.)
        if conn.on_reset_unread is not None:
            conn.on_reset_unread()
    except OSError:
        pass  # the peer went away mid-request; nothing left to answer
    finally:
        conn.close()


def _check_unread_after_eof(conn: Connection) -> None:
    """The peer closed right after we wrote to it. Did it read what we sent?

    A socket closed with bytes still unread sends RST instead of FIN, so a FIN alone means the
    peer read our answer, unless its FIN crossed our write: then the bytes reach a closed
    socket, which refuses them with RST. Once the FIN is in, recv() keeps returning EOF and
    never reports that RST, so on Linux the verdict comes from the kernel's own books: the
    connection dropped to CLOSE (the RST came: never read), or every byte we wrote was
    acknowledged (it reached the open socket before the FIN: read)."""
    if conn.on_reset_unread is None:
        return
    verdict = _unread_verdict(conn)
    if verdict is None:  # no TCP_INFO / SIOCOUTQ here: give the RST a moment to show
        sleep(UNREAD_CHECK_SECONDS)
        try:
            conn.raw.recv(1, socket.MSG_DONTWAIT)
        except (ConnectionResetError, BrokenPipeError):
            conn.on_reset_unread()
        except OSError:
            pass
        return
    deadline = time.monotonic() + UNREAD_VERDICT_SECONDS
    pause = 0.001
    while verdict == "pending" and time.monotonic() < deadline:
        sleep(pause)
        pause = min(pause * 2, 0.05)
        verdict = _unread_verdict(conn)
    # Still unacknowledged at the deadline: the peer's kernel never took the bytes either.
    if verdict != "read":
        conn.on_reset_unread()


def _unread_verdict(conn: Connection) -> str | None:
    """"unread" (the peer reset the connection), "read" (all our bytes were acknowledged),
    "pending" (neither yet), or None where the kernel does not say."""
    tcp_info = getattr(socket, "TCP_INFO", None)
    outq = getattr(termios, "TIOCOUTQ", None) if termios is not None else None
    if tcp_info is None or outq is None:
        return None
    try:
        state = conn.raw.getsockopt(socket.IPPROTO_TCP, tcp_info, 8)[0]
        if state == _TCP_CLOSE:
            return "unread"
        unacknowledged = struct.unpack("i", fcntl.ioctl(conn.raw.fileno(), outq, b"\0\0\0\0"))[0]
    except OSError:
        return None
    return "read" if unacknowledged == 0 else "pending"


def _try_send(conn: Connection, status: int, document: dict[str, str]) -> None:
    try:
        conn.send_json(status, document, close=True)
    except OSError:
        pass


def _guarded(router: Router, record_status: Callable[[str, int], None]) -> Router:
    """Turn a bug in a route into a 500 and a traceback on stderr instead of a dead link."""

    def route(request: _http.Request, conn: Connection) -> bool:
        try:
            return router(request, conn)
        except (OSError, _http.BadRequest):
            raise
        except Exception:
            traceback.print_exc(file=sys.stderr)
            record_status("other", 500)
            conn.send_json(500, {"errorType": "InternalError", "errorMessage": "emulator bug, see stderr"},
                           close=True)
            return False

    return route


class RuntimeApi:
    """``/2018-06-01/runtime/...``: what a Lambda runtime talks to."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.record = sandbox.record

    def route(self, request: _http.Request, conn: Connection) -> bool:
        path = request.path
        if not path.startswith(RUNTIME_PREFIX):
            return self._not_found(request, conn)
        parts = path[len(RUNTIME_PREFIX):].split("/")
        if parts == ["invocation", "next"] and request.method == "GET":
            return self._next(request, conn)
        if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error") \
                and request.method == "POST":
            return self._answer(parts[1], parts[2], request, conn)
        if parts == ["init", "error"] and request.method == "POST":
            return self._init_error(request, conn)
        return self._not_found(request, conn)

    def _not_found(self, request: _http.Request, conn: Connection) -> bool:
        self.record.status("other", 404)
        conn.send_json(404, {"errorType": "NotFound",
                             "errorMessage": f"{request.method} {request.path} is not a Runtime API call"})
        return True

    def _fault(self, endpoint: str, conn: Connection) -> tuple[bool | None, Fault | None]:
        """Take this call's fault. Returns the keep-alive verdict when the fault answered the
        call instead of the endpoint, and the fault still to apply after an accepted post."""
        fault = self.sandbox.take_fault(endpoint)
        if fault is None:
            return None, None
        if fault.accepted:
            return None, fault
        return _apply_fault(fault, endpoint, conn, self.record.status), None

    def _next(self, request: _http.Request, conn: Connection) -> bool:
        faulted, _ = self._fault("next", conn)
        if faulted is not None:
            return faulted
        got = self.sandbox.open_poll()
        if isinstance(got, Poll):
            inv = self._wait(got, conn)
            if inv is None:
                return False  # the runtime hung up while waiting
        else:
            inv = got
        return self._deliver(inv, conn)

    def _wait(self, poll: Poll, conn: Connection) -> Invocation | None:
        watch = HangupWatch(conn, lambda: self.sandbox.cancel_poll(poll, "disconnect"))
        try:
            return poll.result.get()
        except BaseException:
            self.sandbox.cancel_poll(poll, "server_stop")
            raise
        finally:
            watch.close()

    def _deliver(self, inv: Invocation, conn: Connection) -> bool:
        # A peer that closed is noticed here rather than after the write "succeeds" into a
        # dead socket's buffer and the invocation silently waits out its timeout.
        if conn.peer_gone():
            self.sandbox.requeue(inv)
            return False
        data = _http.render_response(200, inv.runtime_headers(self.sandbox.settings.function_arn), inv.body)
        try:
            conn.sock.sendall(data)
        except OSError:
            self.sandbox.requeue(inv)
            return False
        self.record.status("next", 200)
        # A runtime that dies before reading this leaves it unread: give it to another poll.
        conn.on_reset_unread = lambda: self.sandbox.requeue(inv)
        return True

    def _answer(self, request_id: str, kind: str, request: _http.Request, conn: Connection) -> bool:
        faulted, after = self._fault(kind, conn)
        if faulted is not None:
            return faulted
        mode = request.headers.get("lambda-runtime-function-response-mode")
        if mode is not None and (mode.lower() != "streaming" or kind != "response"):
            self.record.status(kind, 400)
            conn.send(400, (_JSON,), Rejection(400, "InvalidFunctionResponseMode",
                                               f"unsupported response mode {mode!r}").body(), close=True)
            return False
        if request.body_stream is not None:
            return self._relay_stream(request_id, request, conn, after)
        rejection = self.sandbox.answer(request_id, kind, request.headers, request.body)
        return self._reply(kind, rejection, conn, after)

    def _relay_stream(self, request_id: str, request: _http.Request, conn: Connection,
                      after: Fault | None) -> bool:
        """A streamed response: each chunk goes to the caller as soon as it is read."""
        body = request.body_stream
        assert body is not None
        started = self.sandbox.start_stream(request_id, request.headers)
        if isinstance(started, Rejection):
            for _ in body:  # read to the end so the connection stays usable
                pass
            return self._reply("response", started, conn, after)
        try:
            for chunk in body:
                started.put(chunk)
        except (_http.BadRequest, OSError):
            rejection = self.sandbox.end_stream(request_id, request.headers, started, {}, truncated=True)
            self.record.status("response", 400)
            try:
                conn.send(400, (_JSON,), rejection.body() if rejection else b"{}", close=True)
            except OSError:
                pass
            return False
        rejection = self.sandbox.end_stream(request_id, request.headers, started, body.trailers)
        return self._reply("response", rejection, conn, after)

    def _init_error(self, request: _http.Request, conn: Connection) -> bool:
        faulted, after = self._fault("init_error", conn)
        if faulted is not None:
            return faulted
        rejection = self.sandbox.init_error(request.headers, request.body)
        return self._reply("init_error", rejection, conn, after)

    def _reply(self, endpoint: str, rejection: Rejection | None, conn: Connection,
               after: Fault | None = None) -> bool:
        """Send the verdict on a post; ``after`` (an accepted fault) resets the connection
        instead, so the runtime never learns the verdict, or closes it right after."""
        status = 202 if rejection is None else rejection.status
        self.record.status(endpoint, status)
        if after is not None and after.reset:
            conn.reset()
            return False
        if rejection is None:
            conn.sock.sendall(_ACCEPTED)
        else:
            conn.send(status, (_JSON,), rejection.body())
        return after is None  # a "close" fault: FIN right after the verdict


class InvokeApi:
    """RIE-compatible ``POST /2015-03-31/functions/{name}/invocations`` plus ``/_lmi/``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.record = sandbox.record
        self.control = ControlApi(sandbox)

    def route(self, request: _http.Request, conn: Connection) -> bool:
        path = request.path
        if path.startswith(CONTROL_PREFIX):
            return self.control.route(request, conn)
        if path.startswith(INVOKE_PREFIX) and path.endswith("/invocations") and request.method == "POST":
            return self._invoke(request, conn)
        self.record.status("other", 404)
        conn.send_json(404, {"errorType": "ResourceNotFoundException",
                             "errorMessage": f"{request.method} {path} is not an Invoke API call"})
        return True

    def _invoke(self, request: _http.Request, conn: Connection) -> bool:
        fault = self.sandbox.take_fault("invoke")
        if fault is not None:
            if fault.status is None:
                return _apply_fault(fault, "invoke", conn, self.record.status)
            return self._send(conn, _error_answer(fault.status, "InjectedFault", "fault injected on invoke"))
        inv_or_answer = self._build(request)
        if isinstance(inv_or_answer, CallerAnswer):
            return self._send(conn, inv_or_answer)
        inv = inv_or_answer
        immediate = self.sandbox.submit(inv)
        if immediate is not None:
            return self._send(conn, immediate)
        if request.headers.get("x-amz-invocation-type", "").lower() == "event":
            return self._send(conn, CallerAnswer(202, (("X-Amzn-RequestId", inv.request_id),), b""))
        answer = self._wait(inv, conn)
        if answer is None:
            return False  # the caller hung up
        return self._send(conn, answer)

    def _build(self, request: _http.Request) -> Invocation | CallerAnswer:
        headers = request.headers
        if len(request.body) > MAX_EVENT_BYTES:
            return _error_answer(413, "RequestEntityTooLargeException",
                                 f"Request must be smaller than {MAX_EVENT_BYTES} bytes for the InvokeFunction operation")
        try:
            client_context = decode_client_context(headers.get("x-amz-client-context", ""))
            cognito_identity = decode_cognito_identity(headers.get("x-amz-cognito-identity", ""))
        except ValueError as exc:
            return _error_answer(400, "InvalidRequestContentException", str(exc))
        inv = Invocation(
            body=request.body,
            content_type=runtime_content_type(headers.get("content-type")),
            trace_id=headers.get("x-amzn-trace-id") or new_trace_id(),
            client_context=client_context,
            cognito_identity=cognito_identity,
            tenant_id=headers.get("x-amz-tenant-id"),
        )
        # RIE lets the caller choose the request id; two live invocations may not share one.
        chosen_id = headers.get("x-amzn-requestid")
        if chosen_id:
            if self.sandbox.is_live(chosen_id):
                return _error_answer(400, "DuplicatedInvokeId", f"request id {chosen_id} is already in use")
            inv.request_id = chosen_id
        return inv

    def _wait(self, inv: Invocation, conn: Connection) -> CallerAnswer | None:
        watch = HangupWatch(conn, lambda: self.sandbox.abandon(inv))
        try:
            return inv.outcome.get()
        finally:
            watch.close()

    def _send(self, conn: Connection, answer: CallerAnswer) -> bool:
        self.record.status("invoke", answer.status)
        if answer.stream is not None:
            return send_stream(conn, answer)
        conn.send(answer.status, answer.headers, answer.body)
        return True


def _apply_fault(fault: Fault, endpoint: str, conn: Connection,
                 record_status: Callable[[str, int], None]) -> bool:
    """Answer a call with its fault instead of acting on it; the keep-alive verdict."""
    if fault.action == "reset":
        conn.reset()
        return False
    if fault.action == "close":
        conn.close()  # a FIN with nothing sent: the call was read and never answered
        return False
    assert fault.status is not None
    record_status(endpoint, fault.status)
    conn.send_json(fault.status, {"errorType": "InjectedFault",
                                  "errorMessage": f"fault injected on {endpoint}"})
    return True


TRAILER_NAMES = "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"


def send_stream(conn: Connection, answer: CallerAnswer) -> bool:
    """Relay a streamed response to the caller as chunks arrive, the runtime's error trailers
    (if any) as real trailers. A caller that hangs up stops the relay, not the runtime."""
    relay = answer.stream
    assert relay is not None
    try:
        conn.sock.sendall(_http.render_chunked_head(answer.status, answer.headers, TRAILER_NAMES))
        for chunk in relay:
            conn.sock.sendall(_http.render_chunk(chunk))
        conn.sock.sendall(_http.render_last_chunk(_trailer_fields(relay.trailers)))
    except OSError:
        relay.end({})
        return False
    return True


def _trailer_fields(trailers: dict[str, str]) -> list[tuple[str, str]]:
    names = {"lambda-runtime-function-error-type": "Lambda-Runtime-Function-Error-Type",
             "lambda-runtime-function-error-body": "Lambda-Runtime-Function-Error-Body"}
    return [(names[key], value) for key, value in trailers.items() if key in names]


class FunctionUrlApi:
    """Any HTTP request -> a Function URL event -> the function's answer as HTTP (see
    ``function_url``). Streamed answers are relayed chunk by chunk as they arrive."""

    def __init__(self, sandbox: Sandbox, port: Callable[[], int]) -> None:
        self.sandbox = sandbox
        self.record = sandbox.record
        self._port = port

    def route(self, request: _http.Request, conn: Connection) -> bool:
        self.record.count("function_url_requests")
        if len(request.body) > MAX_EVENT_BYTES:
            return self._send(conn, 413, b'{"Message":"Request must be smaller than 6 MB"}')
        event = function_url.build_event(request, _peer_ip(conn), self._port())
        inv = Invocation(body=json.dumps(event).encode(), content_type="application/json",
                         trace_id=new_trace_id())
        answer = self.sandbox.submit(inv)
        if answer is None:
            watch = HangupWatch(conn, lambda: self.sandbox.abandon(inv))
            try:
                answer = inv.outcome.get()
            finally:
                watch.close()
            if answer is None:
                return False  # the client hung up while the invocation waited
        if answer.status != 200:  # refused before it ran (queue full, init error)
            return self._send(conn, answer.status, answer.body)
        try:
            if answer.stream is not None:
                return self._relay(conn, answer)
            function_error = any(name == "X-Amz-Function-Error" for name, _ in answer.headers)
            content_type = dict(answer.headers).get("Content-Type", "")
            status, headers, body = function_url.buffered_response(content_type, answer.body, function_error)
        except function_url.BadAnswer as exc:
            return self._send(conn, 502, json.dumps({"Message": f"Bad function answer: {exc}"}).encode())
        conn.send(status, headers, body)
        return True

    def _relay(self, conn: Connection, answer: CallerAnswer) -> bool:
        relay = answer.stream
        assert relay is not None
        status, headers, chunks = function_url.split_stream(relay.content_type, iter(relay))
        try:
            conn.sock.sendall(_http.render_chunked_head(status, headers))
            for chunk in chunks:
                conn.sock.sendall(_http.render_chunk(chunk))
            if "lambda-runtime-function-error-type" in relay.trailers:
                # As Lambda does: a stream that failed is cut, never ended as if complete.
                conn.reset()
                return False
            conn.sock.sendall(_http.render_last_chunk())
        except OSError:
            relay.end({})
            return False
        return True

    def _send(self, conn: Connection, status: int, body: bytes) -> bool:
        conn.send(status, (_JSON,), body)
        return True


def _peer_ip(conn: Connection) -> str:
    try:
        return str(conn.sock.getpeername()[0])
    except OSError:
        return "127.0.0.1"


# What a caller sends when it names no JSON type but means JSON: curl's `-d` default.
_FORM = "application/x-www-form-urlencoded"


def runtime_content_type(caller_type: str | None) -> str:
    """The Content-Type the runtime sees for a caller's payload.

    Lambda's Invoke API takes the payload as JSON and hands it to the runtime as
    application/json, so the AWS docs' own ``curl -XPOST ... -d '{}'`` (form content type)
    gives the handler a dict. Any other type the caller names explicitly passes through, as
    RIE passes it, so a test can still send raw bytes.
    """
    if not caller_type or caller_type.split(";", 1)[0].strip().lower() == _FORM:
        return "application/json"
    return caller_type


def _error_answer(status: int, error_type: str, message: str) -> CallerAnswer:
    body = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
    return CallerAnswer(status, (_JSON, ("X-Amzn-ErrorType", error_type)), body)


class ControlApi:
    """``/_lmi/...``: what tests and benchmarks read and steer. JSON in, JSON out."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.record = sandbox.record

    def route(self, request: _http.Request, conn: Connection) -> bool:
        name = request.path[len(CONTROL_PREFIX):].strip("/")
        query = {key: values[-1] for key, values in parse_qs(request.query).items()}
        handler = {
            ("GET", "stats"): lambda: self.sandbox.stats(),
            ("GET", "events"): lambda: self._events(query),
            ("GET", "answers"): lambda: list(self.record.answers)[-int(query.get("last", 10)):],
            ("GET", "faults"): lambda: self.sandbox.pending_faults(),
            ("POST", "mark"): lambda: self.sandbox.mark(str(_json_body(request).get("name", ""))),
            ("POST", "faults"): lambda: self._add_fault(_json_body(request)),
            ("DELETE", "faults"): lambda: self.sandbox.clear_faults() or {},
            ("POST", "reset-stats"): lambda: self.record.reset() or {},
        }.get((request.method, name))
        if handler is None:
            return self._answer(conn, 404, {"errorType": "NotFound", "errorMessage": f"no control call {name!r}"})
        try:
            return self._answer(conn, 200, handler())
        except (ValueError, KeyError, TypeError) as exc:
            return self._answer(conn, 400, {"errorType": "BadControlRequest", "errorMessage": str(exc)})

    def _answer(self, conn: Connection, status: int, document: Any) -> bool:
        self.record.status("control", status)
        conn.send_json(status, document)
        return True

    def _events(self, query: dict[str, str]) -> list[dict[str, Any]]:
        since = float(query.get("since", "-inf"))
        kind = query.get("kind")
        return [e for e in self.record.events if e["t"] > since and (kind is None or e["kind"] == kind)]

    def _add_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        endpoint = spec.get("endpoint")
        if endpoint not in FAULT_ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(FAULT_ENDPOINTS)}; got {endpoint!r}")
        actions = [name for name in ("reset", "close") if spec.get(name)]
        status = spec.get("status")
        if status is not None:
            if not (isinstance(status, int) and 100 <= status <= 599):
                raise ValueError(f"status must be an HTTP status (100-599); got {status!r}")
            actions.append("status")
        if len(actions) != 1:
            raise ValueError("a fault needs exactly one of an HTTP status (100-599), reset: true "
                             "or close: true")
        accepted = bool(spec.get("accepted", False))
        if accepted and (endpoint not in POST_ENDPOINTS or actions[0] == "status"):
            raise ValueError(f"accepted: true needs reset or close on one of {', '.join(POST_ENDPOINTS)}")
        rate = spec.get("rate")
        if rate is not None and not (isinstance(rate, (int, float)) and 0 < rate <= 1):
            raise ValueError(f"rate must be a probability in (0, 1]; got {rate!r}")
        count = spec.get("count", 1 if rate is None else None)
        if count is not None and int(count) < 1:
            raise ValueError("count must be at least 1 (or null: no limit)")
        if "seed" in spec:
            self.sandbox.seed_faults(int(spec["seed"]))
        self.sandbox.add_fault(endpoint, Fault(actions[0], status, None if count is None else int(count),
                                               None if rate is None else float(rate), accepted))
        return self.sandbox.pending_faults()


def _json_body(request: _http.Request) -> dict[str, Any]:
    document = json.loads(request.body or b"{}")
    if not isinstance(document, dict):
        raise ValueError("the body must be a JSON object")
    return document


class EmulatorServer:
    """Both servers around one Sandbox. ``start()`` binds and returns at once (gevent).
    ``runtime_host`` binds the Runtime API elsewhere than the Invoke API (``local`` keeps it
    on loopback whatever ``--host`` says).

    >>> server = EmulatorServer(Settings(concurrency=4)); server.start()
    >>> server.runtime_api  # for AWS_LAMBDA_RUNTIME_API
    '127.0.0.1:40123'
    """

    def __init__(self, settings: Settings, *, host: str = "127.0.0.1",
                 runtime_port: int = 0, invoke_port: int = 0, runtime_host: str | None = None,
                 function_url_port: int | None = None) -> None:
        self.settings = settings
        self.sandbox = Sandbox(settings)
        record = self.sandbox.record
        bad = partial(record.count, "bad_requests")
        self._runtime = StreamServer(
            (runtime_host or host, runtime_port),
            partial(serve_connection, router=_guarded(RuntimeApi(self.sandbox).route, record.status),
                    on_bad_request=bad),
            backlog=BACKLOG)
        self._invoke = StreamServer(
            (host, invoke_port),
            partial(serve_connection, router=_guarded(InvokeApi(self.sandbox).route, record.status),
                    on_bad_request=bad),
            backlog=BACKLOG)
        # A Function URL on a port of its own when asked for (``local --function-url``).
        self._function_url: StreamServer | None = None
        if function_url_port is not None:
            api = FunctionUrlApi(self.sandbox, lambda: int(self._function_url.address[1]))  # type: ignore[union-attr]
            self._function_url = StreamServer(
                (host, function_url_port),
                partial(serve_connection, router=_guarded(api.route, record.status), on_bad_request=bad),
                backlog=BACKLOG)

    def start(self) -> None:
        self._runtime.start()
        self._invoke.start()
        if self._function_url is not None:
            self._function_url.start()

    def stop(self, timeout: float = 1.0) -> None:
        if self._function_url is not None:
            self._function_url.stop(timeout)
        self._invoke.stop(timeout)
        self._runtime.stop(timeout)

    @property
    def function_url(self) -> str | None:
        """``http://host:port/`` of the Function URL, when there is one."""
        if self._function_url is None:
            return None
        return "http://" + _host_port(self._function_url.address) + "/"

    @property
    def runtime_api(self) -> str:
        """``host:port`` of the Runtime API, the value for AWS_LAMBDA_RUNTIME_API."""
        return _host_port(self._runtime.address)

    @property
    def invoke_url(self) -> str:
        return "http://" + _host_port(self._invoke.address)

    @property
    def invoke_port(self) -> int:
        return int(self._invoke.address[1])


def _host_port(address: tuple[Any, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
