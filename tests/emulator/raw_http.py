"""Raw HTTP/1.1 over a socket, for the tests that send what no client library would."""

from __future__ import annotations

import re
import socket


def exchange(host: str, port: int, *pieces: bytes) -> bytes:
    """Send ``pieces`` and read until the server closes (or goes quiet for 5 s). The write
    side stays open: a client that half-closes counts as gone while its invocation waits."""
    with socket.create_connection((host, port), timeout=5) as sock:
        try:
            for piece in pieces:
                sock.sendall(piece)
        except OSError:
            pass  # refused and closed before the rest was sent
        received = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return received
                received += data
        except (socket.timeout, ConnectionResetError):
            return received


def status_lines(reply: bytes) -> list[int]:
    """The status of each response in ``reply`` (bodies here never hold an HTTP/1.1 status)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)]
