"""Concurrent mode (AWS_LAMBDA_MAX_CONCURRENCY=N): capacity, overlap, isolation, drain, faults.

Concurrency is shown by counts — the emulator's in-flight and poll counters and a counter kept
by the handler itself — never by tight wall-clock asserts.
"""

from __future__ import annotations

import http.server
import json
import re
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from tests.support import start_runtime, wait_delivered

pytestmark = pytest.mark.timeout(90)

APP = """
import concurrent.futures, logging, os, signal, sys, threading, time
import requests
from gevent import spawn  # bound at import, as a handler module would
from gevent.pool import Pool

logger = logging.getLogger("app")


class AlarmExpired(Exception):
    pass


def on_alarm(signum, frame):
    raise AlarmExpired(os.environ.get("_X_AMZN_TRACE_ID"))


def on_usr1(signum, frame):
    raise RuntimeError("raised by the function's SIGUSR1 handler")


signal.signal(signal.SIGUSR1, on_usr1)
state = {"now": 0, "max": 0}
turns = {}

def handler(event, context):
    state["now"] += 1
    state["max"] = max(state["max"], state["now"])
    try:
        return act(event, context)
    finally:
        state["now"] -= 1

def act(event, context):
    action = event.get("action")
    if action == "sleep":
        time.sleep(event["seconds"])
        return {"max_overlap": state["max"], "rid": context.aws_request_id}
    if action == "get":
        text = requests.get(event["url"], timeout=10).text
        return {"max_overlap": state["max"], "body": text}
    if action == "exit":
        time.sleep(event.get("seconds", 0))
        sys.exit(4)
    if action == "interrupt":
        raise KeyboardInterrupt
    if action == "trace":
        import subprocess
        before = os.environ.get("_X_AMZN_TRACE_ID")
        time.sleep(event["seconds"])
        child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['_X_AMZN_TRACE_ID'])"],
                               capture_output=True, text=True).stdout.strip()
        return {"before": before, "after": os.environ.get("_X_AMZN_TRACE_ID"),
                "ctx": context.xray_trace_id, "rid": context.aws_request_id, "child": child}
    if action == "botocore":
        import boto3
        from botocore.config import Config
        client = boto3.client("sts", endpoint_url=event["url"], region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing",
                              config=Config(user_agent_extra="invocation/" + str(event["i"]),
                                            retries={"max_attempts": 1}))
        client.get_caller_identity()
        return {"i": event["i"]}
    if action == "fanout":
        rid = context.aws_request_id

        def work(kind):
            time.sleep(0.05)  # the invocations' workers overlap
            logger.warning("%s of %s", kind, rid)
            return os.environ.get("_X_AMZN_TRACE_ID")

        if "executor" not in state:  # made by the first invocation, shared by all
            state["executor"] = concurrent.futures.ThreadPoolExecutor(2)
        traces = [state["executor"].submit(work, "executor").result()]
        traces += state["executor"].map(work, ["executor-map"])
        box = []
        thread = threading.Thread(target=lambda: box.append(work("thread")))
        thread.start()
        thread.join()
        traces += box
        traces.append(spawn(work, "spawn").get())
        traces += Pool(2).map(work, ["pool", "pool"])
        return {"traces": traces}
    if action == "alarm":  # the SIGALRM timeout pattern from AWS's guides
        signal.signal(signal.SIGALRM, on_alarm)
        if event.get("alarm"):
            signal.alarm(event["alarm"])
        try:
            time.sleep(event["seconds"])
            return {"slept": True}
        except AlarmExpired as expired:
            return {"interrupted": True, "handler_saw_trace": expired.args[0]}
        finally:
            signal.alarm(0)
    if action == "asyncio":
        import asyncio

        async def main():
            loop = asyncio.get_running_loop()
            await asyncio.sleep(event["seconds"])  # the other invocations' loops run meanwhile
            await asyncio.wait_for(asyncio.to_thread(time.sleep, 0.05), timeout=5)
            return {"loop": id(loop), "same_loop": asyncio.get_running_loop() is loop,
                    "task": asyncio.current_task() is not None, "max_overlap": state["max"]}

        result = asyncio.run(main())
        result["loop_after"] = asyncio.events._get_running_loop() is not None
        return result
    if action == "spin":
        import gevent
        turns[id(gevent.getcurrent())] = turns.get(id(gevent.getcurrent()), 0) + 1
        end = time.perf_counter() + event["seconds"]
        while time.perf_counter() < end:
            pass
        return sorted(turns.values())
    if action == "log":
        for n in range(event["lines"]):
            logger.warning("line %d of %s", n, context.aws_request_id)
            print(f"print {n} of {context.aws_request_id} " + "x" * 200)
            time.sleep(0.001)
        return "logged"
    return {"echo": event}
"""


@pytest.fixture
def app(task_root) -> Path:  # type: ignore[no-untyped-def]
    return task_root(app=APP)


class SlowServer(http.server.ThreadingHTTPServer):
    """A loopback HTTP server that answers after ``delay`` and counts concurrent requests."""

    daemon_threads = True

    def __init__(self, delay: float, body: bytes = b"slow answer") -> None:
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        self.delay, self.body = delay, body
        self.lock = threading.Lock()
        self.now = self.max = 0
        self.seen: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _serve(self) -> None:
        server: SlowServer = self.server  # type: ignore[assignment]
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with server.lock:
            server.now += 1
            server.max = max(server.max, server.now)
            server.seen.append(dict(self.headers))
        time.sleep(server.delay)
        with server.lock:
            server.now -= 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(server.body)))
        self.send_header("Content-Type", "text/xml")
        self.end_headers()
        self.wfile.write(server.body)

    do_GET = do_POST = _serve


@pytest.fixture
def slow_server() -> Iterator[SlowServer]:
    server = SlowServer(delay=0.3)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("n", [2, 8])
def test_sleeping_handlers_overlap_n_at_a_time_and_never_more(emulator_factory, app, n) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=n, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=n)
    assert emulator.stats()["open_polls"] == n  # idle: exactly N polls
    results = emulator.invoke_many([{"action": "sleep", "seconds": 0.2}] * (4 * n), parallel=4 * n)
    assert all(r.status == 200 for r in results), runtime.output()
    assert max(r.json()["max_overlap"] for r in results) == n
    stats = emulator.wait_for(lambda s: s["open_polls"] == n, timeout=10)
    assert stats["max_in_flight"] == n
    assert stats["max_polls_plus_in_flight"] <= n
    assert stats["answered"] == 4 * n and stats["capacity_exceeded"] == 0
    assert len({r.json()["rid"] for r in results}) == 4 * n


def test_requests_handler_overlaps_against_a_slow_local_server(emulator_factory, app, slow_server) -> None:  # type: ignore[no-untyped-def]
    n = 6
    emulator = emulator_factory(concurrency=n, timeout=30)
    start_runtime(emulator, app, concurrency=n)
    results = emulator.invoke_many([{"action": "get", "url": slow_server.url}] * (2 * n), parallel=2 * n)
    assert {r.json()["body"] for r in results} == {"slow answer"}
    assert slow_server.max == n  # the server saw N requests at once: requests cooperated
    assert emulator.stats()["max_in_flight"] == n


def test_slots_take_turns_under_cpu_contention(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    # CPU-bound invocations while another process competes for the CPU: each slot's /next
    # answer tends to arrive before the slot reads it, so without an explicit yield between
    # invocations a few slots served everything and the others waited seconds.
    n = 8
    emulator = emulator_factory(concurrency=n, timeout=60)
    start_runtime(emulator, app, concurrency=n, env={"LMI_GEVENT_STALL_THRESHOLD": "off"})
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 3

        def caller(_: int) -> list[int]:
            turns = []
            while time.monotonic() < deadline:
                turns = emulator.invoke({"action": "spin", "seconds": 0.01}).json()
            return turns

        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(caller, range(n)))
    finally:
        spinner.kill()
        spinner.wait()
    turns = max(results, key=sum)  # the latest snapshot of every slot's count
    assert len(turns) == n, turns
    assert min(turns) * 3 >= max(turns), f"slots starved: {turns}"


def test_sys_exit_and_keyboard_interrupt_answer_their_invocation_only(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    n = 4
    emulator = emulator_factory(concurrency=n, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=n)
    payloads = [{"action": "exit", "seconds": 0.1}, {"action": "interrupt"}] + \
               [{"action": "sleep", "seconds": 0.2}] * 6
    results = emulator.invoke_many(payloads, parallel=len(payloads))
    assert results[0].json()["errorType"] == "SystemExit"
    assert results[1].json()["errorType"] == "KeyboardInterrupt"
    assert all(r.status == 200 and r.function_error is None for r in results[2:])
    stats = emulator.wait_for(lambda s: s["open_polls"] == n, timeout=10)  # no slot was lost
    assert runtime.returncode is None and stats["answered"] == len(payloads)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_trace_id_is_per_invocation_for_legacy_environ_readers_and_child_processes(emulator_factory, app, workers) -> None:  # type: ignore[no-untyped-def]
    n = 4
    emulator = emulator_factory(concurrency=n, timeout=30)
    start_runtime(emulator, app, concurrency=n, env={"LMI_GEVENT_WORKERS": workers})
    traces = [f"Root=1-00000000-00000000000000000000000{i};Sampled=1" for i in range(n)]

    def call(i: int):  # type: ignore[no-untyped-def]
        return emulator.invoke({"action": "trace", "seconds": 0.3}, trace_id=traces[i]).json()

    with ThreadPoolExecutor(n) as pool:
        bodies = list(pool.map(call, range(n)))
    for trace, body in zip(traces, bodies, strict=True):
        assert body["before"] == body["after"] == body["ctx"] == body["child"] == trace
    assert emulator.stats()["max_in_flight"] == n


def test_botocore_sends_each_invocations_own_trace_header(emulator_factory, app, slow_server) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("boto3")
    slow_server.body = (b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                        b"<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/t</Arn>"
                        b"<UserId>T</UserId><Account>123456789012</Account></GetCallerIdentityResult>"
                        b"<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>"
                        b"</GetCallerIdentityResponse>")
    n = 3
    emulator = emulator_factory(concurrency=n, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=n)
    traces = {i: f"Root=1-11111111-22222222222222222222222{i};Sampled=1" for i in range(n)}

    def call(i: int):  # type: ignore[no-untyped-def]
        return emulator.invoke({"action": "botocore", "url": slow_server.url, "i": i}, trace_id=traces[i])

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(call, range(n)))
    assert all(r.status == 200 and r.function_error is None for r in results), runtime.output()
    assert slow_server.max >= 2  # the calls overlapped, so a shared variable would have crossed
    sent = {}
    for headers in slow_server.seen:
        match = re.search(r"invocation/(\d+)", headers.get("User-Agent", ""))
        sent[int(match.group(1))] = headers.get("X-Amzn-Trace-Id")
    assert sent == traces


def test_threads_greenlets_and_pools_a_handler_starts_carry_its_ids(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    n = 4
    emulator = emulator_factory(concurrency=n, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=n)
    traces = [f"Root=1-22222222-33333333333333333333333{i};Sampled=1" for i in range(n)]

    def call(i: int):  # type: ignore[no-untyped-def]
        return emulator.invoke({"action": "fanout"}, trace_id=traces[i])

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(call, range(n)))
    assert all(r.status == 200 and r.function_error is None for r in results), runtime.output()
    for trace, result in zip(traces, results, strict=True):
        assert result.json()["traces"] == [trace] * 6
    assert emulator.stats()["max_in_flight"] >= 2
    output = runtime.output()  # written before the answer it preceded
    records = [line.split("\t") for line in output.split("\n") if line.startswith("[WARNING]")]
    kinds = [message.split(" of ")[0] for *_, message in records]
    assert sorted(kinds) == sorted(["executor", "executor-map", "thread", "spawn", "pool", "pool"] * n)
    for _, _, request_id, message in records:
        assert message.endswith(f" of {request_id}"), runtime.output()


def test_an_alarm_interrupts_only_the_invocation_that_set_it(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    # A process-wide SIGALRM used to land in gevent's hub and kill the runtime with every
    # invocation in it.
    emulator = emulator_factory(concurrency=2, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=2)
    with ThreadPoolExecutor(2) as pool:
        owner = pool.submit(emulator.invoke, {"action": "alarm", "alarm": 1, "seconds": 3},
                            trace_id="Root=1-aaaaaaaa-000000000000000000000001", timeout=20)
        bystander = pool.submit(emulator.invoke, {"action": "alarm", "seconds": 2},
                                trace_id="Root=1-bbbbbbbb-000000000000000000000002", timeout=20)
        owner_body, bystander_body = owner.result().json(), bystander.result().json()
    assert owner_body == {"interrupted": True,
                          "handler_saw_trace": "Root=1-aaaaaaaa-000000000000000000000001"}
    assert bystander_body == {"slept": True}
    assert emulator.stats()["max_in_flight"] == 2
    assert runtime.returncode is None
    assert emulator.invoke({"action": "echo"}).status == 200, runtime.output()


def test_a_signal_handler_raising_outside_any_invocation_does_not_stop_the_runtime(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    n = 2
    emulator = emulator_factory(concurrency=n, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=n)
    runtime.send_signal(signal.SIGUSR1)
    output = runtime.wait_for_output("A signal handler raised RuntimeError outside any invocation")
    assert "raised by the function's SIGUSR1 handler" in output
    assert runtime.returncode is None
    assert emulator.invoke({"action": "echo"}).status == 200
    emulator.wait_for(lambda stats: stats["open_polls"] == n, timeout=10)  # every slot lives


def test_each_invocation_runs_its_own_asyncio_loop(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    # asyncio keeps the running loop per OS thread; without lmi-gevent's per-greenlet loop,
    # all but one of these fail with "asyncio.run() cannot be called from a running event loop".
    n = 4
    emulator = emulator_factory(concurrency=n, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=n)
    results = emulator.invoke_many([{"action": "asyncio", "seconds": 0.3}] * n, parallel=n)
    assert all(r.status == 200 and r.function_error is None for r in results), \
        [r.body[:300] for r in results]
    bodies = [r.json() for r in results]
    assert max(b["max_overlap"] for b in bodies) == n
    assert len({b["loop"] for b in bodies}) == n  # alive at the same time, so distinct
    assert all(b["same_loop"] and b["task"] and not b["loop_after"] for b in bodies)
    assert emulator.invoke({"action": "asyncio", "seconds": 0}).status == 200, runtime.output()


def test_log_records_and_prints_keep_their_request_id_and_stay_whole(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    n = 4
    emulator = emulator_factory(concurrency=n, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=n)
    results = emulator.invoke_many([{"action": "log", "lines": 30}] * n, parallel=n)
    assert all(r.status == 200 for r in results)
    assert emulator.stats()["max_in_flight"] == n
    warnings = prints = 0
    output = runtime.output()  # written before the answer it preceded
    for line in output.split("\n"):
        if line.startswith("[WARNING]"):
            _, _, rid, message = line.split("\t")
            assert message.endswith(f" of {rid}")  # the record's request id is its own
            warnings += 1
        elif line.startswith("print "):
            assert re.fullmatch(r"print \d+ of [0-9a-f-]{36} x{200}", line), line
            prints += 1
    assert warnings == prints == 30 * n


def test_worker_pool_initializing_record_is_logged_once(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=5, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=5,
                            env={"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "DEBUG"})
    output = runtime.output()  # written before the slots polled
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    pool = [r for r in records if isinstance(r["message"], dict)
            and r["message"].get("event") == "runtime_worker_pool_initializing"]
    assert len(pool) == 1 and pool[0]["level"] == "DEBUG"
    assert pool[0]["message"]["workerCount"] == pool[0]["message"]["executionEnvironmentMaxConcurrency"] == 5


def test_sigterm_drains_in_flight_invocations(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    n = 4
    emulator = emulator_factory(concurrency=n, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=n, env={"AWS_LAMBDA_LOG_LEVEL": "INFO"})
    pending = ThreadPoolExecutor(n)
    futures = [pending.submit(emulator.invoke, {"action": "sleep", "seconds": 1.0}) for _ in range(n)]
    wait_delivered(emulator, n)
    marker = emulator.mark("sigterm")
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(15) == 0, runtime.output()
    results = [f.result(timeout=15) for f in futures]
    pending.shutdown()
    assert all(r.status == 200 and r.function_error is None for r in results)
    assert all(r.json()["max_overlap"] == n for r in results)
    polls_after = [e for e in emulator.events(since=marker["t"]) if e["kind"] == "poll_open"]
    assert polls_after == []
    assert f"Drained: {n} of {n} in-flight invocation(s) finished, 0 cut" in runtime.output()


def test_sigterm_serves_invocations_that_arrived_unread(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    # Every slot's invocation is on its socket, unread (SIGSTOP), when SIGTERM lands: each
    # is an invocation the platform handed over, so all of them are served, whichever the
    # event loop sees first after SIGCONT (the reads or the signal).
    n = 3
    emulator = emulator_factory(concurrency=n, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=n, env={"AWS_LAMBDA_LOG_LEVEL": "INFO"})
    pending = ThreadPoolExecutor(n)
    os.kill(runtime.pid, signal.SIGSTOP)
    try:
        futures = [pending.submit(emulator.invoke, {"action": "echo", "n": i}) for i in range(n)]
        wait_delivered(emulator, n)
        runtime.send_signal(signal.SIGTERM)
    finally:
        os.kill(runtime.pid, signal.SIGCONT)
    assert runtime.wait(15) == 0, runtime.output()
    results = [f.result(timeout=15) for f in futures]
    pending.shutdown()
    assert sorted(r.json()["echo"]["n"] for r in results) == list(range(n)), runtime.output()
    # Slots that read their invocation before the signal was handled answered outside the
    # drain; the others inside it. Either way, nothing was cut.
    assert re.search(r"Drained: (\d) of \1 in-flight invocation\(s\) finished, 0 cut", runtime.output())


def test_drain_timeout_cuts_and_answers_what_is_left(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    n = 2
    emulator = emulator_factory(concurrency=n, timeout=60)
    runtime = start_runtime(emulator, app, concurrency=n, env={"LMI_GEVENT_DRAIN_TIMEOUT": "0.3"})
    pending = ThreadPoolExecutor(n)
    futures = [pending.submit(emulator.invoke, {"action": "sleep", "seconds": 30}) for _ in range(n)]
    wait_delivered(emulator, n)
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(15) == 0, runtime.output()
    results = [f.result(timeout=15) for f in futures]
    pending.shutdown()
    for result in results:
        body = result.json()
        assert result.function_error == "Unhandled"
        assert body["errorType"] == "Runtime.ShutdownBeforeAnswer"
        assert "LMI_GEVENT_DRAIN_TIMEOUT=0.3s" in body["errorMessage"]
    assert f"0 of {n} in-flight invocation(s) finished, {n} cut" in runtime.output()


def test_second_signal_exits_at_once(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=2, timeout=60)
    runtime = start_runtime(emulator, app, concurrency=2, env={"LMI_GEVENT_DRAIN_TIMEOUT": "60"})
    pending = ThreadPoolExecutor(1)
    pending.submit(emulator.invoke, {"action": "sleep", "seconds": 30}, timeout=90)
    wait_delivered(emulator, 1)
    runtime.send_signal(signal.SIGTERM)
    emulator.wait_for(lambda s: s["open_polls"] == 0, timeout=10)  # draining: idle poll cancelled
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(5) == 128 + signal.SIGTERM  # long before the 60 s drain timeout
    assert "Second signal" in runtime.output()
    pending.shutdown(wait=False, cancel_futures=True)


def test_slot_of_an_invocation_past_its_deadline_is_reclaimed(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    n = 2
    emulator = emulator_factory(concurrency=n, timeout=1)
    runtime = start_runtime(emulator, app, concurrency=n, env={"LMI_GEVENT_DEADLINE_GRACE": "0.2"})
    stuck = emulator.invoke_many([{"action": "sleep", "seconds": 60}] * n, parallel=n)
    assert all(r.function_error == "Unhandled" for r in stuck)  # the platform's own timeout
    # Both slots were stuck; a new invocation gets one once the runtime reclaims them.
    emulator.wait_for(lambda s: s["open_polls"] == n, timeout=10)
    assert emulator.invoke({"action": "echo"}).json() == {"echo": {"action": "echo"}}
    stats = emulator.stats()
    assert stats["late_answers"] == n  # the reclaimed invocations were answered (410: too late)
    assert "Runtime API answered 410" in runtime.output()
    assert "Sandbox.Timedout" in runtime.output()


def test_without_reclaim_a_stuck_invocation_keeps_its_slot(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    n = 2
    emulator = emulator_factory(concurrency=n, timeout=1)
    start_runtime(emulator, app, concurrency=n, env={"LMI_GEVENT_DEADLINE_GRACE": "off"})
    emulator.invoke_many([{"action": "sleep", "seconds": 60}] * n, parallel=n)
    time.sleep(1.0)  # well past deadline + any grace: nothing reclaims the slots
    assert emulator.stats()["open_polls"] == 0


def test_lmi_log_socket_receives_stdout_and_stderr(emulator_factory, app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "log.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    received: list[bytes] = []
    accepted: list[socket.socket] = []

    def accept() -> None:
        conn, _ = listener.accept()
        accepted.append(conn)
        while chunk := conn.recv(65536):
            received.append(chunk)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    emulator = emulator_factory(concurrency=2, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=2,
                            env={"_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET": path})
    emulator.invoke_many([{"action": "log", "lines": 3}] * 2, parallel=2)
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(10) == 0
    thread.join(5)
    text = b"".join(received).decode()
    assert text.count("print ") == 6 and text.count("[WARNING]") >= 6
    assert len(accepted) == 1  # one connection for stdout and stderr
    assert "print " not in runtime.output()
    listener.close()


def test_no_gevent_warnings_on_stderr_without_psutil(emulator_factory, app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # psutil is optional for users; gevent's monitor thread (started by the stall detector)
    # would otherwise print a MonitorWarning into every function's log.
    hide = tmp_path / "hide_psutil"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['psutil'] = None\n")
    emulator = emulator_factory(concurrency=2, timeout=10)
    runtime = start_runtime(emulator, app, concurrency=2,
                            env={"PYTHONPATH": f"{hide}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert emulator.invoke({"action": "echo"}).status == 200
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(10) == 0
    output = runtime.output()
    assert "Warning" not in output, output
