"""The slow dependency the ``fetch`` handler calls: ``python -m bench.upstream``.

An HTTP/1.1 server on 127.0.0.1 (never another interface) that answers every GET after
``?ms=`` milliseconds (default 50), on gevent so that thousands of waiting requests cost
nothing. It runs in its own process so that its CPU is neither the runtime's nor the load
generator's; it prints ``{"port": ..., "pid": ...}`` once listening and exits when stdin
closes or on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket as _stdlib_socket
import sys
from urllib.parse import parse_qs, urlsplit

import gevent
from gevent import socket
from gevent.server import StreamServer

DEFAULT_DELAY_MS = 50.0
# Guards against a request that never ends its header section.
MAX_HEAD = 64 * 1024
BODY = b'{"ok": true}'
# Every caller connects afresh (requests.get opens a new session each time): a deep
# backlog keeps a burst of 1000 connects from being dropped and retried a second later.
BACKLOG = 4096


def delay_seconds(target: bytes) -> float:
    """The ``ms`` query parameter of a request target, in seconds."""
    query = parse_qs(urlsplit(target.decode("latin-1")).query)
    try:
        return max(0.0, float(query.get("ms", [DEFAULT_DELAY_MS])[-1]) / 1000)
    except ValueError:
        return DEFAULT_DELAY_MS / 1000


def answer(keep_alive: bool) -> bytes:
    connection = b"keep-alive" if keep_alive else b"close"
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(BODY)).encode() + b"\r\nConnection: " + connection + b"\r\n\r\n" + BODY)


def serve_connection(sock: socket.socket, address: object) -> None:
    """Answer GETs on one connection until the client closes it."""
    sock.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, 1)
    pending = b""
    try:
        while True:
            while b"\r\n\r\n" not in pending:
                chunk = sock.recv(65536)
                if not chunk or len(pending) > MAX_HEAD:
                    return
                pending += chunk
            head, _, pending = pending.partition(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].split()
            keep_alive = b"connection: close" not in head.lower()
            gevent.sleep(delay_seconds(request_line[1] if len(request_line) > 1 else b"/"))
            sock.sendall(answer(keep_alive))
            if not keep_alive:
                return
    except OSError:
        return  # the caller gave up; nothing to answer
    finally:
        sock.close()


def wait_for_stdin_eof() -> None:
    while True:
        socket.wait_read(0)
        if not os.read(0, 4096):
            return


def main() -> int:
    server = StreamServer(("127.0.0.1", 0), serve_connection, backlog=BACKLOG)
    server.start()
    stopping = gevent.spawn(wait_for_stdin_eof)
    gevent.signal_handler(signal.SIGTERM, stopping.kill)
    sys.stdout.write(json.dumps({"port": server.address[1], "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    stopping.join()
    server.stop(timeout=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
