"""Worker processes x greenlet slots (LMI_GEVENT_WORKERS): the supervisor and its workers.

The worker count is always set explicitly, so nothing here depends on the machine's cores.
Which process served an invocation is the pid the handler returns; capacity is the
emulator's poll and in-flight counters.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import alive, init_error, start_runtime

pytestmark = pytest.mark.timeout(90)

APP = """
import os, sys, time

if os.environ.get("APP_BREAK_MARKER") and os.path.exists(os.environ["APP_BREAK_MARKER"]):
    raise RuntimeError("the marker file says: fail at import")


def handler(event, context):
    print(f"started {context.aws_request_id} in {os.getpid()}", flush=True)
    if event.get("wedge"):
        import gevent.monkey
        from lmi_gevent.workers.scoreboard import write_wedge_report
        write_wedge_report(f"reading a pipe nobody writes, for {context.aws_request_id}")
        read_end, _ = os.pipe()
        gevent.monkey.get_original("os", "read")(read_end, 1)  # blocks the whole event loop
    for n in range(event.get("lines", 0)):
        print(f"line {n} of {context.aws_request_id} from {os.getpid()} " + "x" * 200)
        time.sleep(0.001)
    time.sleep(event.get("seconds", 0))
    if event.get("exit"):
        os._exit(event["exit"])
    return {"pid": os.getpid(), "rid": context.aws_request_id}
"""

SLOW_INIT = """
import os, time
with open(os.path.join(os.environ["APP_PID_DIR"], str(os.getpid())), "w"):
    pass
time.sleep(30)  # a long init: the signal comes before any signal handler is installed


def handler(event, context):
    return {}
"""

BROKEN = """
import os
with open(os.path.join(os.environ["APP_PID_DIR"], str(os.getpid())), "w"):
    pass
raise KeyError("SETTING_MISSING")
"""

N = 8


@pytest.fixture
def app(task_root) -> Path:  # type: ignore[no-untyped-def]
    return task_root(app=APP, broken=BROKEN, slow=SLOW_INIT)


def workers_env(count: int = 2, **extra: str) -> dict[str, str]:
    return {"LMI_GEVENT_WORKERS": str(count), "AWS_LAMBDA_LOG_LEVEL": "INFO", **extra}


def worker_pids(supervisor_pid: int) -> set[int]:
    with open(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children", encoding="ascii") as f:
        return {int(pid) for pid in f.read().split()}




def wait_started(runtime, count: int, timeout: float = 20) -> str:  # type: ignore[no-untyped-def]
    """Wait until ``count`` invocations are inside the handler (it prints on entry)."""
    output = runtime.wait_for_output(lambda text: text.count("started ") >= count, timeout)
    assert output.count("started ") >= count, output
    return output


def busy_workers(emulator_factory, app, seconds: float, timeout: float):  # type: ignore[no-untyped-def]
    """N slots over 2 workers, every one inside a ``seconds``-long invocation: (emulator,
    runtime, the invocations' futures)."""
    emulator = emulator_factory(concurrency=N, timeout=timeout)
    runtime = start_runtime(emulator, app, concurrency=N, env=workers_env())
    pending = ThreadPoolExecutor(N)
    futures = [pending.submit(emulator.invoke, {"seconds": seconds}) for _ in range(N)]
    pending.shutdown(wait=False)
    wait_started(runtime, N)
    return emulator, runtime, futures


needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")


def test_both_workers_serve_and_capacity_stays_n(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=N, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=N, env=workers_env(
        AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="DEBUG"))
    assert emulator.stats()["open_polls"] == N
    results = emulator.invoke_many([{"seconds": 0.3}] * (4 * N), parallel=4 * N)
    assert all(r.status == 200 and r.function_error is None for r in results), runtime.output()
    pids = {r.json()["pid"] for r in results}
    assert len(pids) == 2 and runtime.pid not in pids
    stats = emulator.wait_for(lambda s: s["open_polls"] == N, timeout=10)
    assert stats["max_in_flight"] == N
    assert stats["max_polls_plus_in_flight"] <= N
    assert stats["answered"] == 4 * N and stats["capacity_exceeded"] == 0
    records = [json.loads(line) for line in runtime.output().splitlines() if line.startswith("{")]
    pool = [r["message"] for r in records if isinstance(r["message"], dict)
            and r["message"].get("event") == "runtime_worker_pool_initializing"]
    assert pool == [{"event": "runtime_worker_pool_initializing", "workerCount": N,
                     "executionEnvironmentMaxConcurrency": N, "processCount": 2,
                     "slotsPerProcess": [4, 4]}]


@needs_proc
def test_a_killed_worker_is_replaced_and_every_later_invocation_answered(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    emulator, runtime, futures = busy_workers(emulator_factory, app, 2, timeout=60)
    victim = min(worker_pids(runtime.pid))
    os.kill(victim, signal.SIGKILL)
    output = runtime.wait_for_output("replacing it in")
    found = re.search(rf"Worker \d \(pid {victim}\) died \(killed by SIGKILL\) with (\d+) "
                      rf"invocation\(s\) in flight and (\d+) open poll", output)
    assert found, output
    assert (int(found.group(1)), int(found.group(2))) == (N // 2, 0)
    results = [f.result(timeout=30) for f in futures]
    served = [r for r in results if r.function_error is None]
    assert len(served) == N // 2 and victim not in {r.json()["pid"] for r in served}
    lost = [r.json() for r in results if r.function_error is not None]
    assert len(lost) == N // 2  # answered by the supervisor, not left to time out
    assert {body["errorType"] for body in lost} == {"Runtime.ExitError"}
    assert all(f"pid {victim}" in body["errorMessage"]
               and "Runtime exited with error: signal: killed (" in body["errorMessage"]
               for body in lost), lost
    emulator.wait_for(lambda s: s["open_polls"] == N, timeout=20)  # the replacement polls
    current = worker_pids(runtime.pid)  # the survivor and the replacement
    emulator.reset_stats()
    later = emulator.invoke_many([{"seconds": 0.2}] * (2 * N), parallel=2 * N)
    assert all(r.status == 200 and r.function_error is None for r in later), runtime.output()
    assert {r.json()["pid"] for r in later} == current and len(current) == 2
    assert victim not in current and runtime.returncode is None
    stats = emulator.wait_for(lambda s: s["open_polls"] == N, timeout=10)
    assert stats["in_flight"] == 0 and stats["answered"] == 2 * N
    assert stats["max_polls_plus_in_flight"] <= N and stats["max_in_flight"] == N


def test_sigterm_drains_every_worker_and_exits_0(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    emulator, runtime, futures = busy_workers(emulator_factory, app, 1.0, timeout=30)
    marker = emulator.mark("sigterm")
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(20) == 0, runtime.output()
    results = [f.result(timeout=15) for f in futures]
    assert all(r.status == 200 and r.function_error is None for r in results), runtime.output()
    assert len({r.json()["pid"] for r in results}) == 2
    assert [e for e in emulator.events(since=marker["t"]) if e["kind"] == "poll_open"] == []
    assert runtime.output().count(f"Drained: {N // 2} of {N // 2} in-flight invocation(s) "
                                  "finished, 0 cut") == 2


def start_recording_pids(emulator_factory, app, tmp_path, handler):  # type: ignore[no-untyped-def]
    """Start workers for ``handler`` without waiting for polls; each writes its pid into the
    returned directory as it imports the app."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    emulator = emulator_factory(concurrency=4, timeout=10)
    runtime = start_runtime(emulator, app, handler, concurrency=4, wait=False,
                            env=workers_env(APP_PID_DIR=str(pid_dir)))
    return emulator, runtime, pid_dir


def test_init_error_is_reported_once_and_no_worker_is_left(emulator_factory, app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    emulator, runtime, pid_dir = start_recording_pids(emulator_factory, app, tmp_path,
                                                      "broken.handler")
    assert runtime.wait(30) == 1, runtime.output()
    stats = emulator.stats()
    assert stats["status_codes"]["init_error"].get("202") == 1
    assert stats["polls_opened_total"] == 0
    posted_type, body = init_error(emulator)
    assert posted_type == "KeyError" and body["errorMessage"] == "'SETTING_MISSING'"
    started = [int(name) for name in os.listdir(pid_dir)]
    assert started, runtime.output()
    assert not [pid for pid in started if alive(pid)]


def test_sigterm_during_init_stops_every_worker_and_exits_0(emulator_factory, app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    emulator, runtime, pid_dir = start_recording_pids(emulator_factory, app, tmp_path,
                                                      "slow.handler")
    deadline = time.monotonic() + 20
    while len(os.listdir(pid_dir)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(10) == 0, runtime.output()  # long before the 30 s init would end
    assert emulator.stats()["init_error"] is None
    assert not [pid for pid in map(int, os.listdir(pid_dir)) if alive(pid)]


@needs_proc
def test_workers_die_with_a_killed_supervisor(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=4, timeout=10)
    runtime = start_runtime(emulator, app, concurrency=4, env=workers_env())
    workers = worker_pids(runtime.pid)
    assert len(workers) == 2
    os.kill(runtime.pid, signal.SIGKILL)  # no chance to clean up: the kernel must do it
    runtime.wait(10)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if alive(pid)]


@needs_proc
def test_a_replacement_that_cannot_import_is_retried_not_reported(emulator_factory, app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "break"
    emulator = emulator_factory(concurrency=4, timeout=10)
    runtime = start_runtime(emulator, app, concurrency=4, env=workers_env(
        APP_BREAK_MARKER=str(marker), LMI_GEVENT_WORKER_RESTART_INITIAL="0.05",
        LMI_GEVENT_WORKER_RESTART_MAX="0.4"))
    marker.touch()  # from now on the handler module fails to import
    os.kill(min(worker_pids(runtime.pid)), signal.SIGKILL)
    runtime.wait_for_output(lambda text: text.count("could not load the handler") >= 2, timeout=20)
    assert emulator.stats()["init_error"] is None  # init completed long ago: never posted
    assert runtime.returncode is None
    assert emulator.invoke({}).function_error is None  # the other worker serves meanwhile
    marker.unlink()
    emulator.wait_for(lambda s: s["open_polls"] == 4, timeout=20)
    output = runtime.output()
    assert "Replacement worker" in output and "retrying in" in output
    assert "the marker file says: fail at import" in output


@needs_proc
def test_local_runs_workers_and_stops_them_all_on_ctrl_c(app) -> None:  # type: ignore[no-untyped-def]
    from tests.emulator.test_local import curl, wait_dead
    from tests.support import REPO

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop("LMI_GEVENT_LOCAL_RUNTIME_CMD", None)
    proc = subprocess.Popen([sys.executable, "-m", "lmi_gevent", "local", "app.handler", "--port", "0",
                             "--concurrency", "4", "--workers", "2"], cwd=app, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            found = re.search(r"try: curl -s -XPOST (\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "lmi-gevent local printed no curl line"
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: curl(url, {"seconds": 0.3}), range(8)))
        pids = {json.loads(body)["pid"] for status, _, body in answers if status == 200}
        assert len(pids) == 2, answers
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        assert all(wait_dead(pid) for pid in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@needs_proc
def test_a_worker_wedged_in_c_past_the_deadline_is_killed_and_replaced(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=4, timeout=1)
    runtime = start_runtime(emulator, app, concurrency=4, env=workers_env(
        LMI_GEVENT_DEADLINE_GRACE="0.3", LMI_GEVENT_WORKER_HEARTBEAT="0.1",
        LMI_GEVENT_STALL_THRESHOLD="off"))
    stuck = emulator.invoke({"wedge": True}, timeout=20)
    assert stuck.function_error == "Unhandled"  # the platform's own timeout, after 1 s
    output = runtime.wait_for_output("Killing and replacing it.", timeout=20)
    found = re.search(r"Worker (\d) \(pid (\d+)\): its event loop has not run for [\d.]+s, past "
                      r"the deadline \+ 0.3s grace of ([0-9a-f-]{36}); last wedge report: "
                      r"reading a pipe nobody writes, for \3\. Killing", output)
    assert found, output
    wedged = int(found.group(2))
    emulator.wait_for(lambda s: s["open_polls"] == 4, timeout=20)  # replaced
    assert wedged not in worker_pids(runtime.pid)
    later = emulator.invoke_many([{"seconds": 0.2}] * 8, parallel=8)
    assert all(r.function_error is None for r in later), runtime.output()
    assert len({r.json()["pid"] for r in later}) == 2


def test_each_worker_connects_to_the_log_socket_itself_and_lines_stay_whole(emulator_factory, app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "log.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    streams: list[list[bytes]] = []

    def read(conn: socket.socket, chunks: list[bytes]) -> None:
        while chunk := conn.recv(65536):
            chunks.append(chunk)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            streams.append([])
            threading.Thread(target=read, args=(conn, streams[-1]), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    emulator = emulator_factory(concurrency=4, timeout=30)
    runtime = start_runtime(emulator, app, concurrency=4, env=workers_env(
        _LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET=path))
    results = emulator.invoke_many([{"lines": 20, "seconds": 0.2}] * 8, parallel=8)
    pids = {r.json()["pid"] for r in results}
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(20) == 0, runtime.output()
    listener.close()
    time.sleep(0.2)  # the readers see the workers' connections close
    assert len(pids) == 2 and len(streams) == 2  # one connection per worker
    seen: set[int] = set()
    total = 0
    for chunks in streams:
        lines = [line for line in b"".join(chunks).decode().split("\n") if line.startswith("line ")]
        writers = {int(re.fullmatch(r"line \d+ of [0-9a-f-]{36} from (\d+) x{200}", line).group(1))
                   for line in lines}
        assert len(writers) == 1  # a worker's own connection, every line whole
        seen |= writers
        total += len(lines)
    assert seen == pids and total == 8 * 20
    assert "line " not in runtime.output()  # the workers' output went to the socket only
    assert "Starting 2 worker processes" in runtime.output()  # the supervisor's own stdout


@needs_proc
def test_a_platform_failure_in_one_worker_stops_the_runtime(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=4, timeout=5)
    runtime = start_runtime(emulator, app, concurrency=4, env=workers_env())
    workers = worker_pids(runtime.pid)
    emulator.inject("response", status=500)
    emulator.invoke({})
    assert runtime.wait(15) == 1, runtime.output()
    assert "met a non-recoverable platform failure; exiting" in runtime.output()
    assert not [pid for pid in workers if alive(pid)]


def test_an_invalid_worker_count_is_a_configuration_init_error_naming_it(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=4, timeout=10)
    runtime = start_runtime(emulator, app, concurrency=4, wait=False,
                            env={"LMI_GEVENT_WORKERS": "lots"})
    assert runtime.wait(20) == 1, runtime.output()
    posted_type, body = init_error(emulator)
    assert posted_type == "Runtime.ConfigurationError"
    assert "LMI_GEVENT_WORKERS" in body["errorMessage"] and "'lots'" in body["errorMessage"]
    assert "Starting" not in runtime.output()  # no supervisor, no worker
