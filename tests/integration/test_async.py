"""``async def`` handlers and ASGI apps on the real runtime over loopback: both modes, one
event loop per process, overlap shown by counts (max in flight at the handler or at a
loopback server), lifespan once per worker, streamed chunks as the app sends them.
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.http import events
from tests.integration.test_concurrent import SlowServer
from tests.support import init_error, start_runtime

pytestmark = pytest.mark.timeout(120)

PLAIN = """
import asyncio, logging, os, sys, time

logger = logging.getLogger("plain")
state = {"now": 0, "max": 0}
lock = asyncio.Lock()  # made at import: bound to the process's one loop on first use


async def work(event, context):
    state["now"] += 1
    state["max"] = max(state["max"], state["now"])
    try:
        logger.warning("handler of %s", context.aws_request_id)
        async def child(n):
            await asyncio.sleep(0.01)
            logger.warning("task of %s", context.aws_request_id)
            return n
        children = await asyncio.gather(*(child(n) for n in range(3)))
        async with lock:
            await asyncio.sleep(event.get("seconds", 0))
        if event.get("raise"):
            raise ValueError("raised by the async handler")
        if event.get("exit"):
            sys.exit(3)
        return {"rid": context.aws_request_id, "children": children, "pid": os.getpid(),
                "loop": id(asyncio.get_running_loop())}
    finally:
        state["now"] -= 1


async def overlap(event, context):
    state["now"] += 1
    state["max"] = max(state["max"], state["now"])
    await asyncio.sleep(event["seconds"])
    seen = state["max"]
    state["now"] -= 1
    return {"max": seen}


def mixed(event, context):
    if event.get("kind") == "sync":  # a sync invocation with its own asyncio.run
        return {"sync": asyncio.run(asyncio.sleep(event["seconds"], result="ran")), "max": state["max"]}
    return overlap(event, context)  # a coroutine: awaited on the loop


async def holds_the_loop(event, context):
    state["now"] += 1
    state["max"] = max(state["max"], state["now"])
    time.sleep(event["seconds"])  # blocking inside async def: the loop waits with it
    state["now"] -= 1
    return {"max": state["max"]}


def blocking_mixed(event, context):
    if event.get("kind") == "sync":
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        time.sleep(event["seconds"])
        state["now"] -= 1
        return {"max": state["max"]}
    return holds_the_loop(event, context)


cancelled = []


async def stuck(event, context):
    try:
        if event.get("block"):
            time.sleep(event["seconds"])  # a blocked step: cancelled at its next await
        await asyncio.sleep(event["seconds"])
    except asyncio.CancelledError:
        cancelled.append(context.aws_request_id)
        logger.warning("cancelled %s", context.aws_request_id)
        raise
    return {"cancelled": list(cancelled)}


class Callable:
    async def __call__(self, event, context):
        return {"object": context.aws_request_id}


instance = Callable()
"""

FASTAPI = """
import asyncio, contextlib, os, time

import httpx
import requests
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from lmi_gevent.http import asgi_handler

MARKS = os.environ.get("APP_MARKS")


def mark(name):
    if MARKS:
        with open(os.path.join(MARKS, f"{name}-{os.getpid()}"), "a") as f:
            f.write("x")


@contextlib.asynccontextmanager
async def lifespan(app):
    mark("startup")
    async with httpx.AsyncClient(timeout=20) as client:
        yield {"client": client, "loop": id(asyncio.get_running_loop())}
    mark("shutdown")


app = FastAPI(lifespan=lifespan)


@app.get("/client")
async def client(request: Request, url: str):
    reply = await request.state.client.get(url)
    return {"status": reply.status_code, "pid": os.getpid(),
            "same_loop": request.state.loop == id(asyncio.get_running_loop())}


@app.get("/def")
def blocking_def(url: str):
    return {"status": requests.get(url, timeout=20).status_code}


@app.get("/blocking-async")
async def blocking_async(url: str):
    return {"status": requests.get(url, timeout=20).status_code}


@app.get("/pid")
async def pid():
    return {"pid": os.getpid()}


@app.get("/ticks")
async def ticks(go: str):
    async def produce():
        yield "data: first\\n\\n"
        while not os.path.exists(go):  # the test reads the first chunk, then lets it go on
            await asyncio.sleep(0.02)
        for n in range(3):
            yield f"data: tick {n}\\n\\n"

    return StreamingResponse(produce(), media_type="text/event-stream")


handler = asgi_handler(app)
streamed = asgi_handler(app, streaming=True)
"""

CPU_ON_THE_LOOP = """
import asyncio, time


async def handler(event, context):
    await asyncio.sleep(0.01)
    end = time.perf_counter() + 0.2
    while time.perf_counter() < end:  # an await-less stretch of CPU: every slot waits
        pass
    return {"done": True}
"""

BROKEN_STARTUP = """
import contextlib
from fastapi import FastAPI
from lmi_gevent.http import asgi_handler


@contextlib.asynccontextmanager
async def lifespan(app):
    raise RuntimeError("the database is not there")
    yield


handler = asgi_handler(FastAPI(lifespan=lifespan))
"""


@pytest.fixture
def app(task_root) -> Path:  # type: ignore[no-untyped-def]
    return task_root(plain=PLAIN, web=FASTAPI, broken=BROKEN_STARTUP, cpu=CPU_ON_THE_LOOP)


class WideServer(SlowServer):
    request_queue_size = 64  # 16 connects at once overflow the default backlog of 5


@pytest.fixture
def slow_server() -> Iterator[SlowServer]:
    server = WideServer(delay=1.0)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(server.serve_forever)
        try:
            yield server
        finally:
            server.shutdown()
            server.server_close()


def get(path: str, **query: str) -> dict[str, Any]:
    from urllib.parse import urlencode
    return events.http_v2(path, raw_query=urlencode(query))


def body(result) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    answer = result.json()
    assert answer["statusCode"] == 200, answer
    return json.loads(answer["body"])


# --- plain async def handlers ----------------------------------------------------------------------

@pytest.mark.parametrize("concurrency", [1, 4])
def test_an_async_handler_is_answered_like_any_other_in_both_modes(emulator_factory, app, concurrency) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=concurrency, timeout=30)
    runtime = start_runtime(emulator, app, "plain.work", concurrency=concurrency)
    payloads = [{}, {"raise": True}, {"exit": True}, {}, {}]
    results = emulator.invoke_many(payloads, parallel=concurrency)
    ok = [r for r, p in zip(results, payloads, strict=True) if not p]
    assert all(r.function_error is None for r in ok), runtime.output()
    assert {r.json()["children"] == [0, 1, 2] for r in ok} == {True}
    assert len({r.json()["loop"] for r in ok}) == 1  # one loop for every invocation
    assert results[1].function_error == "Unhandled" and results[1].json()["errorType"] == "ValueError"
    assert results[1].json()["stackTrace"][0].startswith('  File "')
    assert "plain.py" in results[1].json()["stackTrace"][0]  # the handler's frame comes first
    assert results[2].json()["errorType"] == "SystemExit"
    assert runtime.returncode is None, runtime.output()  # SystemExit stopped neither loop nor slot
    records = [line.split("\t") for line in runtime.output().split("\n")
               if line.startswith("[WARNING]") and " of " in line]
    assert len(records) == 4 * len(payloads), runtime.output()
    for _, _, request_id, message in records:  # the handler's lines and its tasks' lines
        assert message.endswith(f" of {request_id}"), runtime.output()
    assert emulator.invoke({}).function_error is None  # still serving


def test_an_async_callable_object_is_awaited(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=1, timeout=30)
    start_runtime(emulator, app, "plain.instance")
    result = emulator.invoke({})
    assert result.function_error is None and result.json()["object"]


def test_async_invocations_overlap_beside_sync_ones_that_call_asyncio_run(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    n = 16
    emulator = emulator_factory(concurrency=n, timeout=60)
    runtime = start_runtime(emulator, app, "plain.mixed", concurrency=n)
    payloads = [{"seconds": 1.0} if i % 2 else {"kind": "sync", "seconds": 1.0} for i in range(n)]
    results = emulator.invoke_many(payloads, parallel=n)
    assert all(r.function_error is None for r in results), runtime.output()
    assert [r.json()["sync"] for r in results[::2]] == ["ran"] * (n // 2)
    # Every async invocation was on the loop at once, while the sync ones ran their own loops.
    assert max(r.json()["max"] for r in results[1::2]) == n // 2, runtime.output()
    assert emulator.stats()["max_in_flight"] >= n // 2 + 2


# --- ASGI apps (FastAPI) ------------------------------------------------------------------------

def test_a_lifespan_client_serves_16_overlapping_invocations(emulator_factory, app, slow_server) -> None:  # type: ignore[no-untyped-def]
    n = 16
    emulator = emulator_factory(concurrency=n, timeout=60)
    runtime = start_runtime(emulator, app, "web.handler", concurrency=n)
    results = emulator.invoke_many([get("/client", url=slow_server.url)] * n, parallel=n)
    answers = [body(r) for r in results]
    assert all(a["status"] == 200 and a["same_loop"] for a in answers), runtime.output()
    assert slow_server.max == n, f"at most {slow_server.max} of {n} at once at the server"


@pytest.mark.parametrize("endpoint", ["/def", "/client", "/blocking-async"])
def test_def_async_and_blocking_async_endpoints_overlap(emulator_factory, app, slow_server, endpoint) -> None:  # type: ignore[no-untyped-def]
    n = 8
    emulator = emulator_factory(concurrency=n, timeout=60)
    runtime = start_runtime(emulator, app, "web.handler", concurrency=n)
    results = emulator.invoke_many([get(endpoint, url=slow_server.url)] * n, parallel=n)
    assert all(body(r)["status"] == 200 for r in results), runtime.output()
    assert slow_server.max == n, f"{endpoint}: at most {slow_server.max} of {n} at once"


def test_blocking_calls_inside_async_handlers_overlap_with_each_other_and_sync_ones(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    # time.sleep inside async def holds only its own task (docs/async.md): 4 blockers on the
    # loop and 4 sync invocations, all 8 at once.
    n = 8
    emulator = emulator_factory(concurrency=n, timeout=60)
    runtime = start_runtime(emulator, app, "plain.blocking_mixed", concurrency=n)
    payloads = [{"seconds": 1.0} if i % 2 else {"kind": "sync", "seconds": 1.0} for i in range(n)]
    results = emulator.invoke_many(payloads, parallel=n)
    assert all(r.function_error is None for r in results), runtime.output()
    assert max(r.json()["max"] for r in results) == n, runtime.output()


def test_lifespan_runs_once_per_worker_and_shuts_down_on_sigterm(emulator_factory, app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marks = tmp_path / "marks"
    marks.mkdir()
    n = 8
    emulator = emulator_factory(concurrency=n, timeout=60)
    runtime = start_runtime(emulator, app, "web.handler", concurrency=n,
                            env={"LMI_GEVENT_WORKERS": "2", "APP_MARKS": str(marks)})
    results = emulator.invoke_many([get("/pid")] * (3 * n), parallel=n)
    pids = {body(r)["pid"] for r in results}
    started = {p.name: p.read_text() for p in marks.iterdir() if p.name.startswith("startup-")}
    assert started == {f"startup-{pid}": "x" for pid in pids} and len(pids) == 2, runtime.output()
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(30) == 0, runtime.output()
    stopped = sorted(p.name for p in marks.iterdir() if p.name.startswith("shutdown-"))
    assert stopped == sorted(f"shutdown-{pid}" for pid in pids), runtime.output()


def test_a_failed_lifespan_startup_is_an_init_error(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=4, timeout=30)
    runtime = start_runtime(emulator, app, "broken.handler", concurrency=4, wait=False)
    assert runtime.wait(30) != 0, runtime.output()
    error_type, error = init_error(emulator)
    assert error["errorType"] == "LifespanFailure", error
    assert "the database is not there" in error["errorMessage"]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_stream_reaches_the_caller_as_the_app_sends_it(emulator_factory, app, tmp_path, concurrency) -> None:  # type: ignore[no-untyped-def]
    go = tmp_path / "go"
    emulator = emulator_factory(concurrency=concurrency, timeout=30)
    runtime = start_runtime(emulator, app, "web.streamed", concurrency=concurrency)
    reply = emulator.invoke_streaming(events.function_url("/ticks", raw_query=f"go={go}"))
    arrivals: list[tuple[float, bytes]] = []
    for chunk in reply.chunks():
        arrivals.append((time.monotonic(), chunk))
        if b"data: first" in chunk and not go.exists():
            go.write_text("go")  # the rest is produced only now: a buffered answer would hang
    data = b"".join(chunk for _, chunk in arrivals)
    assert reply.complete, runtime.output()
    prelude, _, stream = data.partition(b"\0" * 8)
    assert json.loads(prelude)["headers"]["content-type"].startswith("text/event-stream")
    assert stream == b"data: first\n\n" + b"".join(b"data: tick %d\n\n" % n for n in range(3))
    first_at = next(at for at, chunk in arrivals if b"data: first" in chunk)
    assert first_at < next(at for at, chunk in arrivals if b"tick 0" in chunk)
    reply.close()
    assert os.path.exists(go)


def test_check_names_the_async_invocation_and_line_that_held_the_loop(app) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "lmi_gevent", "check", "cpu.handler", "--root",
                           str(app), "--json"], capture_output=True, text=True, timeout=100, cwd=app)
    report = json.loads(done.stdout)
    stalls = [f for f in report["findings"] if f["kind"] == "stall"]
    assert stalls, report
    assert any("cpu.py:" in f["message"] for f in stalls), stalls
    assert all("invocation None" not in f["message"] for f in stalls), stalls  # the request id
    assert report["ok"] is False


def test_more_def_endpoints_at_once_than_anyios_default_40_threads(emulator_factory, app, slow_server) -> None:  # type: ignore[no-untyped-def]
    # anyio lets 40 to_thread calls run at once per loop; asgi_handler sizes it for the slots.
    n = 48
    emulator = emulator_factory(concurrency=n, timeout=60)
    runtime = start_runtime(emulator, app, "web.handler", concurrency=n)
    results = emulator.invoke_many([get("/def", url=slow_server.url)] * n, parallel=n)
    assert all(body(r)["status"] == 200 for r in results), runtime.output()
    assert slow_server.max == n, f"at most {slow_server.max} of {n} at once"


def test_an_async_invocation_past_its_deadline_is_cut_its_task_cancelled_its_slot_reclaimed(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    n = 2
    emulator = emulator_factory(concurrency=n, timeout=1)
    runtime = start_runtime(emulator, app, "plain.stuck", concurrency=n,
                            env={"LMI_GEVENT_DEADLINE_GRACE": "0.2"})
    results = emulator.invoke_many([{"seconds": 60}, {"seconds": 3, "block": True}], parallel=n)
    assert all(r.function_error == "Unhandled" for r in results)  # the platform's own timeout
    emulator.wait_for(lambda s: s["open_polls"] == n, timeout=10)  # both slots reclaimed
    runtime.wait_for_output(lambda text: text.count("cancelled ") >= 2, timeout=10)
    assert emulator.stats()["late_answers"] == n, runtime.output()
    answer = emulator.invoke({"seconds": 0}, timeout=10)
    assert answer.function_error is None and len(answer.json()["cancelled"]) == 2
