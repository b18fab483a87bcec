"""A small HTTP/1.1 keep-alive reader and writer for the emulator's two servers.

Why not pywsgi: a Runtime API long-poll must notice when its client goes away while idle,
which needs the raw socket, and WSGI hides it; and a hand-rolled parser that does only what
the Runtime API and the Invoke API need is several times cheaper per request than a WSGI
environ, so the stand-in never becomes the bottleneck of a benchmark.

Stdlib only: the functions take a buffered binary reader and a socket-like object with
``sendall``, so they work with gevent sockets and plain ones alike.
"""

from __future__ import annotations

import http
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

# An X-Ray error cause header may be close to 1 MiB (the official client drops it only at
# 1 MiB), so a header line has to be allowed to be that long.
MAX_LINE = 2 * 1024 * 1024
MAX_HEADER_BYTES = 4 * 1024 * 1024
# Bodies past this are not even drained: the connection is closed instead.
MAX_BODY = 64 * 1024 * 1024

_REASONS = {status.value: status.phrase for status in http.HTTPStatus}


class BadRequest(Exception):
    """The bytes on the connection are not an HTTP/1.x request we can answer; ``status`` is
    the answer (400, or 431/413/501 where RFC 9110 has a closer one)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# RFC 9112 request line: method SP request-target SP HTTP-version, nothing looser; the
# target is origin-form (the emulator's APIs are paths).
_REQUEST_LINE = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (/[\x21-\x7e]*) (HTTP/1\.[01])\r?\n\Z")
# field-name ":" OWS field-value OWS: the name a token (no space before the colon), the
# value free of controls but HTAB
_FIELD_LINE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*\r?\n\Z").match
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\n\Z")


class _Sender(Protocol):
    def sendall(self, data: bytes, /) -> object: ...


@dataclass(eq=False)
class Request:
    method: str
    target: str
    version: str
    # Header names lower-cased; a repeated header keeps its last value, which is all
    # the Runtime API needs.
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Every header line in order, names as sent: what a Function URL event is built from.
    header_list: list[tuple[str, str]] = field(default_factory=list)
    # Set instead of ``body`` for a streamed answer; the route reads it (see serve_connection).
    body_stream: ChunkedBody | None = None

    @property
    def streamed_answer(self) -> bool:
        """A runtime's streamed response (or an attempt at one, with a mode to refuse): its
        body is relayed as it arrives, not read first."""
        return "lambda-runtime-function-response-mode" in self.headers

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        parts = self.target.split("?", 1)
        return parts[1] if len(parts) == 2 else ""

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


def read_request_head(rfile: BinaryIO) -> Request | None:
    """Read a request line and headers; None on a clean EOF between requests."""
    line = rfile.readline(MAX_LINE)
    while line in (b"\r\n", b"\n"):  # tolerate stray CRLF between keep-alive requests
        line = rfile.readline(MAX_LINE)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise BadRequest("request line too long or cut", 414 if len(line) >= MAX_LINE else 400)
    parsed = _REQUEST_LINE.match(line.decode("latin-1"))
    if parsed is None:
        raise BadRequest(f"malformed request line {line[:100]!r} (RFC 9112 section 3)")
    request = Request(parsed[1], parsed[2], parsed[3])
    request.headers = headers = _read_headers(rfile, request.header_list)
    if "content-length" in headers or "transfer-encoding" in headers:
        _check_framing(request.header_list)
    return request


def _check_framing(fields: list[tuple[str, str]]) -> None:
    """What RFC 9112 section 6 says a server must refuse: both framings (request smuggling),
    a Content-Length that is not one number, a transfer coding other than chunked."""
    lengths = set()
    codings = []
    for name, value in fields:
        if len(name) == 14 and name.lower() == "content-length":  # len() first: lower() is dearer
            lengths.add(value)
        elif len(name) == 17 and name.lower() == "transfer-encoding":
            codings.append(value)
    if lengths and codings:
        raise BadRequest("both Content-Length and Transfer-Encoding (RFC 9112 section 6.1)")
    if len(lengths) > 1 or any(not length.isdigit() or not length.isascii() for length in lengths):
        raise BadRequest(f"bad Content-Length {sorted(lengths)!r}")
    if codings and ", ".join(codings).strip().lower() != "chunked":
        raise BadRequest(f"Transfer-Encoding {', '.join(codings)!r}: only chunked is served", 501)


def _read_headers(rfile: BinaryIO, header_list: list[tuple[str, str]] | None = None
                  ) -> dict[str, str]:
    headers: dict[str, str] = {}
    total = 0
    while True:
        line = rfile.readline(MAX_LINE)
        total += len(line)
        if total > MAX_HEADER_BYTES or (len(line) >= MAX_LINE and not line.endswith(b"\n")):
            raise BadRequest("header section too long", 431)
        if not line.endswith(b"\n"):
            raise BadRequest("header section cut")
        if line in (b"\r\n", b"\n"):
            return headers
        if line[:1] in (b" ", b"\t"):
            raise BadRequest("a header line folded onto the next (obs-fold, RFC 9112 section 5.2)")
        text = line.decode("latin-1")
        if not _FIELD_LINE(text):
            raise BadRequest(f"malformed header line {line[:100]!r} (RFC 9112 section 5)")
        name, _, value = text.partition(":")
        value = value.strip(" \t\r\n")
        headers[name.lower()] = value
        if header_list is not None:
            header_list.append((name, value))


def read_body(request: Request, rfile: BinaryIO, wfile: _Sender) -> None:
    """Fill ``request.body`` from Content-Length or chunked framing.

    Answers ``Expect: 100-continue`` first: curl (the official client's transport) sends it
    for large bodies and would otherwise stall a second before sending them.
    """
    if request.headers.get("expect", "").lower() == "100-continue":
        wfile.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        request.body = _read_chunked(rfile)
        return
    length = int(request.headers.get("content-length") or "0")  # digits: _check_framing
    if length > MAX_BODY:
        raise BadRequest(f"Content-Length {length} is past the {MAX_BODY} bytes read here", 413)
    request.body = _read_exact(rfile, length)


def _read_exact(rfile: BinaryIO, length: int) -> bytes:
    data = rfile.read(length) if length else b""
    if len(data) != length:
        raise BadRequest("body cut short")
    return data


def _read_chunked(rfile: BinaryIO) -> bytes:
    reader = ChunkedBody(rfile, MAX_BODY)
    return b"".join(reader)


class ChunkedBody:
    """The chunks of a chunked body, each yielded as soon as it is read; once exhausted,
    :attr:`trailers` holds the trailer fields (lower-cased names). Raises BadRequest on bad
    framing or past ``limit`` bytes (None: no limit, for relayed streams)."""

    def __init__(self, rfile: BinaryIO, limit: int | None = None) -> None:
        self._rfile = rfile
        self._limit = limit
        self.total = 0
        self.trailers: dict[str, str] = {}
        self.complete = False

    def __iter__(self) -> Iterator[bytes]:
        rfile = self._rfile
        while True:
            size_line = rfile.readline(1024)
            if not size_line:
                raise BadRequest("chunked body cut short")
            parsed = _CHUNK_SIZE.match(size_line)  # int() would take "0x5", "1_0", "-5"
            if parsed is None:
                raise BadRequest(f"bad chunk size {size_line[:50]!r} (RFC 9112 section 7.1)")
            size = int(parsed[1], 16)
            if size == 0:
                self.trailers = _read_headers(rfile)
                self.complete = True
                return
            self.total += size
            if self._limit is not None and self.total > self._limit:
                raise BadRequest("chunked body too large", 413)
            chunk = _read_exact(rfile, size)
            if rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BadRequest("chunk not followed by CRLF")
            yield chunk


def render_chunked_head(status: int, headers: Iterable[tuple[str, str]],
                        trailer_names: str | None = None) -> bytes:
    """The head of a response whose body follows in chunked encoding."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append("Transfer-Encoding: chunked")
    if trailer_names:
        lines.append(f"Trailer: {trailer_names}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def render_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def render_last_chunk(trailers: Iterable[tuple[str, str]] = ()) -> bytes:
    fields = "".join(f"{name}: {value}\r\n" for name, value in trailers)
    return f"0\r\n{fields}\r\n".encode("latin-1")


def render_response(
    status: int,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    close: bool = False,
) -> bytes:
    """One complete response, always with Content-Length (never chunked)."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + body
