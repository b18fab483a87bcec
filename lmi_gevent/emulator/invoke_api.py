"""The Invoke API callers and tests use (``POST /2015-03-31/functions/.../invocations``),
buffered or streamed, and the ``/_lmi/`` control API routed through the same port."""

from __future__ import annotations

import json

from . import wire
from ._sandbox import (
    MAX_EVENT_BYTES,
    CallerAnswer,
    Invocation,
    Sandbox,
    decode_client_context,
    decode_cognito_identity,
    new_trace_id,
)
from .connection import JSON_TYPE, Connection, HangupWatch
from .control_api import CONTROL_PREFIX, ControlApi
from .runtime_api import apply_fault

INVOKE_PREFIX = "/2015-03-31/functions/"
_INVOCATION_TYPES = ("requestresponse", "event", "dryrun")


class InvokeApi:
    """RIE-compatible ``POST /2015-03-31/functions/{name}/invocations`` plus ``/_lmi/``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.record = sandbox.record
        self.control = ControlApi(sandbox)

    def route(self, request: wire.Request, conn: Connection) -> bool:
        path = request.path
        if path.startswith(CONTROL_PREFIX):
            return self.control.route(request, conn)
        if path.startswith(INVOKE_PREFIX) and path.endswith("/invocations") and request.method == "POST":
            return self._invoke(request, conn)
        self.record.status("other", 404)
        conn.send_json(404, {"errorType": "ResourceNotFoundException",
                             "errorMessage": f"{request.method} {path} is not an Invoke API call"})
        return True

    def _invoke(self, request: wire.Request, conn: Connection) -> bool:
        fault = self.sandbox.take_fault("invoke")
        if fault is not None:
            if fault.status is None:
                return apply_fault(fault, "invoke", conn, self.record.status)
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

    def _build(self, request: wire.Request) -> Invocation | CallerAnswer:
        headers = request.headers
        kind = headers.get("x-amz-invocation-type", "RequestResponse")
        if kind.lower() not in _INVOCATION_TYPES:
            return _error_answer(400, "InvalidParameterValueException",
                                 f"X-Amz-Invocation-Type {kind[:64]!r} is not one of RequestResponse, "
                                 "Event, DryRun")
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


TRAILER_NAMES = "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"


def send_stream(conn: Connection, answer: CallerAnswer) -> bool:
    """Relay a streamed response to the caller as chunks arrive, the runtime's error trailers
    (if any) as real trailers. A caller that hangs up stops the relay, not the runtime."""
    relay = answer.stream
    assert relay is not None
    try:
        conn.sock.sendall(wire.render_chunked_head(answer.status, answer.headers, TRAILER_NAMES))
        for chunk in relay:
            conn.sock.sendall(wire.render_chunk(chunk))
        conn.sock.sendall(wire.render_last_chunk(_trailer_fields(relay.trailers)))
    except OSError:
        relay.end({})
        return False
    return True


def _trailer_fields(trailers: dict[str, str]) -> list[tuple[str, str]]:
    names = {"lambda-runtime-function-error-type": "Lambda-Runtime-Function-Error-Type",
             "lambda-runtime-function-error-body": "Lambda-Runtime-Function-Error-Body"}
    return [(names[key], value) for key, value in trailers.items() if key in names]


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
    return CallerAnswer(status, (JSON_TYPE, ("X-Amzn-ErrorType", error_type)), body)
