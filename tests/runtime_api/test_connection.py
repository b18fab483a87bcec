"""The minimal HTTP/1.1 connection against a scripted raw-socket server on loopback."""

from __future__ import annotations

import select
import socket
import threading
from typing import Iterator

import pytest

from lmi_gevent.runtime_api.connection import Connection, ConnectionLost, ProtocolError
from lmi_gevent.runtime_api.client import RuntimeApiClient, RuntimeApiError


class ScriptedServer:
    """Answers the n-th request with ``replies[n]``; ``None`` closes the connection instead."""

    def __init__(self, replies: list[bytes | None], close_after_each: bool = False) -> None:
        self.replies = list(replies)
        self.close_after_each = close_after_each
        self.requests: list[bytes] = []
        self.accepted = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.replies:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        buffer = b""
        while self.replies:
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if b"transfer-encoding: chunked" in head.lower():
                rest = self._read_chunked(conn, rest)
                length = _chunked_end(rest) or len(rest)
            while len(rest) < length:
                rest += conn.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + rest[:length])
            buffer = rest[length:]
            reply = self.replies.pop(0)
            if reply is None:
                return
            conn.sendall(reply)
            if self.close_after_each:
                return

    @staticmethod
    def _read_chunked(conn: socket.socket, rest: bytes) -> bytes:
        """Read until ``rest`` holds a whole chunked body (last chunk, trailers, blank line)."""
        while _chunked_end(rest) is None:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        return rest

    def close(self) -> None:
        self.listener.close()


def _chunked_end(data: bytes) -> int | None:
    """Where a complete chunked body ends in ``data``, or None when more is needed."""
    position = 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(data[position:line_end].split(b";")[0], 16)
        if size == 0:
            end = data.find(b"\r\n\r\n", line_end)  # trailers, if any, then a blank line
            return None if end < 0 else end + 4
        position = line_end + 2 + size + 2
        if position > len(data):
            return None


@pytest.fixture
def serve() -> Iterator:  # type: ignore[type-arg]
    servers: list[ScriptedServer] = []

    def start(replies: list[bytes | None], **options: bool) -> ScriptedServer:
        servers.append(ScriptedServer(replies, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_content_length_body_and_keep_alive(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
                    b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"])
    conn = Connection("127.0.0.1", server.port)
    first = conn.request("GET", "/next", {})
    assert (first.status, first.body, first.headers["x-a"]) == (200, b"hello", "1")
    second = conn.request("POST", "/answer", {"Content-Type": "application/json"}, b'{"a": 1}')
    assert second.status == 202 and server.accepted == 1
    assert server.requests[1].startswith(b"POST /answer HTTP/1.1\r\nHost: 127.0.0.1:")
    assert server.requests[1].endswith(b"Content-Length: 8\r\n\r\n{\"a\": 1}")
    conn.close()


def test_chunked_body_with_trailers(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"4\r\nWiki\r\n6;ext=1\r\npedia \r\n0\r\nX-Trailer: t\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    conn = Connection("127.0.0.1", server.port)
    assert conn.request("GET", "/", {}).body == b"Wikipedia "
    assert conn.request("GET", "/", {}).body == b"ok"  # the stream stayed in step
    conn.close()


def test_close_delimited_body_and_reconnect(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve([b"HTTP/1.0 200 OK\r\n\r\nuntil close", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"],
                   close_after_each=True)
    conn = Connection("127.0.0.1", server.port)
    assert conn.request("GET", "/", {}).body == b"until close"
    assert conn.request("GET", "/", {}).body == b"x"
    assert server.accepted == 2
    conn.close()


def test_header_values_with_line_breaks_are_refused(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    conn = Connection("127.0.0.1", server.port)
    with pytest.raises(ValueError, match="X-Bad"):
        conn.request("GET", "/", {"X-Bad": "a\r\nInjected: 1"})
    conn.close()


@pytest.mark.parametrize("reply, error", [
    (b"SSH-2.0-OpenSSH\r\n\r\n", ProtocolError),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", ProtocolError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", ConnectionLost),
    (None, ConnectionLost),
])
def test_broken_answers_raise(serve, reply, error) -> None:  # type: ignore[no-untyped-def]
    server = serve([reply])
    conn = Connection("127.0.0.1", server.port)
    if reply is not None and b"short" in reply:
        server.close_after_each = True
    with pytest.raises(error):
        conn.request("GET", "/", {})
    conn.close()


NEXT_REPLY = (b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r-1\r\n"
              b"Lambda-Runtime-Deadline-Ms: 1\r\nContent-Length: 2\r\n\r\n{}")


def test_client_retries_next_once_on_a_stale_keep_alive_connection(serve) -> None:  # type: ignore[no-untyped-def]
    # The server closes the first connection instead of answering; the client reconnects once.
    server = serve([None, NEXT_REPLY])
    client = RuntimeApiClient(f"127.0.0.1:{server.port}")
    assert client.next_invocation().request_id == "r-1"
    assert server.accepted == 2
    client.close()


def test_a_post_is_sent_once_and_its_loss_reported(serve) -> None:  # type: ignore[no-untyped-def]
    # Posts leave retrying to lmi_gevent.runtime_api.delivery, which must count the attempts itself.
    server = serve([None, b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"])
    client = RuntimeApiClient(f"127.0.0.1:{server.port}")
    with pytest.raises(RuntimeApiError, match="connection lost"):
        client.post_init_error({"errorType": "E", "errorMessage": "m", "requestId": "", "stackTrace": []})
    assert server.accepted == 1 and len(server.requests) == 1
    client.close()


def test_client_gives_up_after_the_second_lost_connection(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve([None, None])
    client = RuntimeApiClient(f"127.0.0.1:{server.port}")
    with pytest.raises(RuntimeApiError, match="connection lost"):
        client.next_invocation()
    client.close()


ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"


def test_chunked_request_frames_each_chunk_and_ends_with_trailers(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve([ACCEPTED])
    conn = Connection("127.0.0.1", server.port)
    response = conn.request_chunked(
        "POST", "/r", {"Content-Type": "text/plain"}, iter([b"abc", b"", b"0123456789abcdef!"]),
        lambda: {"Lambda-Runtime-Function-Error-Type": "ValueError"})
    assert (response.status, response.body) == (202, b"ok")
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
    assert body == (b"3\r\nabc\r\n" b"11\r\n0123456789abcdef!\r\n"
                    b"0\r\nLambda-Runtime-Function-Error-Type: ValueError\r\n\r\n")
    conn.close()


def test_chunked_request_replaces_a_closed_connection_before_taking_a_chunk(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve([ACCEPTED, ACCEPTED], close_after_each=True)
    conn = Connection("127.0.0.1", server.port)
    taken = []

    def chunks():  # type: ignore[no-untyped-def]
        taken.append(True)
        yield b"only"

    assert conn.request("GET", "/next", {}).status == 202
    # Wait until the server's FIN has arrived: the idle socket turns readable.
    assert select.select([conn.sock], [], [], 10)[0]
    response = conn.request_chunked("POST", "/r", {}, chunks(), dict)
    assert response.status == 202 and server.accepted == 2 and taken == [True]
    assert server.requests[-1].endswith(b"4\r\nonly\r\n0\r\n\r\n")
    conn.close()
