"""One keep-alive connection to one of the emulator's servers: reading requests off it,
answering, noticing a client that hangs up while it waits, and telling whether a peer read
what we wrote before it closed.

Why StreamServer and not pywsgi: a waiting ``GET /next`` must stop counting as an open poll
the moment its runtime hangs up, which needs the raw socket; and the small parser in
:mod:`.wire` costs a fraction of a WSGI environ per request, so the stand-in is never the
bottleneck of a benchmark.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

try:  # the kernel's view of a connection, for telling a crossed FIN from a read answer
    import fcntl
    import termios
except ImportError:  # pragma: no cover - not on Windows
    fcntl = termios = None  # type: ignore[assignment]

from gevent import get_hub, sleep

from . import wire

JSON_TYPE = ("Content-Type", "application/json")
# How long to wait for a peer's RST after its FIN where the kernel cannot tell us whether
# it took our bytes (loopback round trips take microseconds).
UNREAD_CHECK_SECONDS = 0.05
# Where it can (Linux): the longest wait for the peer's kernel to acknowledge or refuse what we
# wrote last. A busy machine may run the loopback's softirq late, so this is generous; the
# wait ends as soon as the kernel knows, which on an idle machine is at once.
UNREAD_VERDICT_SECONDS = 2.0
_TCP_CLOSE = 7  # tcpi_state once a RST has been received (include/net/tcp_states.h)


class Connection:
    """One accepted socket: a buffered reader and a few ways to answer or drop it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile: BinaryIO = sock.makefile("rb", 65536)  # type: ignore[assignment]
        # gevent keeps the real, non-blocking socket here; peeking at it from a hub callback
        # must never block or switch.
        self.raw: Any = getattr(sock, "_sock", sock)
        # Set while an answer we wrote may still sit unread at the peer; called if the peer
        # then resets the connection (see serve_connection).
        self.on_reset_unread: Callable[[], None] | None = None

    def send(self, status: int, headers: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
             body: bytes = b"", *, close: bool = False) -> None:
        self.sock.sendall(wire.render_response(status, headers, body, close=close))

    def send_json(self, status: int, document: Any, *, close: bool = False) -> None:
        self.send(status, (JSON_TYPE,), json.dumps(document).encode(), close=close)

    def peer_gone(self) -> bool:
        """True when the peer has closed or reset the connection (seen without blocking)."""
        try:
            return self.raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def reset(self) -> None:
        """Drop the connection with a TCP RST, the way a crashed platform would."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


class HangupWatch:
    """Calls ``on_hangup`` (in the hub; it must not block) if the peer closes the connection
    while the handler waits for something else, e.g. an idle long-poll."""

    def __init__(self, conn: Connection, on_hangup: Callable[[], None]) -> None:
        self._conn = conn
        self._on_hangup = on_hangup
        self._io = get_hub().loop.io(conn.sock.fileno(), 1)
        self._io.start(self._readable)

    def _readable(self) -> None:
        try:
            gone = self._conn.peer_gone()
        except Exception:  # never let a hub callback raise
            gone = True
        # Either the peer left or it sent more bytes early; in both cases stop watching so
        # a pipelined request cannot make this callback spin.
        self._io.stop()
        if gone:
            self._on_hangup()

    def close(self) -> None:
        self._io.close()


Router = Callable[[wire.Request, Connection], bool]


def serve_connection(sock: socket.socket, address: Any, *, router: Router,
                     on_bad_request: Callable[[], None] | None = None) -> None:
    """Read requests off one keep-alive connection until it closes; ``router`` answers each
    and returns False when the connection must not be reused."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    conn = Connection(sock)
    try:
        while True:
            request = wire.read_request_head(conn.rfile)
            if request is None:
                check_unread_after_eof(conn)
                return
            conn.on_reset_unread = None  # the peer is talking, so it read our last answer
            if request.streamed_answer and "chunked" in request.headers.get("transfer-encoding", ""):
                request.body_stream = wire.ChunkedBody(conn.rfile)
            else:
                wire.read_body(request, conn.rfile, conn.sock)
            if not router(request, conn) or not request.keep_alive:
                return
            if request.body_stream is not None and not request.body_stream.complete:
                return  # a route left a stream unread: the connection is out of step
    except wire.BadRequest as exc:
        if on_bad_request is not None:
            on_bad_request()
        _try_send(conn, exc.status, {"errorType": "BadRequest", "errorMessage": str(exc)})
    except (ConnectionResetError, BrokenPipeError):
        # Linux answers close() with RST instead of FIN only when unread data was left in
        # the receive buffer: the peer never read what we wrote last. (A RST that follows
        # the peer's FIN is reported as EPIPE, one before it as ECONNRESET.)
        if conn.on_reset_unread is not None:
            conn.on_reset_unread()
    except OSError:
        pass  # the peer went away mid-request; nothing left to answer
    finally:
        conn.close()


def check_unread_after_eof(conn: Connection) -> None:
    """The peer closed right after we wrote to it. Did it read what we sent?

    A socket closed with bytes still unread sends RST instead of FIN, so a FIN alone means the
    peer read our answer, unless its FIN crossed our write: then the bytes reach a closed
    socket, which refuses them with RST. Once the FIN is in, recv() keeps returning EOF and
    never reports that RST, so on Linux the verdict comes from the kernel's own books: the
    connection dropped to CLOSE (the RST came: never read), or every byte we wrote was
    acknowledged (it reached the open socket before the FIN: read)."""
    if conn.on_reset_unread is None:
        return
    verdict = unread_verdict(conn)
    if verdict is None:  # no TCP_INFO / SIOCOUTQ here: give the RST a moment to show
        sleep(UNREAD_CHECK_SECONDS)
        try:
            conn.raw.recv(1, socket.MSG_DONTWAIT)
        except (ConnectionResetError, BrokenPipeError):
            conn.on_reset_unread()
        except OSError:
            pass
        return
    deadline = time.monotonic() + UNREAD_VERDICT_SECONDS
    pause = 0.001
    while verdict == "pending" and time.monotonic() < deadline:
        sleep(pause)
        pause = min(pause * 2, 0.05)
        verdict = unread_verdict(conn)
    # Still unacknowledged at the deadline: the peer's kernel never took the bytes either.
    if verdict != "read":
        conn.on_reset_unread()


def unread_verdict(conn: Connection) -> str | None:
    """"unread" (the peer reset the connection), "read" (all our bytes were acknowledged),
    "pending" (neither yet), or None where the kernel does not say."""
    tcp_info = getattr(socket, "TCP_INFO", None)
    outq = getattr(termios, "TIOCOUTQ", None) if termios is not None else None
    if tcp_info is None or outq is None:
        return None
    try:
        state = conn.raw.getsockopt(socket.IPPROTO_TCP, tcp_info, 8)[0]
        if state == _TCP_CLOSE:
            return "unread"
        unacknowledged = struct.unpack("i", fcntl.ioctl(conn.raw.fileno(), outq, b"\0\0\0\0"))[0]
    except OSError:
        return None
    return "read" if unacknowledged == 0 else "pending"


def _try_send(conn: Connection, status: int, document: dict[str, str]) -> None:
    try:
        conn.send_json(status, document, close=True)
    except OSError:
        pass


def guarded(router: Router, record_status: Callable[[str, int], None]) -> Router:
    """Turn a bug in a route into a 500 and a traceback on stderr instead of a dead link."""

    def route(request: wire.Request, conn: Connection) -> bool:
        try:
            return router(request, conn)
        except (OSError, wire.BadRequest):
            raise
        except Exception:
            traceback.print_exc(file=sys.stderr)
            record_status("other", 500)
            conn.send_json(500, {"errorType": "InternalError", "errorMessage": "emulator bug, see stderr"},
                           close=True)
            return False

    return route
