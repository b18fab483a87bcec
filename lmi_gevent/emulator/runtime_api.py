"""The Runtime API the runtime polls: ``/next``, answers, init errors, and the faults tests
inject into them."""

from __future__ import annotations

from collections.abc import Callable

from . import wire
from ._sandbox import Fault, Invocation, Poll, Rejection, Sandbox
from .connection import JSON_TYPE, Connection, HangupWatch

RUNTIME_PREFIX = "/2018-06-01/runtime/"
# The most frequent answer of all, rendered once.
_ACCEPTED = wire.render_response(202, (JSON_TYPE,), b'{"status":"OK"}')


class RuntimeApi:
    """``/2018-06-01/runtime/...``: what a Lambda runtime talks to."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.record = sandbox.record

    def route(self, request: wire.Request, conn: Connection) -> bool:
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

    def _not_found(self, request: wire.Request, conn: Connection) -> bool:
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
        return apply_fault(fault, endpoint, conn, self.record.status), None

    def _next(self, request: wire.Request, conn: Connection) -> bool:
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
        data = wire.render_response(200, inv.runtime_headers(self.sandbox.settings.function_arn), inv.body)
        try:
            conn.sock.sendall(data)
        except OSError:
            self.sandbox.requeue(inv)
            return False
        self.record.status("next", 200)
        # A runtime that dies before reading this leaves it unread: give it to another poll.
        conn.on_reset_unread = lambda: self.sandbox.requeue(inv)
        return True

    def _answer(self, request_id: str, kind: str, request: wire.Request, conn: Connection) -> bool:
        faulted, after = self._fault(kind, conn)
        if faulted is not None:
            return faulted
        mode = request.headers.get("lambda-runtime-function-response-mode")
        if mode is not None and (mode.lower() != "streaming" or kind != "response"):
            self.record.status(kind, 400)
            conn.send(400, (JSON_TYPE,), Rejection(400, "InvalidFunctionResponseMode",
                                               f"unsupported response mode {mode!r}").body(), close=True)
            return False
        if request.body_stream is not None:
            return self._relay_stream(request_id, request, conn, after)
        rejection = self.sandbox.answer(request_id, kind, request.headers, request.body)
        return self._reply(kind, rejection, conn, after)

    def _relay_stream(self, request_id: str, request: wire.Request, conn: Connection,
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
        except (wire.BadRequest, OSError):
            rejection = self.sandbox.end_stream(request_id, request.headers, started, {}, truncated=True)
            self.record.status("response", 400)
            try:
                conn.send(400, (JSON_TYPE,), rejection.body() if rejection else b"{}", close=True)
            except OSError:
                pass
            return False
        rejection = self.sandbox.end_stream(request_id, request.headers, started, body.trailers)
        return self._reply("response", rejection, conn, after)

    def _init_error(self, request: wire.Request, conn: Connection) -> bool:
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
            conn.send(status, (JSON_TYPE,), rejection.body())
        return after is None  # a "close" fault: FIN right after the verdict


def apply_fault(fault: Fault, endpoint: str, conn: Connection,
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
