"""The HTTP/1.1 side of ``local --function-url``, strict as a public server must be (RFC 9112).

Developers expose ``local`` the way they expose ``flask run``, so its parsing is h11's (the
strict pure-Python reference) plus what h11 leaves to the server: ``Content-Length`` with
``Transfer-Encoding`` (request smuggling: 400, as nginx does), obs-fold lines (400; h11 would
unfold them), header sections past :data:`MAX_HEAD_BYTES` or :data:`MAX_FIELDS` (431), targets
that are not origin-form or absolute-form (400), versions other than 1.0 and 1.1 (505), and a
deadline for a request to arrive (408), so a slow sender holds only its own greenlet. Any
refusal is answered with ``Connection: close`` and the connection closed: nothing after a
bad request is ever read as a request.

The emulator's Runtime and Invoke APIs keep the cheaper reader of :mod:`.wire`.
"""

from __future__ import annotations

import http
import re
import socket
from dataclasses import dataclass
from typing import Iterable, Iterator

import h11
from gevent import Timeout

from . import wire
from ._sandbox import MAX_EVENT_BYTES
from .connection import Connection

# The request line and header section together; a browser's is a few KiB.
MAX_HEAD_BYTES = 64 * 1024
MAX_FIELDS = 200
# From the first byte of a request (or the connection's start) to its last body byte.
REQUEST_SECONDS = 30.0
# A body bigger than the largest event cannot be sent on: refused before it is read.
MAX_BODY_BYTES = MAX_EVENT_BYTES
_RECV_BYTES = 65536

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_OBS_FOLD = re.compile(rb"\n[ \t]")
_ABSOLUTE = re.compile(r"(?i)https?://(?P<authority>[^/?#]+)(?P<rest>[/?][^#]*)?\Z")
_REASONS = {status.value: status.phrase for status in http.HTTPStatus}
_HOST = re.compile(r"[A-Za-z0-9._~%!$&'()*+,;=:\[\]-]*\Z")


class Refused(Exception):
    """A request refused before it reached the function: ``status`` and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Reader:
    """Requests off one connection, each parsed by a fresh h11 state machine; bytes a client
    sent ahead (pipelining) carry over to the next request."""

    conn: Connection
    leftover: bytes = b""
    parser: h11.Connection | None = None

    def next_request(self) -> wire.Request | None:
        """The next complete request, or None when the client closed between requests."""
        with Timeout(REQUEST_SECONDS, Refused(408, f"the request did not arrive within "
                                                   f"{REQUEST_SECONDS:g} seconds")):
            head = self._head()
            if head is None:
                return None
            self.parser = parser = h11.Connection(h11.SERVER)
            parser.receive_data(head)
            event = self._next_event()
            if not isinstance(event, h11.Request):
                raise Refused(400, "no request line")
            request = _request(event)
            request.body = self._body(request)
        return request

    def _head(self) -> bytes | None:
        """Bytes up to and past the end of the next header section, checked for what h11
        lets through (obs-fold) or only bounds while incomplete (size, field count)."""
        data = self.leftover
        while True:
            end = _HEAD_END.search(data)
            if end is not None:
                break
            if len(data) > MAX_HEAD_BYTES:
                raise Refused(431, f"the request line and headers exceed {MAX_HEAD_BYTES} bytes")
            received = self.conn.sock.recv(_RECV_BYTES)
            if not received:
                if data.strip():
                    raise Refused(400, "the connection ended inside a request's headers")
                return None
            data += received
        head = data[:end.start()]
        if len(head) > MAX_HEAD_BYTES:
            raise Refused(431, f"the request line and headers exceed {MAX_HEAD_BYTES} bytes")
        if head.count(b"\n") > MAX_FIELDS:
            raise Refused(431, f"more than {MAX_FIELDS} header fields")
        if _OBS_FOLD.search(head):
            raise Refused(400, "a header line folded onto the next (obs-fold, RFC 9112 "
                               "section 5.2)")
        self.leftover = b""
        return data

    def _next_event(self) -> object:
        assert self.parser is not None
        while True:
            try:
                event = self.parser.next_event()
            except h11.RemoteProtocolError as exc:
                raise Refused(exc.error_status_hint, str(exc)) from None
            if event is not h11.NEED_DATA:
                return event
            self.parser.receive_data(self.conn.sock.recv(_RECV_BYTES))

    def _body(self, request: wire.Request) -> bytes:
        assert self.parser is not None
        declared = request.headers.get("content-length")
        if declared is not None and int(declared) > MAX_BODY_BYTES:
            raise Refused(413, f"the body ({declared} bytes) is larger than an event may be")
        if self.parser.they_are_waiting_for_100_continue:
            self.send_interim()
        parts: list[bytes] = []
        size = 0
        while True:
            event = self._next_event()
            if isinstance(event, h11.EndOfMessage):
                self.leftover = bytes(self.parser.trailing_data[0])
                return b"".join(parts)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY_BYTES:
                    raise Refused(413, "the chunked body is larger than an event may be")
                parts.append(bytes(event.data))

    # --- answering ------------------------------------------------------------------------

    def send_interim(self) -> None:
        assert self.parser is not None
        self.conn.sock.sendall(self.parser.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")

    def send(self, status: int, headers: Iterable[tuple[str, str]], body: bytes,
             method: str) -> bool:
        """A complete answer; True when the connection may serve another request."""
        assert self.parser is not None
        bodiless = status in (204, 304)  # RFC 9110 section 15.3.5, 15.4.5: never a body
        fields = [*headers] if bodiless else [*headers, ("Content-Length", str(len(body)))]
        data = self._render(status, fields)
        if method != "HEAD" and not bodiless and body:
            data += self.parser.send(h11.Data(data=body)) or b""
        data += self.parser.send(h11.EndOfMessage()) or b""
        self.conn.sock.sendall(data)
        return self._reusable()

    def send_head(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        """The head of a streamed answer (chunked, or close-delimited to an HTTP/1.0 client)."""
        self.conn.sock.sendall(self._render(status, list(headers)))

    def send_chunks(self, chunks: Iterator[bytes]) -> None:
        assert self.parser is not None
        for chunk in chunks:
            if chunk:
                self.conn.sock.sendall(self.parser.send(h11.Data(data=chunk)) or b"")

    def end_stream(self) -> bool:
        assert self.parser is not None
        self.conn.sock.sendall(self.parser.send(h11.EndOfMessage()) or b"")
        return self._reusable()

    def _render(self, status: int, fields: list[tuple[str, str]]) -> bytes:
        assert self.parser is not None
        # Spaces around a value are optional whitespace to a parser (RFC 9110 section 5.5),
        # which h11 will not write: Django's cookies start with one.
        encoded = [(name.encode("latin-1"), value.strip(" \t").encode("utf-8"))
                   for name, value in fields]
        reason = _REASONS.get(status, "").encode("ascii")
        return self.parser.send(h11.Response(status_code=status, headers=encoded, reason=reason)) or b""

    def _reusable(self) -> bool:
        assert self.parser is not None
        return self.parser.our_state is h11.DONE and self.parser.their_state is h11.DONE

    def refuse(self, refused: Refused) -> None:
        """Answer a refused request and close: what follows it is never read."""
        body = f'{{"Message":"{_plain(str(refused))}"}}'.encode()
        try:
            self.conn.sock.sendall(wire.render_response(
                refused.status, [("Content-Type", "application/json")], body, close=True))
            self.conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _request(event: h11.Request) -> wire.Request:
    """The parsed head as the emulator's Request, after the checks h11 leaves to servers."""
    version = "HTTP/" + event.http_version.decode("ascii")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise Refused(505, f"{version} is not served here (HTTP/1.1 and HTTP/1.0 are)")
    request = wire.Request(event.method.decode("ascii"), event.target.decode("ascii"), version)
    names = set()
    for raw_name, raw_value in event.headers.raw_items():
        name, value = raw_name.decode("ascii"), _text(raw_value)
        names.add(name.lower())
        request.header_list.append((name, value))
        request.headers[name.lower()] = value
    if "transfer-encoding" in names and "content-length" in names:
        raise Refused(400, "both Content-Length and Transfer-Encoding (RFC 9112 section 6.1: "
                           "a request smuggling attempt)")
    host = request.headers.get("host", "")
    if not _HOST.match(host):
        raise Refused(400, "the Host header is not a host name")
    _origin_form(request)
    return request


def _origin_form(request: wire.Request) -> None:
    """Origin-form as is; absolute-form (RFC 9112 section 3.2.2) becomes origin-form, its
    authority the Host; asterisk- and authority-form are not for a Function URL."""
    target = request.target
    if "#" in target:  # a fragment never goes on the wire (RFC 9112 section 3.2)
        raise Refused(400, f"the request target {target[:100]!r} carries a fragment")
    if target.startswith("/"):
        return
    absolute = _ABSOLUTE.match(target)
    if absolute is None or not _HOST.match(absolute["authority"]):
        raise Refused(400, f"the request target {target[:100]!r} is neither a path nor an "
                           "absolute http(s) URL")
    rest = absolute["rest"] or "/"
    request.target = rest if rest.startswith("/") else "/" + rest
    request.header_list = [(name, value) for name, value in request.header_list
                           if name.lower() != "host"]
    request.header_list.insert(0, ("Host", absolute["authority"]))
    request.headers["host"] = absolute["authority"]


def _text(value: bytes) -> str:
    """A header value as text: UTF-8 when it is (browsers send it), else each byte as is."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _plain(message: str) -> str:
    return "".join(char if char.isprintable() and char not in '"\\' else "?" for char in message)
