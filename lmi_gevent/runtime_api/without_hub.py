"""The Runtime API from a native thread while the event loop is wedged.

When a handler holds gevent's loop in a C call that never returns, no greenlet runs again, so
no slot can answer. A native thread (:mod:`lmi_gevent.serving.stopping`) then takes over the
slots' connections by file descriptor: it reads the invocations the platform handed to open
polls, closes the polls nothing arrived on (the platform then hands no more to them), and
posts the error answers over fresh connections. Only the C ``_socket`` module is used: gevent
patches ``socket``, and its sockets need the very loop that is stuck.
"""

from __future__ import annotations

import _socket
import json
import os
from typing import Any, NamedTuple

from .client import API_PREFIX, ERROR_TYPE_HEADER, INVOCATION_ID_HEADER, readable_now

REQUEST_ID_HEADER = "lambda-runtime-aws-request-id"
# How long one read or post may take: the thread must finish well within a few seconds.
IO_TIMEOUT = 2.0


class HandedInvocation(NamedTuple):
    request_id: str
    invocation_id: str | None


def take_poll(fd: int) -> HandedInvocation | None:
    """The invocation waiting on the poll connection ``fd``, or None; either way the poll is
    shut down, so the platform hands it nothing more (what arrives later resets the
    connection unread, and the platform hands that invocation to another poll)."""
    sock = _socket.socket(fileno=os.dup(fd))
    try:
        handed = _read_invocation(fd) if readable_now(sock) else None
        try:
            sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass
    finally:
        sock.close()
    return handed


def _read_invocation(fd: int) -> HandedInvocation | None:
    sock = _socket.socket(fileno=os.dup(fd))
    sock.settimeout(IO_TIMEOUT)
    data = b""
    try:
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    finally:
        sock.close()
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    headers = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    request_id = headers.get(REQUEST_ID_HEADER)
    if not head.startswith("HTTP/1.1 200") or not request_id:
        return None
    return HandedInvocation(request_id, headers.get(INVOCATION_ID_HEADER.lower()))


def post_error(address: str, invocation: HandedInvocation, body: dict[str, Any]) -> int:
    """POST the error answer of ``invocation`` on a fresh connection; the status (0: none)."""
    host, _, port = address.rpartition(":")
    payload = json.dumps(body, ensure_ascii=True).encode("ascii")
    lines = [f"POST {API_PREFIX}/invocation/{invocation.request_id}/error HTTP/1.1",
             f"Host: {address}", "Content-Type: application/json",
             f"{ERROR_TYPE_HEADER}: {body['errorType']}", f"Content-Length: {len(payload)}",
             "Connection: close"]
    if invocation.invocation_id:
        lines.append(f"{INVOCATION_ID_HEADER}: {invocation.invocation_id}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
    try:
        family, kind, proto, _, where = _socket.getaddrinfo(
            host.strip("[]"), int(port), 0, _socket.SOCK_STREAM)[0]
        sock = _socket.socket(family, kind, proto)
    except OSError:
        return 0
    sock.settimeout(IO_TIMEOUT)
    try:
        sock.connect(where)
        sock.sendall(request)
        status_line = sock.recv(64).split(b"\r\n", 1)[0].split()
        return int(status_line[1]) if len(status_line) > 1 else 0
    except (OSError, ValueError):
        return 0
    finally:
        sock.close()
