"""Connection.request_chunked (streamed answers): framing, trailers, a stale connection."""

from __future__ import annotations

import select
import socket
import threading

from lmi_gevent._http import Connection

ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"


class RecordingServer:
    """Reads each request up to the end of its chunked body (or its head, for a GET), answers
    202, and closes the connection after it when ``close_after_each``."""

    def __init__(self, close_after_each: bool = False) -> None:
        self.close_after_each = close_after_each
        self.requests: list[bytes] = []
        self.accepted = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                while self._one(conn) and not self.close_after_each:
                    pass

    def _one(self, conn: socket.socket) -> bool:
        data = b""
        while True:
            part = conn.recv(65536)
            if not part:
                return False
            data += part
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and (b"chunked" not in head or body.endswith(b"\r\n\r\n") and b"\r\n0\r\n" in b"\r\n" + body):
                break
        self.requests.append(data)
        conn.sendall(ACCEPTED)
        return True

    def close(self) -> None:
        self.listener.close()


def test_chunks_are_framed_one_by_one_and_trailers_follow_the_last_chunk() -> None:
    server = RecordingServer()
    conn = Connection("127.0.0.1", server.port)
    try:
        response = conn.request_chunked(
            "POST", "/r", {"Content-Type": "text/plain"}, iter([b"abc", b"", b"0123456789abcdef!"]),
            lambda: {"Lambda-Runtime-Function-Error-Type": "ValueError"})
        assert (response.status, response.body) == (202, b"ok")
        head, _, body = server.requests[0].partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
        assert body == (b"3\r\nabc\r\n" b"11\r\n0123456789abcdef!\r\n"
                        b"0\r\nLambda-Runtime-Function-Error-Type: ValueError\r\n\r\n")
    finally:
        conn.close()
        server.close()


def test_a_connection_the_server_closed_is_replaced_before_any_chunk_is_taken() -> None:
    server = RecordingServer(close_after_each=True)
    conn = Connection("127.0.0.1", server.port)
    taken = []

    def chunks():
        taken.append(True)
        yield b"only"

    try:
        assert conn.request("GET", "/next", {}).status == 202
        # Wait until the server's FIN has arrived: the idle socket turns readable.
        assert select.select([conn.sock], [], [], 10)[0]
        response = conn.request_chunked("POST", "/r", {}, chunks(), dict)
        assert response.status == 202 and server.accepted == 2 and taken == [True]
        assert server.requests[-1].endswith(b"4\r\nonly\r\n0\r\n\r\n")
    finally:
        conn.close()
        server.close()
