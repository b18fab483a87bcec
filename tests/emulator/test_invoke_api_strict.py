"""The emulator's Invoke API (and the Runtime API, on the same reader) under hostile HTTP:
raw sockets send what RFC 9112 says to refuse; each test checks the status line, that the
connection closed, and that no invocation was made of it."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.emulator.raw_http import exchange, status_lines
from tests.support import start_runtime

pytestmark = pytest.mark.timeout(90)

INVOKE = "POST /2015-03-31/functions/function/invocations HTTP/1.1\r\nHost: a\r\n"
SMUGGLED = INVOKE.encode() + b"Content-Length: 2\r\n\r\n{}"
HOSTILE = {
    "content-length with transfer-encoding": (
        INVOKE.encode() + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    "space before the colon": (INVOKE.encode() + b"Content-Length : 2\r\n\r\n{}", 400),
    "obs-fold": (INVOKE.encode() + b"X-A: 1\r\n X-B: 2\r\nContent-Length: 2\r\n\r\n{}", 400),
    "chunk size 0x5": (INVOKE.encode() + b"Transfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n", 400),
    "chunk size 1_0": (INVOKE.encode() + b"Transfer-Encoding: chunked\r\n\r\n1_0\r\n" + b"1" * 10
                       + b"\r\n0\r\n\r\n", 400),
    "chunk size -5": (INVOKE.encode() + b"Transfer-Encoding: chunked\r\n\r\n-5\r\n{}\r\n0\r\n\r\n", 400),
    "signed content-length": (INVOKE.encode() + b"Content-Length: +2\r\n\r\n{}", 400),
    "two content-lengths": (INVOKE.encode() + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{} ", 400),
    "control character in the method": (b"PO\x01T /2015-03-31/functions/function/invocations HTTP/1.1\r\n\r\n", 400),
    "two spaces in the request line": (b"POST  /2015-03-31/functions/function/invocations HTTP/1.1\r\n\r\n", 400),
    "absolute-form": (b"POST http://evil/2015-03-31/functions/function/invocations HTTP/1.1\r\n\r\n", 400),
    "HTTP/2.0": (b"POST /2015-03-31/functions/function/invocations HTTP/2.0\r\n\r\n", 400),
    "NUL in a value": (INVOKE.encode() + b"X-A: 1\x002\r\nContent-Length: 2\r\n\r\n{}", 400),
    "gzip transfer coding": (INVOKE.encode() + b"Transfer-Encoding: gzip\r\n\r\n", 501),
    "a body past what is read": (INVOKE.encode() + b"Content-Length: 100000000\r\n\r\n", 413),
}


@pytest.fixture
def served(emulator_factory, task_root):
    emu = emulator_factory(concurrency=1, timeout=20)
    root = task_root(app="def handler(event, context):\n    return event\n")
    start_runtime(emu, root, "app.handler")
    parts = urlsplit(emu.invoke_url)
    return emu, parts.hostname, parts.port


def test_each_hostile_invoke_is_refused_and_closes_and_nothing_is_invoked(served):
    emu, host, port = served
    for label, (raw, status) in HOSTILE.items():
        reply = exchange(host, port, raw)
        assert status_lines(reply) == [status], (label, reply[:300])
        assert b"Connection: close" in reply, label
    stats = emu.stats()
    assert stats["invocations_received"] == 0 and stats["bad_requests"] == len(HOSTILE)
    assert emu.invoke({"still": "served"}).json() == {"still": "served"}


def test_the_invoke_api_refuses_oversized_payloads_and_bad_headers_by_name(served):
    emu, host, port = served
    too_big = b'"' + b"a" * (6 * 1024 * 1024) + b'"'
    reply = exchange(host, port, INVOKE.encode() + b"Content-Length: %d\r\n\r\n" % len(too_big) + too_big)
    assert status_lines(reply) == [413] and b"RequestEntityTooLargeException" in reply
    reply = exchange(host, port, INVOKE.encode() + b"X-Amz-Invocation-Type: Sometimes\r\n"
                     b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert status_lines(reply) == [400] and b"X-Amz-Invocation-Type" in reply
    reply = exchange(host, port, INVOKE.encode() + b"X-Amz-Client-Context: not-base64!\r\n"
                     b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert status_lines(reply) == [400] and b"InvalidRequestContentException" in reply
    assert emu.stats()["invocations_received"] == 0


def test_a_strict_reader_still_takes_what_clients_send(served):
    emu, host, port = served
    chunked = (INVOKE.encode() + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               b"2;ext=1\r\n{}\r\n0\r\nX-Trailer: t\r\n\r\n")
    reply = exchange(host, port, chunked)
    assert status_lines(reply) == [200] and reply.endswith(b"{}")
    tabbed = INVOKE.encode() + b"X-A:\t spaced \t\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    assert status_lines(exchange(host, port, tabbed)) == [200]
    assert emu.stats()["invocations_received"] == 2


def test_the_runtime_api_refuses_smuggling_too(served):
    emu, _, _ = served
    host, _, port = emu.runtime_api.rpartition(":")
    raw = (b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
           b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
    reply = exchange(host, int(port), raw)
    assert status_lines(reply) == [400]
    assert emu.stats()["init_error"] is None  # the smuggled init error never landed
    assert emu.invoke({"k": 1}).json() == {"k": 1}
