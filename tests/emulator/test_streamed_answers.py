"""The emulator's side of response streaming: streamed POST /response on the Runtime API,
relayed to the Invoke API caller as it arrives (as the RIE does), with the error trailers.

The runtime here is a raw socket written by hand, so each chunk's moment is the test's choice:
the caller must have chunk k before the runtime writes chunk k+1.
"""

from __future__ import annotations

import json
import socket
from concurrent.futures import Future

from lmi_gevent.emulator.api import ChunkedReply

from .conftest import RUNTIME, RuntimeConnection


class StreamPoster:
    """A streamed answer written by hand on its own connection."""

    def __init__(self, runtime_api: str, request_id: str, invocation_id: str,
                 mode: str = "streaming", content_type: str = "text/plain") -> None:
        host, _, port = runtime_api.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        head = (f"POST {RUNTIME}/invocation/{request_id}/response HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: {content_type}\r\nLambda-Runtime-Function-Response-Mode: {mode}\r\n"
                f"Lambda-Runtime-Invocation-Id: {invocation_id}\r\nTransfer-Encoding: chunked\r\n"
                "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n")
        self.sock.sendall(head.encode())

    def chunk(self, data: bytes) -> None:
        self.sock.sendall(b"%x\r\n%b\r\n" % (len(data), data))

    def end(self, trailers: dict[str, str] | None = None) -> ChunkedReply:
        fields = "".join(f"{name}: {value}\r\n" for name, value in (trailers or {}).items())
        self.sock.sendall(f"0\r\n{fields}\r\n".encode())
        return ChunkedReply(self.sock, 10)


def _dispatch(emu, background) -> tuple[Future, object]:
    conn = RuntimeConnection(emu.runtime_api)
    conn.start_next()
    emu.wait_for(lambda s: s["open_polls"] == 1)
    caller = background(emu.invoke_streaming, {"n": 1})
    return caller, conn.finish_next()


def test_chunks_reach_the_caller_one_by_one_then_the_runtime_gets_202(emu, background):
    caller, inv = _dispatch(emu, background)
    poster = StreamPoster(emu.runtime_api, inv.request_id, inv.invocation_id)
    poster.chunk(b"first")
    reply = caller.result(timeout=10)
    assert reply.status == 200 and reply.headers["content-type"] == "text/plain"
    assert reply.headers["x-amzn-requestid"] == inv.request_id
    chunks = reply.chunks()
    assert next(chunks) == b"first"  # delivered while the runtime has not written more
    poster.chunk(b"second")
    assert next(chunks) == b"second"
    answer = poster.end()
    assert answer.status == 202
    assert list(chunks) == [] and reply.complete and reply.trailers == {}
    stats = emu.stats()
    assert (stats["streamed_responses"], stats["responses"], stats["in_flight"]) == (1, 1, 0)
    logged = emu.answers(last=1)[0]
    assert logged["body"] == "firstsecond" and logged["body_bytes"] == 11


def test_error_trailers_are_passed_to_the_caller(emu, background):
    caller, inv = _dispatch(emu, background)
    poster = StreamPoster(emu.runtime_api, inv.request_id, inv.invocation_id)
    poster.chunk(b"partial")
    trailers = {"Lambda-Runtime-Function-Error-Type": "ValueError",
                "Lambda-Runtime-Function-Error-Body": "eyJlcnJvclR5cGUiOiAiVmFsdWVFcnJvciJ9"}
    assert poster.end(trailers).status == 202
    reply = caller.result(timeout=10)
    assert reply.body() == b"partial"
    assert reply.trailers == {k.lower(): v for k, v in trailers.items()}
    assert emu.stats()["stream_errors"] == 1


def test_a_stream_cut_short_is_truncated_for_the_caller_and_the_invocation_ends(emu, background):
    caller, inv = _dispatch(emu, background)
    poster = StreamPoster(emu.runtime_api, inv.request_id, inv.invocation_id)
    poster.chunk(b"half")
    reply = caller.result(timeout=10)
    chunks = reply.chunks()
    assert next(chunks) == b"half"
    poster.sock.close()  # the runtime dies mid-stream
    assert list(chunks) == []
    assert reply.trailers["lambda-runtime-function-error-type"] == "Runtime.TruncatedResponse"
    emu.wait_for(lambda s: s["in_flight"] == 0 and s["answered"] == 1)


def test_a_bad_response_mode_is_refused(emu, background):
    caller, inv = _dispatch(emu, background)
    poster = StreamPoster(emu.runtime_api, inv.request_id, inv.invocation_id, mode="bidirectional")
    reply = ChunkedReply(poster.sock, 10)
    assert reply.status == 400
    assert json.loads(reply.body())["errorType"] == "InvalidFunctionResponseMode"
    assert emu.stats()["in_flight"] == 1  # still waiting for a valid answer
    conn = RuntimeConnection(emu.runtime_api)
    assert conn.answer(inv, body=b'{"fine": 1}')[0] == 202
    assert caller.result(timeout=10).body() == b'{"fine": 1}'


def test_a_stream_for_an_unknown_request_id_is_read_and_refused(emu):
    poster = StreamPoster(emu.runtime_api, "no-such-id", "x")
    poster.chunk(b"ignored")
    answer = poster.end()
    assert answer.status == 400 and json.loads(answer.body())["errorType"] == "InvalidRequestID"
