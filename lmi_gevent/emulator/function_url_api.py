"""``local --function-url``: any HTTP request becomes a Function URL event, and the function's
answer a real HTTP response (see :mod:`.function_url` for the event and answer shapes)."""

from __future__ import annotations

import json
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any

from . import function_url, wire
from ._sandbox import MAX_EVENT_BYTES, CallerAnswer, Invocation, Sandbox, new_trace_id
from .connection import JSON_TYPE, Connection, HangupWatch
from .function_url_http import Reader, Refused


class FunctionUrlApi:
    """Any HTTP request -> a Function URL event -> the function's answer as HTTP (see
    ``function_url``). Requests are parsed strictly (:mod:`.function_url_http`); streamed
    answers are relayed chunk by chunk as they arrive."""

    def __init__(self, sandbox: Sandbox, port: Callable[[], int]) -> None:
        self.sandbox = sandbox
        self.record = sandbox.record
        self._port = port

    def serve(self, sock: socket.socket, address: Any) -> None:
        """One client connection, in its own greenlet (a slow client stalls no other)."""
        conn = Connection(sock)
        reader = Reader(conn)
        try:
            while True:
                request = reader.next_request()
                if request is None or not self.route(request, reader):
                    return
        except Refused as refused:
            self.record.count("bad_requests")
            self.record.status("other", refused.status)
            reader.refuse(refused)
        except OSError:
            pass  # the client went away mid-request; nothing left to answer
        except Exception:  # a bug here must not kill the server: a 500 and the traceback
            traceback.print_exc(file=sys.stderr)
            reader.refuse(Refused(500, "emulator bug, see stderr"))
        finally:
            conn.close()

    def route(self, request: wire.Request, reader: Reader) -> bool:
        """Answer one request; False when the connection must not be reused."""
        self.record.count("function_url_requests")
        event = function_url.build_event(request, _peer_ip(reader.conn), self._port())
        body = json.dumps(event).encode()
        if len(body) > MAX_EVENT_BYTES:  # as the platform measures: the event, base64 and all
            raise Refused(413, f"the request's event is {len(body)} bytes; a Function URL "
                               f"takes at most {MAX_EVENT_BYTES}")
        inv = Invocation(body=body, content_type="application/json", trace_id=new_trace_id())
        answer = self.sandbox.submit(inv)
        if answer is None:
            watch = HangupWatch(reader.conn, lambda: self.sandbox.abandon(inv))
            try:
                answer = inv.outcome.get()
            finally:
                watch.close()
            if answer is None:
                return False  # the client hung up while the invocation waited
        if answer.status != 200:  # refused before it ran (queue full, init error)
            return reader.send(answer.status, (JSON_TYPE,), answer.body, request.method)
        try:
            if answer.stream is not None:
                return self._relay(reader, answer)
            function_error = any(name == "X-Amz-Function-Error" for name, _ in answer.headers)
            content_type = dict(answer.headers).get("Content-Type", "")
            status, headers, data = function_url.buffered_response(content_type, answer.body, function_error)
        except function_url.BadAnswer as exc:
            message = json.dumps({"Message": f"Bad function answer: {exc}"}).encode()
            return reader.send(502, (JSON_TYPE,), message, request.method)
        return reader.send(status, headers, data, request.method)

    def _relay(self, reader: Reader, answer: CallerAnswer) -> bool:
        relay = answer.stream
        assert relay is not None
        status, headers, chunks = function_url.split_stream(relay.content_type, iter(relay))
        try:
            reader.send_head(status, headers)
            reader.send_chunks(chunks)
            if "lambda-runtime-function-error-type" in relay.trailers:
                # As Lambda does: a stream that failed is cut, never ended as if complete.
                reader.conn.reset()
                return False
            return reader.end_stream()
        except OSError:
            relay.end({})
            return False


def _peer_ip(conn: Connection) -> str:
    try:
        return str(conn.sock.getpeername()[0])
    except OSError:
        return "127.0.0.1"
