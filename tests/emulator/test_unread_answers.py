"""Did a runtime that hung up read the /next answer it was sent? The emulator asks the kernel
(in-process, real loopback sockets), so a FIN that crosses the answer is never mistaken for a
runtime that read it and died, whatever the machine's load."""

from __future__ import annotations

import socket as stdlib_socket
import sys

import pytest

pytest.importorskip("gevent")

import gevent.socket

from lmi_gevent.emulator import connection

pytestmark = [pytest.mark.timeout(15),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's books are read on Linux")]

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


def connected_pair() -> tuple[connection.Connection, stdlib_socket.socket]:
    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    peer = stdlib_socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    listener.close()
    return connection.Connection(accepted), peer


def wait_for_eof(conn: connection.Connection) -> None:
    assert conn.rfile.readline() == b""


def verdict_after(conn: connection.Connection) -> list[str]:
    calls: list[str] = []
    conn.on_reset_unread = lambda: calls.append("requeued")
    connection.check_unread_after_eof(conn)
    return calls


def test_an_answer_written_after_the_peer_closed_is_unread():
    conn, peer = connected_pair()
    peer.close()  # its FIN is in flight before the answer is written: they cross
    wait_for_eof(conn)
    conn.sock.sendall(ANSWER)  # the closed socket refuses it with RST, after its FIN
    assert connection.unread_verdict(conn) in ("unread", "pending")
    assert verdict_after(conn) == ["requeued"]
    conn.close()


def test_an_answer_the_peer_read_before_closing_is_not_given_again():
    conn, peer = connected_pair()
    conn.sock.sendall(ANSWER)
    received = b""
    while len(received) < len(ANSWER):
        received += peer.recv(4096)
    peer.close()
    wait_for_eof(conn)
    assert connection.unread_verdict(conn) == "read"
    assert verdict_after(conn) == []
    conn.close()

