"""Streamed answers (lmi_gevent.streaming) through the real runtime and the emulator's relay.

"Nothing is buffered" is proven by a handshake, not a clock: the handler produces chunk k+1 only
after the test has received chunk k (it waits for a file the test creates once chunk k arrived).
A runtime that buffered any of the stream would never deliver chunk k, and the test would hang
and fail on its timeout.
"""

from __future__ import annotations

import base64
import json
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lmi_gevent.streaming import HTTP_INTEGRATION_CONTENT_TYPE, PRELUDE_SEPARATOR
from tests.support import start_runtime, wait_delivered

pytestmark = pytest.mark.timeout(90)

APP = """
import os, time
from lmi_gevent.streaming import StreamingResponse, http_stream

GATES = os.environ["GATES"]
live = {"now": 0, "max": 0}


def wait_gate(name):
    path = os.path.join(GATES, name)
    while not os.path.exists(path):
        time.sleep(0.005)  # gevent's sleep in concurrent mode: other streams run meanwhile


def gated(tag, count):
    live["now"] += 1
    live["max"] = max(live["max"], live["now"])
    try:
        for k in range(count):
            if k:
                wait_gate(f"{tag}-{k}")
            yield f"{tag}:{k};"
    finally:
        live["now"] -= 1


def handler(event, context):
    kind = event.get("kind")
    if kind == "gated":
        return StreamingResponse(gated(event["tag"], event["count"]), content_type="text/plain")
    if kind == "fail":
        def chunks():
            yield b"one;"
            yield b"two;"
            raise ValueError("the export broke at row 3")
        return StreamingResponse(chunks())
    if kind == "forever":
        def chunks():
            yield b"started;"
            while True:
                time.sleep(0.01)
        return StreamingResponse(chunks())
    if kind == "http":
        return http_stream(iter([b"<p>a</p>", b"<p>b</p>"]), status=201,
                           headers={"Content-Type": "text/html"}, cookies=["a=1", "b=2"])
    if kind == "max":
        return {"max_live": live["max"]}
    return {"plain": True}
"""


@pytest.fixture
def gates(tmp_path: Path) -> Path:
    path = tmp_path / "gates"
    path.mkdir()
    return path


def _start(emulator_factory, task_root, gates, concurrency=1, timeout=30.0, env=None):
    emu = emulator_factory(concurrency=concurrency, timeout=timeout)
    runtime = start_runtime(emu, task_root(app=APP), concurrency=concurrency,
                            env={"GATES": str(gates), **(env or {})})
    return emu, runtime


def _read_gated(reply, tag: str, count: int, gates: Path) -> list[bytes]:
    """Read the stream, opening gate k only after chunk k-1 arrived."""
    received = []
    for k, chunk in enumerate(reply.chunks()):
        received.append(chunk)
        (gates / f"{tag}-{k + 1}").touch()
    return received


@pytest.mark.parametrize("concurrency", [1, 4], ids=["sequential", "concurrent"])
def test_each_chunk_arrives_before_the_next_is_produced(emulator_factory, task_root, gates,
                                                        concurrency):
    emu, runtime = _start(emulator_factory, task_root, gates, concurrency)
    reply = emu.invoke_streaming({"kind": "gated", "tag": "s", "count": 5}, timeout=30)
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/plain"
    received = _read_gated(reply, "s", 5, gates)
    assert received == [f"s:{k};".encode() for k in range(5)], runtime.output()
    assert reply.complete and reply.trailers == {}
    posted = emu.answers(last=1)[0]
    assert posted["headers"]["lambda-runtime-function-response-mode"] == "streaming"
    assert posted["headers"]["transfer-encoding"] == "chunked"
    assert posted["invocation_id_echo"] == "ok"
    assert emu.stats()["streamed_responses"] == 1
    # The slot serves a plain invocation afterwards.
    assert emu.invoke({"kind": "plain"}).json() == {"plain": True}


def test_n_slow_streams_run_at_once(emulator_factory, task_root, gates):
    n = 4
    emu, runtime = _start(emulator_factory, task_root, gates, concurrency=n)
    replies = [emu.invoke_streaming({"kind": "gated", "tag": f"t{i}", "count": 3}, timeout=30)
               for i in range(n)]
    # Every stream delivers its first chunk while all n are held at their second gate: they
    # are all in flight together.
    firsts = [next(reply.chunks()) for reply in replies]
    assert firsts == [f"t{i}:0;".encode() for i in range(n)]
    stats = emu.stats()
    assert stats["in_flight"] == n and stats["max_in_flight"] == n
    assert stats["capacity_exceeded"] == 0

    def finish(i: int) -> list[bytes]:
        reply = replies[i]
        rest = []
        (gates / f"t{i}-1").touch()
        for k, chunk in enumerate(reply.chunks(), start=1):
            rest.append(chunk)
            (gates / f"t{i}-{k + 1}").touch()
        return rest

    with ThreadPoolExecutor(n) as pool:
        rests = list(pool.map(finish, range(n)))
    assert rests == [[f"t{i}:1;".encode(), f"t{i}:2;".encode()] for i in range(n)]
    assert emu.invoke({"kind": "max"}).json() == {"max_live": n}
    assert emu.stats()["streamed_responses"] == n


def test_exception_mid_stream_ends_it_with_the_error_trailers(emulator_factory, task_root, gates):
    emu, runtime = _start(emulator_factory, task_root, gates, concurrency=2)
    reply = emu.invoke_streaming({"kind": "fail"})
    assert list(reply.chunks()) == [b"one;", b"two;"]
    assert reply.complete
    assert reply.trailers["lambda-runtime-function-error-type"] == "ValueError"
    error = json.loads(base64.b64decode(reply.trailers["lambda-runtime-function-error-body"]))
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "the export broke at row 3"
    assert any("the export broke" in line or "raise ValueError" in line
               for line in error["stackTrace"])
    assert emu.stats()["stream_errors"] == 1
    # Logged as the official client logs an unhandled error.
    output = runtime.wait_for_output("the export broke at row 3")
    assert "[ERROR] ValueError: the export broke at row 3" in output


def test_http_stream_sends_the_prelude_then_eight_nuls_then_the_body(emulator_factory, task_root,
                                                                    gates):
    emu, _ = _start(emulator_factory, task_root, gates)
    reply = emu.invoke_streaming({"kind": "http"})
    assert reply.headers["content-type"] == HTTP_INTEGRATION_CONTENT_TYPE
    body = reply.body()
    prelude, sep, rest = body.partition(PRELUDE_SEPARATOR)
    assert sep and json.loads(prelude) == {"statusCode": 201, "headers": {"Content-Type": "text/html"},
                                           "cookies": ["a=1", "b=2"]}
    assert rest == b"<p>a</p><p>b</p>"


def test_deadline_reclaim_cuts_a_stream_with_the_timeout_trailers(emulator_factory, task_root, gates):
    emu, runtime = _start(emulator_factory, task_root, gates, concurrency=2, timeout=1.0,
                          env={"LMI_GEVENT_DEADLINE_GRACE": "1"})
    reply = emu.invoke_streaming({"kind": "forever"})
    assert next(reply.chunks()) == b"started;"
    # The emulator cuts the caller at the function timeout; the runtime reclaims the slot
    # a second later (a margin no busy machine eats) and ends its post with its own trailers.
    emu.wait_for(lambda s: s["stream_errors"] == 1, timeout=20)
    posted = emu.answers(last=1)[0]
    assert posted["headers"]["lambda-runtime-function-error-type"] == "Sandbox.Timedout"
    error = json.loads(base64.b64decode(posted["headers"]["lambda-runtime-function-error-body"]))
    assert "LMI_GEVENT_DEADLINE_GRACE" in error["errorMessage"]
    assert emu.invoke({"kind": "plain"}).json() == {"plain": True}
    assert emu.stats()["late_answers"] == 1


def test_drain_cuts_a_stream_with_the_shutdown_trailers(emulator_factory, task_root, gates):
    emu, runtime = _start(emulator_factory, task_root, gates, concurrency=2,
                          env={"LMI_GEVENT_DRAIN_TIMEOUT": "0.3"})
    reply = emu.invoke_streaming({"kind": "forever"})
    assert next(reply.chunks()) == b"started;"
    wait_delivered(emu, 1)
    runtime.send_signal(signal.SIGTERM)
    assert list(reply.chunks()) == []
    assert reply.complete
    assert reply.trailers["lambda-runtime-function-error-type"] == "Runtime.ShutdownBeforeAnswer"
    assert runtime.wait(timeout=20) == 0


def test_a_stream_whose_verdict_is_lost_is_never_posted_twice(emulator_factory, task_root, gates):
    # The emulator takes the whole stream, then resets the connection instead of answering
    # 202: delivery would retry a buffered answer, but a stream that went out must not be
    # sent again (it would be a second answer).
    emu, runtime = _start(emulator_factory, task_root, gates, concurrency=2)
    emu.inject("response", reset=True, accepted=True)
    reply = emu.invoke_streaming({"kind": "http"})
    prelude, _, rest = reply.body().partition(PRELUDE_SEPARATOR)
    assert rest == b"<p>a</p><p>b</p>" and reply.complete
    output = runtime.wait_for_output("cannot be sent again")
    assert "broke off after" in output
    stats = emu.stats()
    assert stats["streamed_responses"] == 1 and stats["repeated_answers"] == 0
    assert stats["invalid_request_ids"] == 0
    assert emu.invoke({"kind": "plain"}).json() == {"plain": True}
