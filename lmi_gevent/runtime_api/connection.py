"""A minimal keep-alive HTTP/1.1 client connection for the Runtime API.

Why not ``http.client``: it parses every response's headers with the ``email`` package, which
profiled at about half of the runtime's own CPU time per invocation (two responses per
invocation). The Runtime API is a small, fixed surface — a request line, a few headers, a
body with Content-Length (chunked and close-delimited bodies are handled too) — so a reader of
a few dozen lines does the job at a fraction of the cost.

Each request is sent in one write with TCP_NODELAY: two writes (headers, then body) cost a
40 ms delayed-ACK stall per call on loopback when Nagle is on.
"""

from __future__ import annotations

import socket

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

_MAX_LINE = 65536  # longest status or header line accepted
_MAX_HEADERS = 100
_READ_BUFFER = 2048


class ConnectionLost(OSError):
    """The server closed the connection before answering (e.g. a stale keep-alive)."""


class ProtocolError(OSError):
    """The server's answer is not HTTP/1.x as this client understands it."""


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # lower-cased names
        self.body = body


class Connection:
    """One keep-alive connection, opened on first use and after the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        shown = f"[{host}]" if ":" in host else host  # an IPv6 address keeps its brackets
        self._host_header = f"Host: {shown}:{port}\r\n"
        self.sock: socket.socket | None = None
        self._reader: Any = None  # the socket's buffered reader while connected

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self.sock is not None:
            self.sock.close()
        self.sock = self._reader = None

    def _connect(self) -> socket.socket:
        # No timeout: /next is a long-poll that may legitimately wait for hours.
        sock = socket.create_connection((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        # A status line and headers fit in 2 KiB; larger bodies bypass the buffer. The default
        # 8 KiB buffer was half of each idle slot's memory (tracemalloc, N=1000).
        self._reader = sock.makefile("rb", _READ_BUFFER)
        return sock

    def request(self, method: str, path: str, headers: dict[str, str],
                body: bytes | None = None,
                before_read: Callable[[socket.socket], None] | None = None) -> Response:
        """Send one request and read its response; raises OSError subclasses on failure.

        ``before_read(sock)`` runs after the request is sent and before any byte of the
        answer is read: a wait there can be interrupted without losing part of an answer.
        """
        sock = self.sock or self._connect()
        lines = [f"{method} {path} HTTP/1.1\r\n{self._host_header}"]
        for name, value in headers.items():
            _check_value(name, value)
            lines.append(f"{name}: {value}\r\n")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        sock.sendall("".join(lines).encode("latin-1") + (body or b""))
        if before_read is not None:
            before_read(sock)
        return self._read_response(method)

    def request_chunked(self, method: str, path: str, headers: dict[str, str],
                        chunks: Iterable[bytes], trailers: Callable[[], dict[str, str]]
                        ) -> Response:
        """Send a request whose body is ``chunks`` in chunked encoding, each chunk written as
        soon as it is produced, ended by the trailers ``trailers()`` returns; read the answer.

        A connection the server already closed is replaced before anything is sent: once a
        chunk has been taken from ``chunks`` the request cannot be repeated.
        """
        if self.sock is not None and _closed_by_peer(self.sock):
            self.close()
        sock = self.sock or self._connect()
        lines = [f"{method} {path} HTTP/1.1\r\n{self._host_header}"]
        for name, value in headers.items():
            _check_value(name, value)
            lines.append(f"{name}: {value}\r\n")
        lines.append("Transfer-Encoding: chunked\r\n\r\n")
        sock.sendall("".join(lines).encode("latin-1"))
        for chunk in chunks:
            if chunk:  # a zero-length chunk would end the body
                sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        ending = ["0\r\n"]
        for name, value in trailers().items():
            _check_value(name, value)
            ending.append(f"{name}: {value}\r\n")
        ending.append("\r\n")
        sock.sendall("".join(ending).encode("latin-1"))
        return self._read_response(method)

    def _read_response(self, method: str) -> Response:
        reader = self._reader
        status_line = reader.readline(_MAX_LINE)
        if not status_line:
            raise ConnectionLost("the server closed the connection without answering")
        version, _, rest = status_line.decode("latin-1").partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        headers = self._read_headers()
        status = int(code)
        body = self._read_body(status, method, headers)
        if headers.get("connection", "").lower() == "close" or version == "HTTP/1.0":
            self.close()
        return Response(status, headers, body)

    def _read_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            line = self._reader.readline(_MAX_LINE)
            if line in (b"\r\n", b"\n"):
                return headers
            if not line:
                raise ConnectionLost("the connection closed in the middle of the headers")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"malformed header line: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        raise ProtocolError(f"more than {_MAX_HEADERS} headers")

    def _read_body(self, status: int, method: str, headers: dict[str, str]) -> bytes:
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ProtocolError(f"bad Content-Length: {length!r}")
            return self._read_exactly(int(length))
        body = self._reader.read()  # delimited by the server closing the connection
        self.close()
        return body

    def _read_exactly(self, size: int) -> bytes:
        data = self._reader.read(size)
        if len(data) != size:
            raise ConnectionLost(f"the body ended after {len(data)} of {size} bytes")
        return data

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = self._reader.readline(_MAX_LINE)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line: {size_line[:80]!r}") from None
            if size == 0:
                self._read_headers()  # trailers, ending with the blank line
                return b"".join(parts)
            parts.append(self._read_exactly(size))
            self._reader.readline(_MAX_LINE)  # the CRLF after each chunk


def _check_value(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} has a line break in its value")


def _closed_by_peer(sock: socket.socket) -> bool:
    """True when the server has closed this idle keep-alive connection (EOF waits unread)."""
    # gevent's socket would wait on EAGAIN; its real socket (``_sock``) answers at once.
    raw = getattr(sock, "_sock", sock)
    try:
        return raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
