"""``local --function-url``: any HTTP request becomes a Function URL event, and the function's
answer a real HTTP response (see :mod:`.function_url` for the event and answer shapes)."""

from __future__ import annotations

import json
from collections.abc import Callable

from . import function_url, wire
from ._sandbox import MAX_EVENT_BYTES, CallerAnswer, Invocation, Sandbox, new_trace_id
from .connection import JSON_TYPE, Connection, HangupWatch


class FunctionUrlApi:
    """Any HTTP request -> a Function URL event -> the function's answer as HTTP (see
    ``function_url``). Streamed answers are relayed chunk by chunk as they arrive."""

    def __init__(self, sandbox: Sandbox, port: Callable[[], int]) -> None:
        self.sandbox = sandbox
        self.record = sandbox.record
        self._port = port

    def route(self, request: wire.Request, conn: Connection) -> bool:
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
            conn.sock.sendall(wire.render_chunked_head(status, headers))
            for chunk in chunks:
                conn.sock.sendall(wire.render_chunk(chunk))
            if "lambda-runtime-function-error-type" in relay.trailers:
                # As Lambda does: a stream that failed is cut, never ended as if complete.
                conn.reset()
                return False
            conn.sock.sendall(wire.render_last_chunk())
        except OSError:
            relay.end({})
            return False
        return True

    def _send(self, conn: Connection, status: int, body: bytes) -> bool:
        conn.send(status, (JSON_TYPE,), body)
        return True


def _peer_ip(conn: Connection) -> str:
    try:
        return str(conn.sock.getpeername()[0])
    except OSError:
        return "127.0.0.1"
