"""A minimal keep-alive HTTP/1.1 client connection for the Runtime API.

Why not ``http.client``: it parses every response's headers with the ``email`` package, which
profiled at about half of the runtime's own CPU time per invocation (two responses per
invocation). The Runtime API is a small, fixed surface — a request line, a few headers, a
body with Content-Length (chunked and close-delimited bodies are handled too) — so a reader of
a few dozen lines does the job at a fraction of the cost.

Each request is sent in one write with TCP_NODELAY: two writes (headers, then body) cost a
40 ms delayed-ACK stall per call on loopback when Nagle is on.

Sockets come from the ``socket`` module when something imported it (in concurrent mode it is
gevent's, so a slot's wait yields to the others), otherwise from the C module ``_socket``: a
classic cold start then skips ``socket.py`` and the enums it builds, and the host name goes to
``getaddrinfo`` as bytes, which spares loading the IDNA codec (together ~3 ms of a ~35 ms
start, docs/bench-coldstart.md).
"""

from __future__ import annotations

import _socket
import io
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from socket import socket
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
        self.sock: socket | None = None
        self._reader: Any = None  # the socket's buffered reader while connected

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self.sock is not None:
            self.sock.close()
        self.sock = self._reader = None

    def _connect(self) -> socket:
        # No timeout: /next is a long-poll that may legitimately wait for hours.
        sock = open_tcp(self.host, self.port)
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        self.sock = sock
        # A status line and headers fit in 2 KiB; larger bodies bypass the buffer. The default
        # 8 KiB buffer was half of each idle slot's memory (tracemalloc, N=1000).
        self._reader = io.BufferedReader(_SocketReader(sock), _READ_BUFFER)
        return sock

    def request(self, method: str, path: str, headers: dict[str, str],
                body: bytes | None = None,
                before_read: Callable[[socket], None] | None = None) -> Response:
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


class _SocketReader(io.RawIOBase):
    """A connected socket as the raw stream under an ``io.BufferedReader`` (what
    ``socket.makefile("rb")`` builds, for sockets of either module)."""

    def __init__(self, sock: socket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)


def open_tcp(host: str, port: int) -> socket:
    """A TCP connection to ``host:port``, trying each address ``getaddrinfo`` gives in turn
    (as ``socket.create_connection`` does), with the module chosen as the docstring says."""
    module: Any = sys.modules.get("socket") or _socket
    try:
        name = host.encode("ascii")  # a str would load the IDNA codec
    except UnicodeEncodeError:
        name = host.encode("idna")
    problem: OSError | None = None
    for family, kind, proto, _, address in module.getaddrinfo(name, port, 0,
                                                              _socket.SOCK_STREAM):
        sock = module.socket(family, kind, proto)
        try:
            sock.connect(address)
        except OSError as error:
            sock.close()
            problem = error
            continue
        return sock
    raise problem or OSError(f"getaddrinfo found no address for {host!r}")


def peek(sock: socket) -> bytes | None:
    """One byte waiting on ``sock`` without taking it: b"" at the end of the stream, None when
    nothing waits. Never waits: gevent's socket would, on EAGAIN, so its real one is asked."""
    raw = getattr(sock, "_sock", sock)
    try:
        return raw.recv(1, _socket.MSG_PEEK | _socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None


def wait_readable(sock: socket) -> None:
    """Block until bytes, or the end of the stream, wait on the blocking ``sock``, taking none
    of them: a peek, which a signal handler may interrupt by raising, as it may a ``select``."""
    try:
        sock.recv(1, _socket.MSG_PEEK)
    except OSError:
        pass  # a reset connection: the read that follows meets it and says so


def _closed_by_peer(sock: socket) -> bool:
    """True when the server has closed this idle keep-alive connection (EOF waits unread)."""
    try:
        return peek(sock) == b""
    except OSError:
        return True
