"""``local --function-url`` under hostile HTTP: raw sockets send what RFC 9112 says to refuse,
and each test checks the status line, that the connection closed after it, and (from the
emulator's counters) that nothing reached the function. One test runs the real
``lmi-gevent local --function-url`` process."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.emulator.raw_http import exchange, status_lines
from tests.support import REPO, start_runtime, stop

pytestmark = pytest.mark.timeout(120)
# What HTTP forbids in a header name (not a token) and value (controls but HTAB).
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

HANDLER = """
import json
from lmi_gevent.http import wsgi_handler


def echo(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"rawPath": event["rawPath"], "rawQueryString": event["rawQueryString"],
                                "headers": event["headers"], "cookies": event.get("cookies", []),
                                "bodyLength": len(event.get("body") or "")})}


def hostile(event, context):
    path = event["rawPath"]
    if path == "/cookie":
        return {"statusCode": 200, "cookies": ["a=1\\r\\nSet-Cookie: evil=1"], "body": "x"}
    if path == "/name":
        return {"statusCode": 200, "headers": {"Bad Name": "1"}, "body": "x"}
    if path == "/empty":
        return {"statusCode": 204, "body": "ignored"}
    target = event.get("queryStringParameters", {}).get("to", "/")
    return {"statusCode": 302, "headers": {"Location": target}, "body": ""}


def redirect_app(environ, start_response):
    from urllib.parse import parse_qs
    target = parse_qs(environ["QUERY_STRING"]).get("to", ["/"])[0]
    start_response("302 Found", [("Location", target), ("Content-Type", "text/plain")])
    return [b"moved"]


app = wsgi_handler(redirect_app)
stream = wsgi_handler(redirect_app, streaming=True)
"""


@pytest.fixture
def url(emulator_factory, task_root):
    """Start a Function URL on ``handler`` (of HANDLER); returns (emulator, host, port)."""
    def start(handler: str = "app.echo"):
        emu = emulator_factory(concurrency=2, timeout=20, function_url=True)
        start_runtime(emu, task_root(app=HANDLER), handler, concurrency=2)
        parts = urlsplit(emu.function_url)
        return emu, parts.hostname, parts.port
    return start


def served(emu) -> int:
    return emu.stats()["invocations_received"]


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
HOSTILE = {
    "content-length with transfer-encoding": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED, 400),
    "transfer-encoding with content-length": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED, 400),
    "space before the colon": (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n" + SMUGGLED, 400),
    "control character in the method": (b"G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n X-Injected: 2\r\n\r\n" + SMUGGLED, 400),
    "obs-fold with a tab": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tmore\r\n\r\n", 400),
    "chunk size 0x5": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"0x5\r\nhello\r\n0\r\n\r\n" + SMUGGLED, 400),
    "chunk size 1_0": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n", 400),
    "chunk size -5": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"-5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk size +5": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"+5\r\nhello\r\n0\r\n\r\n", 400),
    "signed content-length": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    "two different content-lengths": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    "two host headers": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "no host header": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "a host that is no host": (b"GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n", 400),
    "bare CR in a value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rX-B: 2\r\n\r\n", 400),
    "NUL in a value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x002\r\n\r\n", 400),
    "a target that is no path": (b"GET abs HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "asterisk-form": (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "authority-form": (b"CONNECT evil.example:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "a fragment in the target": (b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "raw UTF-8 in the target": ("GET /café HTTP/1.1\r\nHost: a\r\n\r\n".encode(), 400),
    "a space in the target": (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "HTTP/2.0 on an HTTP/1 connection": (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    "not HTTP at all": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40 + b"\r\n\r\n", 400),
    "unsupported transfer-encoding": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    "a header line of 70 KiB": (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    "300 header fields": (b"GET / HTTP/1.1\r\nHost: a\r\n"
                          + b"".join(b"X-F%d: %d\r\n" % (k, k) for k in range(300)) + b"\r\n", 431),
    "a body larger than any event": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7000000\r\n\r\n", 413),
}


def test_each_hostile_request_is_refused_with_its_status_and_nothing_else_is_served(url):
    emu, host, port = url()
    for label, (raw, status) in HOSTILE.items():
        reply = exchange(host, port, raw)
        assert status_lines(reply) == [status], (label, reply[:300])
        assert b"Connection: close" in reply.split(b"\r\n\r\n", 1)[0], label
    stats = emu.stats()
    # Not one of them, nor a request smuggled behind one, reached the function.
    assert stats["invocations_received"] == 0 and stats["function_url_requests"] == 0
    assert stats["bad_requests"] == len(HOSTILE)
    # The server is still there for a well-formed request.
    assert status_lines(exchange(host, port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")) == [200]
    assert served(emu) == 1


def test_the_same_refusals_hold_when_the_bytes_arrive_one_by_one(url):
    emu, host, port = url()
    for label in ("content-length with transfer-encoding", "obs-fold", "chunk size 0x5"):
        raw, status = HOSTILE[label]
        pieces = [raw[k:k + 1] for k in range(len(raw))]
        with socket.create_connection((host, port), timeout=5) as sock:
            for piece in pieces:
                try:
                    sock.sendall(piece)
                except OSError:
                    break  # the server refused and closed before the rest
            reply = sock.recv(65536)
        assert status_lines(reply) == [status], label
    assert served(emu) == 0


def test_absolute_form_becomes_the_path_and_its_authority_the_host(url):
    emu, host, port = url()
    reply = exchange(host, port, b"GET http://evil.example/abs?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert status_lines(reply) == [200]
    seen = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert seen["rawPath"] == "/abs" and seen["rawQueryString"] == "x=1"
    assert seen["headers"]["host"] == "evil.example"


def test_pipelined_requests_are_each_answered_in_order(url):
    emu, host, port = url()
    reply = exchange(host, port, b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                     b"GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert status_lines(reply) == [200, 200, 200]
    paths = re.findall(rb'"rawPath": "([^"]*)"', reply)
    assert paths == [b"/one", b"/two", b"/three"] and served(emu) == 3


def test_a_good_request_then_a_bad_one_on_the_same_connection(url):
    emu, host, port = url()
    reply = exchange(host, port, b"GET /good HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"GET / HTTP/1.1\r\nHost : a\r\n\r\n" + SMUGGLED)
    assert status_lines(reply) == [200, 400] and served(emu) == 1


def test_the_413_is_measured_on_the_event_with_its_base64_inflation(url):
    emu, host, port = url()
    binary = os.urandom(5 * 1024 * 1024)  # 5 MiB raw, ~6.7 MiB once base64 in the event
    head = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
    reply = exchange(host, port, head % len(binary), binary)
    assert status_lines(reply) == [413] and b"6291456" in reply
    text = b"a" * (4 * 1024 * 1024)  # the same order of size as text fits
    reply = exchange(host, port, head.replace(b"application/octet-stream", b"text/plain") % len(text)
                     + text[:0], text)
    assert status_lines(reply) == [200]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["bodyLength"] == len(text)
    assert served(emu) == 1


def test_a_chunked_body_past_the_limit_is_refused_while_it_arrives(url):
    emu, host, port = url()
    chunk = b"a" * 65536
    pieces = [b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"]
    pieces += [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 100  # 6.25 MiB
    pieces.append(b"0\r\n\r\n")
    with socket.create_connection((host, port), timeout=10) as sock:
        try:
            for piece in pieces:
                sock.sendall(piece)
        except OSError:
            pass  # refused and closed before the end, as it should
        reply = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
        except (socket.timeout, ConnectionResetError):
            pass
    assert status_lines(reply) == [413] and served(emu) == 0


def test_percent_encoding_utf8_and_many_cookies_reach_the_event_as_sent(url):
    emu, host, port = url()
    cookies = "; ".join(f"c{k}=v{k}" for k in range(500))
    raw = (f"GET /caf%C3%A9/%2F%zz?q=%20x&r=caf%C3%A9 HTTP/1.1\r\nHost: a\r\nX-Name: café\r\n"
           f"X-Twice: 1\r\nx-twice: 2\r\nX-Latin: \udcff\r\n"
           f"Cookie: {cookies}\r\nConnection: close\r\n\r\n").encode("utf-8", "surrogateescape")
    reply = exchange(host, port, raw)
    assert status_lines(reply) == [200]
    seen = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert seen["rawPath"] == "/caf%C3%A9/%2F%zz" and seen["rawQueryString"] == "q=%20x&r=caf%C3%A9"
    assert seen["headers"]["x-name"] == "café"  # UTF-8 read as UTF-8
    assert seen["headers"]["x-latin"] == "\u00ff"  # a byte that is not UTF-8, as Latin-1
    assert seen["headers"]["x-twice"] == "1,2"  # repeats comma-joined, as Function URLs do
    assert len(seen["cookies"]) == 500 and seen["cookies"][-1] == "c499=v499"


def test_a_slow_sender_stalls_no_other_client(url):
    emu, host, port = url()
    slow = socket.create_connection((host, port), timeout=10)
    try:
        slow.sendall(b"GET /slow HTTP/1.1\r\nHo")  # and holds the rest back
        quick = [exchange(host, port, b"GET /quick HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                 for _ in range(5)]
        assert all(status_lines(reply) == [200] for reply in quick)
        assert served(emu) == 5  # served while the slow request was still incomplete
        slow.sendall(b"st: a\r\nConnection: close\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
            data = slow.recv(65536)
            if not data:
                break
            reply += data
        assert status_lines(reply) == [200] and b"/slow" in reply
    finally:
        slow.close()
    assert served(emu) == 6


@pytest.mark.parametrize("handler,target", [
    ("app.hostile", "/redirect?to=/x%0d%0aSet-Cookie:%20evil=1"),
    ("app.hostile", "/cookie"),
    ("app.hostile", "/name"),
])
def test_a_plain_handlers_forbidden_header_is_a_502_naming_it_never_sent(url, handler, target):
    emu, host, port = url(handler)
    reply = exchange(host, port, f"GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
    head, _, body = reply.partition(b"\r\n\r\n")
    assert status_lines(reply) == [502]
    assert b"evil" not in head and b"Bad Name" not in head
    assert b"header" in body  # the message names what was refused


@pytest.mark.parametrize("handler", ["app.app", "app.stream"])
def test_the_issues_redirect_through_wsgi_handler_is_a_500_with_no_injected_cookie(url, handler):
    emu, host, port = url(handler)
    raw = b"GET /redirect?to=/x%0d%0aSet-Cookie:%20evil=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    reply = exchange(host, port, raw)
    head = reply.partition(b"\r\n\r\n")[0]
    assert status_lines(reply) == [500] and b"evil" not in reply and b"Location" not in head
    clean = exchange(host, port, b"GET /redirect?to=/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert status_lines(clean) == [302] and b"Location: /x\r\n" in clean


def test_the_real_local_process_refuses_a_smuggled_request(tmp_path, task_root):
    marks = tmp_path / "invocations"
    root = task_root(app=f"""
def handler(event, context):
    with open({str(marks)!r}, "a") as out:
        out.write(event["rawPath"] + "\\n")
    return {{"statusCode": 200, "body": event["rawPath"]}}
""")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop("AWS_LAMBDA_MAX_CONCURRENCY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmi_gevent", "local", "app.handler", "--function-url", "--port", "0"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 30
        found = None
        while found is None and time.monotonic() < deadline:
            found = re.search(r"Function URL http://([\d.]+):(\d+)/", "".join(lines))
            time.sleep(0.05)
        assert found, "".join(lines)
        host, port = found.group(1), int(found.group(2))
        while time.monotonic() < deadline:  # until the runtime serves
            if status_lines(exchange(host, port, b"GET /ready HTTP/1.1\r\nHost: a\r\n"
                                                 b"Connection: close\r\n\r\n")) == [200]:
                break
            time.sleep(0.1)
        raw, status = HOSTILE["content-length with transfer-encoding"]
        assert status_lines(exchange(host, port, raw)) == [status]
        # One slot, served in order: a smuggled request would have run before this one.
        after = exchange(host, port, b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert status_lines(after) == [200]
        assert marks.read_text().split() == ["/ready", "/after"]
    finally:
        stop(proc)


def test_head_answers_carry_no_body_and_100_continue_is_honoured(url):
    emu, host, port = url()
    reply = exchange(host, port, b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"GET /g HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    head_answer, _, rest = reply.partition(b"\r\n\r\n")
    assert status_lines(head_answer) == [200] and rest.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"rawPath": "/g"' in rest and b"/h" not in rest  # the HEAD's body was not sent
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"POST /c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
                     b"Connection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 ")
        sock.sendall(b"{}")
        reply = b""
        while not reply.endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    assert status_lines(reply) == [200] and b'"bodyLength": 2' in reply
    assert served(emu) == 3


def test_a_request_that_never_completes_is_a_408(monkeypatch):
    """In process, on a gevent socket pair, with the deadline shortened."""
    from gevent import socket as gsocket

    from lmi_gevent.emulator import function_url_http
    from lmi_gevent.emulator.connection import Connection

    monkeypatch.setattr(function_url_http, "REQUEST_SECONDS", 0.2)
    server, client = gsocket.socketpair()
    try:
        client.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n")  # the blank line never comes
        reader = function_url_http.Reader(Connection(server))
        with pytest.raises(function_url_http.Refused) as refused:
            reader.next_request()
        assert refused.value.status == 408
        reader.refuse(refused.value)
        assert client.recv(100).startswith(b"HTTP/1.1 408 ")
    finally:
        server.close()
        client.close()


answer_names = st.one_of(st.text(max_size=10), st.sampled_from(["Location", "Set-Cookie", "X-A"]))
answer_values = st.one_of(st.text(alphabet=st.characters(max_codepoint=0x2FF), max_size=16),
                          st.integers(), st.none())


@settings(max_examples=300, deadline=None)
@given(headers=st.dictionaries(answer_names, answer_values, max_size=4),
       cookies=st.lists(st.text(alphabet=st.characters(max_codepoint=0x2FF), max_size=16), max_size=3))
def test_no_function_url_answer_ever_carries_a_forbidden_byte(headers, cookies):
    from lmi_gevent.emulator import function_url

    document = json.dumps({"statusCode": 200, "headers": headers, "cookies": cookies, "body": "x"})
    try:
        _, fields, _ = function_url.buffered_response("application/json", document.encode(), False)
    except function_url.BadAnswer as refused:
        assert "header" in str(refused)  # names what it refused
        return
    for name, value in fields:
        assert TOKEN.match(name) and not FORBIDDEN.search(value), (name, value)


def test_a_204_goes_out_without_a_body_and_the_connection_stays_in_step(url):
    emu, host, port = url("app.hostile")
    reply = exchange(host, port, b"GET /empty HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"GET /redirect?to=/next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert status_lines(reply) == [204, 302]
    first = reply.split(b"HTTP/1.1 302", 1)[0]
    assert b"ignored" not in reply and b"Content-Length" not in first
