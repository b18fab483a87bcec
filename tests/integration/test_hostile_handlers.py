"""Hostile but realistic handlers (issue 18, part B): init failures of every form, the
function's own signal handlers, threads and processes it leaves behind, a wedged event loop.

Each case runs in the three shapes a function can be served in: sequential, concurrent in one
process (LMI_GEVENT_WORKERS=1) and concurrent with 2 workers; where awslambdaric has an answer,
the same module runs under it too and the test states what it does. Every test counts answers
(each invocation exactly one), checks the runtime stops, and that nothing it started survives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support import OFFICIAL_RUNTIME, RUNTIME, alive, init_error, start_runtime, wait_delivered

pytestmark = pytest.mark.timeout(120)
needs_linux = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")

MODES = {
    "sequential": {"concurrency": 1, "env": {}},
    "one-process": {"concurrency": 4, "env": {"LMI_GEVENT_WORKERS": "1"}},
    "2-workers": {"concurrency": 4, "env": {"LMI_GEVENT_WORKERS": "2"}},
}

INIT_FAILURES = {
    "segfault": "import ctypes\nctypes.string_at(0)\n",
    "os_exit_0": "import os\nos._exit(0)\n",
    "os_exit_7": "import os\nos._exit(7)\n",
    "sigkill_self": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "keyboard_interrupt": "raise KeyboardInterrupt\n",
    "sys_exit_0": "import sys\nsys.exit(0)\n",
}

SERVES = """
import os, signal, subprocess, sys, threading, time

PID_FILE = os.environ.get("APP_PID_FILE")


def on_signal(signum, frame):
    time.sleep(0.2)  # it may block: nothing is running any more
    print(f"function's {signal.Signals(signum).name} handler ran in {os.getpid()}", flush=True)
    sys.exit(0)


if os.environ.get("APP_REGISTER_AT_IMPORT"):
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def handler(event, context):
    if event.get("register"):
        signal.signal(signal.SIGTERM, on_signal)
    if event.get("thread"):
        threading.Thread(target=time.sleep, args=(300,), name="left-running").start()
    if event.get("subprocess"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        with open(PID_FILE, "a") as f:
            f.write(f"{child.pid}\\n")
    time.sleep(event.get("seconds", 0))
    print(f"answered {context.aws_request_id}", flush=True)
    return {"pid": os.getpid(), "sigterm": getattr(signal.getsignal(signal.SIGTERM), "__name__", None)}
"""

FORKS_AT_IMPORT = """
import os
if os.fork() == 0:
    os._exit(0)  # the child's exit is no init failure of the runtime
os.wait()


def handler(event, context):
    return {"pid": os.getpid()}
"""

CLOSES_STDOUT = """
import os
os.close(1)
os.close(2)


def handler(event, context):
    return {"pid": os.getpid()}
"""


def start(emulator_factory: Any, root: Path, mode: str, handler: str = "app.handler", *,
          wait: bool = True, argv: list[str] | None = None, timeout: float = 30, **env: str) -> Any:
    shape = MODES[mode]
    emulator = emulator_factory(concurrency=shape["concurrency"], timeout=timeout)
    runtime = start_runtime(emulator, root, handler, concurrency=shape["concurrency"],
                            wait=wait, argv=argv,
                            env={"AWS_LAMBDA_LOG_LEVEL": "INFO", **shape["env"], **env})
    return emulator, runtime


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as f:
                    children = {int(p) for p in f.read().split()}
            except FileNotFoundError:
                continue
            todo.extend(children - found)
            found |= children
    return found




def wait_dead(pids: set[int], timeout: float = 10) -> set[int]:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {p for p in pids if alive(p)}


# --- init failures ---------------------------------------------------------------------------


@needs_linux
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", list(INIT_FAILURES))
def test_an_init_failure_of_any_form_ends_the_runtime_once(emulator_factory, task_root, mode, kind) -> None:  # type: ignore[no-untyped-def]
    root = task_root(broken=INIT_FAILURES[kind])
    emulator, runtime = start(emulator_factory, root, mode, "broken.handler", wait=False)
    children = set()
    deadline = time.monotonic() + 20
    while runtime.returncode is None and time.monotonic() < deadline:
        children |= descendants(runtime.pid)
        time.sleep(0.02)
    code = runtime.wait(30)
    output = runtime.output()
    assert code != 0, output
    stats = emulator.stats()
    assert stats["polls_opened_total"] == 0, output
    assert "replacing it" not in output  # no replacement storm
    assert not wait_dead(children)
    posted = stats["status_codes"]["init_error"].get("202", 0)
    fatal_signal = kind in ("segfault", "sigkill_self")
    if fatal_signal and mode != "2-workers":
        # The process itself died of the signal: the platform sees its runtime exit in init.
        assert code < 0 and posted == 0, output
        return
    assert posted == 1, output
    error_type, body = init_error(emulator)
    if kind.startswith("os_exit"):
        assert error_type == "Runtime.ExitError"
        assert f"os._exit({kind[-1]})" in body["errorMessage"]
    elif fatal_signal:
        assert error_type == "Runtime.ExitError"
        # The platform's words for a runtime's end (a Go process state), as `local` uses them.
        words = "signal: segmentation fault" if kind == "segfault" else "signal: killed"
        assert f"Runtime exited with error: {words} while loading the handler broken.handler" \
            in body["errorMessage"], body
    else:
        assert error_type == {"keyboard_interrupt": "KeyboardInterrupt",
                              "sys_exit_0": "SystemExit"}[kind]


@pytest.mark.parametrize("kind", ["segfault", "os_exit_0", "keyboard_interrupt"])
def test_awslambdaric_side_by_side_reports_no_better(emulator_factory, task_root, kind) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("awslambdaric")
    root = task_root(broken=INIT_FAILURES[kind])
    emulator, runtime = start(emulator_factory, root, "sequential", "broken.handler", wait=False,
                              argv=OFFICIAL_RUNTIME)
    code = runtime.wait(30)
    posted = emulator.stats()["status_codes"]["init_error"].get("202", 0)
    # awslambdaric posts nothing for any of them; os._exit(0) even exits 0 and a
    # KeyboardInterrupt ends it as SIGINT would. lmi-gevent (above) posts one init error for
    # each, except a fatal signal in one process, and always exits non-zero.
    expected = {"segfault": -signal.SIGSEGV, "os_exit_0": 0, "keyboard_interrupt": -signal.SIGINT}
    assert (code, posted) == (expected[kind], 0), runtime.output()


@pytest.mark.parametrize("mode", list(MODES))
def test_a_missing_log_socket_is_one_init_error_naming_the_variable(emulator_factory, task_root, tmp_path, mode) -> None:  # type: ignore[no-untyped-def]
    root = task_root(app=SERVES)
    emulator, runtime = start(emulator_factory, root, mode, wait=False,
                              _LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET=str(tmp_path / "absent.sock"))
    assert runtime.wait(30) != 0
    output = runtime.output()
    stats = emulator.stats()
    assert stats["status_codes"]["init_error"].get("202") == 1, output
    assert stats["polls_opened_total"] == 0 and "replacing it" not in output
    error_type, body = init_error(emulator)
    assert error_type == "Runtime.ConfigurationError"
    assert "_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET" in body["errorMessage"]
    assert "absent.sock" in body["errorMessage"]


@needs_linux
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("module", ["forks", "closes_stdout"])
def test_a_module_that_forks_or_closes_its_streams_still_serves(emulator_factory, task_root, mode, module) -> None:  # type: ignore[no-untyped-def]
    root = task_root(forks=FORKS_AT_IMPORT, closes_stdout=CLOSES_STDOUT)
    emulator, runtime = start(emulator_factory, root, mode, f"{module}.handler")
    results = emulator.invoke_many([{}] * 4, parallel=4)
    assert [r.function_error for r in results] == [None] * 4
    assert emulator.stats()["init_error"] is None
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(20) == 0
    assert emulator.stats()["answered"] == 4


@needs_linux
def test_replacements_that_keep_dying_make_the_runtime_give_up_loudly(emulator_factory, task_root, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "crash"
    root = task_root(app=f"""
import os, ctypes, time
if os.path.exists({str(marker)!r}):
    ctypes.string_at(0)


def handler(event, context):
    time.sleep(event["seconds"])
    return {{"pid": os.getpid()}}
""")
    emulator, runtime = start(emulator_factory, root, "2-workers", LMI_GEVENT_WORKER_RESTART_LIMIT="3",
                              LMI_GEVENT_WORKER_RESTART_INITIAL="0.05", LMI_GEVENT_WORKER_RESTART_MAX="0.2")
    # All 4 slots at once, so both workers have served: the killed one did not die young, and
    # exactly the 4 replacements after it that die on import count toward the limit.
    results = emulator.invoke_many([{"seconds": 0.5}] * 4, parallel=4)
    assert all(r.function_error is None for r in results), runtime.output()
    workers = descendants(runtime.pid)
    assert {r.json()["pid"] for r in results} == workers
    marker.touch()
    os.kill(min(workers), signal.SIGKILL)
    assert runtime.wait(30) == 1
    output = runtime.output()
    assert output.count("Giving up: worker") == 1, output
    assert "died young 4 times in a row" in output and "LMI_GEVENT_WORKER_RESTART_LIMIT=3" in output
    assert output.count("replacing it in") == 4  # the kill, then the first three replacements
    assert emulator.stats()["init_error"] is None
    assert not wait_dead(workers)


# --- the function's own signal handlers ------------------------------------------------------


@needs_linux
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_functions_handler_runs_after_every_invocation_in_flight_was_answered(emulator_factory, task_root, mode, signum) -> None:  # type: ignore[no-untyped-def]
    root = task_root(app=SERVES)
    emulator, runtime = start(emulator_factory, root, mode, APP_REGISTER_AT_IMPORT="1")
    n = MODES[mode]["concurrency"]
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(emulator.invoke, {"seconds": 1.0}) for _ in range(n)]
        wait_delivered(emulator, n)
        runtime.send_signal(signum)
        results = [f.result(timeout=30) for f in futures]
    assert runtime.wait(20) == 0, runtime.output()
    assert [r.function_error for r in results] == [None] * n
    assert {r.json()["sigterm"] for r in results} == {"on_signal"}  # getsignal: the function's
    output = runtime.output()
    ran = output.count(f"function's {signal.Signals(signum).name} handler ran")
    assert ran == (2 if mode == "2-workers" else 1), output  # once per process
    assert output.rfind("answered ") < output.find("handler ran"), output  # drain first


@needs_linux
@pytest.mark.parametrize("mode", ["one-process", "2-workers"])
def test_a_handler_registered_inside_an_invocation_runs_after_the_drain(emulator_factory, task_root, mode) -> None:  # type: ignore[no-untyped-def]
    root = task_root(app=SERVES)
    emulator, runtime = start(emulator_factory, root, mode)
    registered = emulator.invoke_many([{"register": True}] * 4, parallel=4)
    assert all(r.json()["sigterm"] == "on_signal" for r in registered)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(emulator.invoke, {"seconds": 1.0}) for _ in range(2)]
        wait_delivered(emulator, 6)
        runtime.send_signal(signal.SIGTERM)
        assert [f.result(timeout=30).function_error for f in futures] == [None, None]
    assert runtime.wait(20) == 0, runtime.output()
    assert "function's SIGTERM handler ran" in runtime.output()
    assert emulator.stats()["answered"] == 6


def test_awslambdaric_runs_the_functions_sigterm_handler_too(emulator_factory, task_root) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("awslambdaric")
    root = task_root(app=SERVES)
    woken = {}
    for name, argv in (("theirs", OFFICIAL_RUNTIME), ("ours", RUNTIME)):
        emulator, runtime = start(emulator_factory, root, "sequential", argv=argv,
                                  APP_REGISTER_AT_IMPORT="1")
        assert emulator.invoke({}).json()["sigterm"] == "on_signal"
        runtime.send_signal(signal.SIGTERM)
        try:
            runtime.wait(3)
            woken[name] = False
        except subprocess.TimeoutExpired:
            woken[name] = True
        if woken[name]:
            # awslambdaric waits for /next in C, where no Python signal handler runs: the
            # function's handler runs once an invocation arrives, and that one is lost.
            with pytest.raises(OSError):
                emulator.invoke({}, timeout=5)
        assert runtime.wait(20) == 0, (argv, runtime.output())
        assert "function's SIGTERM handler ran" in runtime.output()
    assert woken["ours"] is False  # ours runs it at once, while idle


# --- threads and processes left behind -------------------------------------------------------


@needs_linux
@pytest.mark.parametrize("mode", list(MODES))
def test_sigterm_stops_the_runtime_despite_a_thread_left_running(emulator_factory, task_root, mode) -> None:  # type: ignore[no-untyped-def]
    root = task_root(app=SERVES)
    emulator, runtime = start(emulator_factory, root, mode)
    assert emulator.invoke({"thread": True}).function_error is None
    processes = descendants(runtime.pid) | {runtime.pid}
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(15) == 0, runtime.output()
    assert not wait_dead(processes)


def test_awslambdaric_dies_of_sigterm_with_a_thread_left_running(emulator_factory, task_root) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("awslambdaric")
    emulator, runtime = start(emulator_factory, task_root(app=SERVES), "sequential",
                              argv=OFFICIAL_RUNTIME)
    assert emulator.invoke({"thread": True}).function_error is None
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(15) == -signal.SIGTERM


@needs_linux
def test_a_workers_subprocess_does_not_outlive_the_runtime(emulator_factory, task_root, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pid_file = tmp_path / "children"
    emulator, runtime = start(emulator_factory, task_root(app=SERVES), "2-workers",
                              APP_PID_FILE=str(pid_file))
    results = emulator.invoke_many([{"subprocess": True, "seconds": 0.3}] * 4, parallel=4)
    assert [r.function_error for r in results] == [None] * 4
    children = {int(line) for line in pid_file.read_text().split()}
    assert len(children) == 4 and all(alive(pid) for pid in children)
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(20) == 0
    assert not wait_dead(children)


# --- a wedged event loop ---------------------------------------------------------------------

WEDGES = """
import ctypes, os, time


def handler(event, context):
    if event.get("wedge"):
        ctypes.CDLL(None).sleep(int(event["wedge"]))  # C, beyond any greenlet's reach
    time.sleep(event.get("seconds", 0))
    return {"pid": os.getpid()}
"""
WEDGE_TIMEOUT = 2.0
DEADLINE = 60.0


@needs_linux
@pytest.mark.parametrize("mode", ["one-process", "2-workers"])
def test_a_wedged_worker_answers_what_it_holds_and_its_capacity_comes_back(emulator_factory, task_root, mode) -> None:  # type: ignore[no-untyped-def]
    emulator, runtime = start(emulator_factory, task_root(app=WEDGES), mode, timeout=DEADLINE,
                              LMI_GEVENT_WEDGE_TIMEOUT=str(WEDGE_TIMEOUT))
    workers = descendants(runtime.pid) | {runtime.pid}
    pool = ThreadPoolExecutor(11)
    started = time.monotonic()
    stuck = pool.submit(emulator.invoke, {"wedge": 300}, timeout=DEADLINE + 30)
    wait_delivered(emulator, 1)
    healthy = [pool.submit(emulator.invoke, {"seconds": 0.1}, timeout=DEADLINE + 30) for _ in range(10)]
    wedged = stuck.result()
    answered_in = time.monotonic() - started
    assert wedged.function_error == "Unhandled" and wedged.json()["errorType"] == "Runtime.WorkerWedged"
    assert "app.py:7" in wedged.json()["errorMessage"]  # the handler's own line (the C call)
    assert answered_in < DEADLINE / 2, answered_in  # seconds, not at the deadline
    if mode == "one-process":
        # The process ends; what its open polls held is answered, the rest stays queued for
        # the execution environment the platform starts next.
        assert runtime.wait(20) == 1
        stats = emulator.stats()
        handed = stats["dispatched"] - 1
        assert stats["status_codes"]["error"].get("202") == stats["answered"] == handed + 1
        assert stats["timed_out"] == 0
        pool.shutdown(wait=False, cancel_futures=True)
        return
    results = [f.result() for f in healthy]
    pool.shutdown()
    errors = [r.json()["errorType"] for r in results if r.function_error]
    assert set(errors) <= {"Runtime.WorkerWedged"}
    assert len(errors) <= 1  # at most the wedged worker's one open poll
    emulator.wait_for(lambda s: s["open_polls"] == 4, timeout=30)  # replaced
    later = emulator.invoke_many([{"seconds": 0.2}] * 8, parallel=8)
    assert [r.function_error for r in later] == [None] * 8
    assert len({r.json()["pid"] for r in later}) == 2
    stats = emulator.stats()
    assert stats["answered"] == 19 and stats["timed_out"] == 0 and stats["repeated_answers"] == 0
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(20) == 0
    assert not wait_dead(workers)


@needs_linux
def test_an_idle_loop_and_a_block_shorter_than_the_timeout_are_no_wedge(emulator_factory, task_root) -> None:  # type: ignore[no-untyped-def]
    emulator, runtime = start(emulator_factory, task_root(app=WEDGES), "one-process",
                              LMI_GEVENT_WEDGE_TIMEOUT="1.5")
    time.sleep(3)  # idle for twice the timeout: the loop waits in epoll, and still turns
    blocked = emulator.invoke({"wedge": 1})  # holds the loop for 1 s, less than the timeout
    assert blocked.function_error is None, runtime.output()
    assert runtime.returncode is None and "Worker wedged" not in runtime.output()
    emulator.wait_for(lambda s: s["open_polls"] == 4, timeout=10)


USR1 = """
import os, signal, time

seen = []
signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))


def handler(event, context):
    time.sleep(0.05)
    return {"pid": os.getpid(), "seen": len(seen)}
"""


@needs_linux
@pytest.mark.parametrize("mode", list(MODES))
def test_the_functions_other_signal_handlers_are_installed_as_asked(emulator_factory, task_root, mode) -> None:  # type: ignore[no-untyped-def]
    emulator, runtime = start(emulator_factory, task_root(app=USR1), mode)
    processes = 2 if mode == "2-workers" else 1
    runtime.send_signal(signal.SIGUSR1)  # with workers: the supervisor passes it on to each
    deadline = time.monotonic() + 20
    seen: dict[int, int] = {}
    while time.monotonic() < deadline and (len(seen) < processes or 0 in seen.values()):
        for answer in emulator.invoke_many([{}] * 4, parallel=4):
            seen[answer.json()["pid"]] = answer.json()["seen"]
    assert len(seen) == processes and set(seen.values()) == {1}, (seen, runtime.output())
    assert runtime.returncode is None
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(20) == 0
