"""The first generation of workers is forked at step 2 (lmi_gevent.workers.forking).

A forked worker must hold what a fresh ``python -m lmi_gevent`` worker would and nothing
the supervisor has: its own session, no supervisor module, no descriptor but stdio and the
scoreboard; it exits as the interpreter would (atexit functions run). Replacements, and
every worker when a thread already runs at step 2, are started fresh.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path

import pytest

from tests.support import start_runtime

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs Linux /proc")]

N = 4

APP = """
import atexit, os, sys


def _goodbye():
    with open(os.path.join(os.environ["APP_EXIT_DIR"], str(os.getpid())), "w") as marker:
        marker.write("atexit ran")


atexit.register(_goodbye)


def _points_at(fd, target):
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == target
    except OSError:
        return False


def handler(event, context):
    probe = int(os.environ["PROBE_FD"])
    if event.get("exit"):
        os._exit(event["exit"])
    return {"pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0),
            "forked": "lmi_gevent.workers.forking" in sys.modules,
            "supervisor_code": "lmi_gevent.workers.supervisor" in sys.modules,
            "assignment_env": "_LMI_GEVENT_WORKER" in os.environ,
            "probe_leaked": _points_at(probe, os.environ["PROBE_PATH"])}
"""

# Runs in the supervisor at its start (and again in a fresh worker, which sees PROBE_FD set):
# an inheritable descriptor a worker must not get, and optionally a thread.
SITECUSTOMIZE = """
import os, threading, time
if "PROBE_FD" not in os.environ:
    fd = os.open(os.environ["PROBE_PATH"], os.O_RDONLY)
    os.set_inheritable(fd, True)
    os.environ["PROBE_FD"] = str(fd)
    if os.environ.get("PROBE_THREAD"):
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
"""


@pytest.fixture
def started(emulator_factory, task_root, tmp_path):  # type: ignore[no-untyped-def]
    def start(**env: str):  # type: ignore[no-untyped-def]
        site = tmp_path / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
        probe = tmp_path / "probe.txt"
        probe.write_text("supervisor only")
        exits = tmp_path / "exits"
        exits.mkdir(exist_ok=True)
        emulator = emulator_factory(concurrency=N, timeout=30)
        runtime = start_runtime(emulator, task_root(app=APP), concurrency=N, env={
            "LMI_GEVENT_WORKERS": "2", "PYTHONPATH": os.pathsep.join(
                [str(site), str(Path(__file__).resolve().parents[2])]),
            "PROBE_PATH": str(probe), "APP_EXIT_DIR": str(exits), **env})
        return emulator, runtime, exits
    return start


def served_by(emulator, count: int = 4 * N) -> dict[int, dict]:  # type: ignore[no-untyped-def, type-arg]
    results = emulator.invoke_many([{}] * count, parallel=count)
    assert all(r.status == 200 and r.function_error is None for r in results)
    return {r.json()["pid"]: r.json() for r in results}


def test_the_first_workers_are_forked_and_hold_only_what_a_fresh_worker_would(started) -> None:  # type: ignore[no-untyped-def]
    emulator, runtime, exits = started()
    workers = served_by(emulator)
    assert len(workers) == 2, runtime.output()
    for pid, seen in workers.items():
        assert seen["forked"], seen
        assert seen["ppid"] == runtime.pid and seen["sid"] == pid  # its own session
        assert not seen["supervisor_code"] and not seen["assignment_env"], seen
        assert not seen["probe_leaked"], seen  # the supervisor's descriptors stay there
    # They drain and exit as the interpreter would: 0, and the atexit functions ran.
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(20) == 0, runtime.output()
    assert sorted(int(name) for name in os.listdir(exits)) == sorted(workers), runtime.output()


def test_a_replacement_is_started_fresh(started) -> None:  # type: ignore[no-untyped-def]
    emulator, runtime, _ = started()
    first = served_by(emulator)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    runtime.wait_for_output("replacing it in")
    emulator.wait_for(lambda s: s["open_polls"] == N, timeout=20)
    later = served_by(emulator)
    (replacement,) = set(later) - set(first)
    assert not later[replacement]["forked"] and not later[replacement]["probe_leaked"]
    assert later[replacement]["sid"] == replacement
    assert not later[replacement]["assignment_env"]  # read and removed at its step 1


def test_no_fork_while_another_thread_runs(started) -> None:  # type: ignore[no-untyped-def]
    # A thread started by a sitecustomize at step 2: a fork would copy its locks mid-use.
    emulator, runtime, _ = started(PROBE_THREAD="1")
    workers = served_by(emulator)
    assert len(workers) == 2, runtime.output()
    assert not any(seen["forked"] for seen in workers.values()), json.dumps(workers)
    assert not any(seen["probe_leaked"] for seen in workers.values())


def test_worker_fork_off_starts_every_worker_fresh(started) -> None:  # type: ignore[no-untyped-def]
    emulator, runtime, exits = started(LMI_GEVENT_WORKER_FORK="off")
    workers = served_by(emulator)
    assert len(workers) == 2, runtime.output()
    assert not any(seen["forked"] for seen in workers.values()), json.dumps(workers)
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(20) == 0, runtime.output()
    assert sorted(int(name) for name in os.listdir(exits)) == sorted(workers)
