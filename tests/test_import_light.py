"""`import lmi_gevent` (and the console script's module) import nothing heavy (invariant 1)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["ssl", "urllib3", "requests", "concurrent.futures", "gevent", "boto3", "http.client",
         "ujson", "threading", "asyncio"]


def modules_after(statement: str) -> list[str]:
    code = (f"import sys\n{statement}\n"
            f"print(__import__('json').dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         check=True, cwd="/")
    return json.loads(out.stdout)


@pytest.mark.parametrize("statement", [
    "import lmi_gevent",
    "import lmi_gevent.cli",
    "import lmi_gevent.config",
    "import lmi_gevent.__main__",
    # A worker reads its assignment and ties its life to the supervisor before patching.
    "import lmi_gevent.workers.assignment as w, lmi_gevent.workers.scoreboard; w.assignment()",
    "import lmi_gevent.workers.cpus as c; c.usable_cpus()",
])
def test_importing_the_entry_points_pulls_in_nothing_heavy(statement: str) -> None:
    # -I ignores PYTHONPATH; the package is installed (editable) in the test environment.
    assert modules_after(statement) == []


def test_config_loading_stays_light() -> None:
    assert modules_after("import lmi_gevent.config as c; c.load({'AWS_LAMBDA_RUNTIME_API': 'h:1'})") == []


def test_the_supervisor_never_imports_gevent() -> None:
    # docs/design.md, step 2: the supervisor stays small and gevent-free (workers patch themselves).
    loaded = modules_after("import lmi_gevent.workers.supervisor, lmi_gevent.config as c; "
                           "c.load({'AWS_LAMBDA_RUNTIME_API': 'h:1', "
                           "'AWS_LAMBDA_MAX_CONCURRENCY': '8'})[0].worker_count()")
    assert "gevent" not in loaded and "ssl" not in loaded


@pytest.mark.parametrize("statement", ["import lmi_gevent.http", "import lmi_gevent.streaming"])
def test_the_http_adapter_and_streaming_import_no_gevent_and_no_web_stack(statement: str) -> None:
    # A handler module imports these at its import, which in sequential mode must never bring
    # gevent in (invariant 2); they need neither a web framework nor an HTTP client.
    unwanted = {"gevent", "ssl", "urllib3", "requests", "concurrent.futures", "http.client", "asyncio"}
    assert set(modules_after(statement)) & unwanted == set()
    code = f"import sys\n{statement}\nprint([m for m in ('flask', 'django', 'werkzeug') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


# What a classic (sequential) cold start must not pay for: concurrent-mode modules, the
# stdlib modules awslambdaric does without, and what only some invocations need (streaming,
# errors, large answers, JSON logs, the telemetry fd, the MI log socket) (docs/pythons.md,
# cold start).
NOT_IN_A_CLASSIC_START = ["typing", "dataclasses", "inspect", "tempfile", "random", "gevent",
                          "greenlet", "asyncio", "concurrent.futures", "ssl", "http.client",
                          "socket", "selectors", "select", "encodings.idna", "json", "ujson",
                          "base64", "struct", "fcntl", "termios", "signal",
                          "lmi_gevent.workers", "lmi_gevent.workers.assignment",
                          "lmi_gevent.workers.scoreboard", "lmi_gevent.workers.supervisor",
                          "lmi_gevent.integrations.monkey", "lmi_gevent.integrations.asyncio",
                          "lmi_gevent.integrations.threads", "lmi_gevent.serving.slots",
                          "lmi_gevent.diagnostics"]

MODULES_APP = f"""
import sys

def handler(event, context):
    return [name for name in {NOT_IN_A_CLASSIC_START!r} if name in sys.modules]
"""


@pytest.mark.timeout(60)
def test_a_sequential_start_imports_only_what_the_classic_loop_uses(emulator_factory, task_root) -> None:  # type: ignore[no-untyped-def]
    # The first invocation reports what the runtime had imported by then (its handler module
    # imports only sys): the real process, not an import of some of its modules.
    from tests.support import start_runtime

    emulator = emulator_factory(concurrency=1, timeout=30)
    runtime = start_runtime(emulator, task_root(app=MODULES_APP))
    answer = emulator.invoke({})
    assert answer.status == 200, runtime.output()
    # logging and traceback are needed (awslambdaric imports them too); what they import on
    # this Python (3.14's traceback brings dataclasses and inspect, for its colours) is no
    # cost of ours.
    stdlib = subprocess.run([sys.executable, "-I", "-c", "import sys, logging, traceback; "
                             f"print([m for m in {NOT_IN_A_CLASSIC_START!r} if m in sys.modules])"],
                            capture_output=True, text=True, check=True).stdout
    assert set(answer.json()) <= set(json.loads(stdlib.replace("'", '"'))), answer.json()


def test_the_checked_list_catches_a_module_that_is_loaded() -> None:
    # The check above can fail: in this test process (pytest) most of the list is loaded.
    assert "typing" in sys.modules and "inspect" in sys.modules


GC_APP = """
import gc
import weakref

AT_IMPORT = gc.isenabled()


class Node:
    pass


CYCLES = []
for _ in range(50):
    node = Node()
    node.me = node  # unreachable once the loop moves on: only a collection frees it
    CYCLES.append(weakref.ref(node))
del node


def handler(event, context):
    gc.collect()
    return {"at_import": AT_IMPORT, "in_handler": gc.isenabled(),
            "left": sum(ref() is not None for ref in CYCLES), "frozen": gc.get_freeze_count()}
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("concurrency", [1, 4])
def test_the_function_runs_with_the_garbage_collector_on(emulator_factory, task_root,  # type: ignore[no-untyped-def]
                                                         concurrency: int) -> None:
    # The CLI turns the collector off for the runtime's own imports; the handler module's
    # import and every invocation must find it on, and the cycles the import left collectable.
    from tests.support import start_runtime

    emulator = emulator_factory(concurrency=concurrency, timeout=30)
    runtime = start_runtime(emulator, task_root(app=GC_APP), concurrency=concurrency)
    answer = emulator.invoke({})
    assert answer.status == 200, runtime.output()
    found = answer.json()
    assert found["at_import"] is True and found["in_handler"] is True, found
    assert found["left"] == 0, found  # the import's cycles were collected, not frozen
    assert found["frozen"] > 0, found  # the runtime's own objects were


# What a concurrent start (a worker of K, or one process) must not pay for before its polls:
# the metadata readers gevent reaches for (its plugin lookups; the monitor thread's psutil,
# which reads /proc/self/smaps) and the supervisor's own needs.
NOT_BEFORE_THE_FIRST_POLL = ["importlib.metadata", "email", "zipfile", "csv", "psutil",
                             "tempfile", "lmi_gevent.workers.supervisor"]

CONCURRENT_MODULES_APP = f"""
import sys

import gevent


def handler(event, context):
    monitor = gevent.get_hub().periodic_monitoring_thread
    functions = [f.function.__name__ for f in monitor.monitoring_functions()] if monitor else None
    return {{"loaded": [name for name in {NOT_BEFORE_THE_FIRST_POLL!r} if name in sys.modules],
             "monitoring": functions}}
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_concurrent_start_imports_no_metadata_readers(emulator_factory, task_root,  # type: ignore[no-untyped-def]
                                                        workers: str) -> None:
    # The handler module imports only sys and gevent: whatever else is loaded by its first
    # invocation, the runtime (and gevent, as the runtime starts it) imported.
    from tests.support import start_runtime

    emulator = emulator_factory(concurrency=4, timeout=30)
    runtime = start_runtime(emulator, task_root(app=CONCURRENT_MODULES_APP), concurrency=4,
                            env={"LMI_GEVENT_WORKERS": workers})
    answer = emulator.invoke({})
    assert answer.status == 200, runtime.output()
    assert answer.json()["loaded"] == [], runtime.output()
    # The stall detector's monitor thread runs (what psutil is skipped for), minus the memory
    # watch that does nothing without GEVENT_MONITOR_MEMORY_MAX.
    functions = answer.json()["monitoring"]
    assert functions and "monitor_memory_usage" not in functions, functions


@pytest.mark.timeout(60)
def test_a_memory_limit_still_gets_gevent_memory_watch(emulator_factory, task_root) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("psutil")
    from tests.support import start_runtime

    emulator = emulator_factory(concurrency=2, timeout=30)
    runtime = start_runtime(emulator, task_root(app=CONCURRENT_MODULES_APP), concurrency=2,
                            env={"GEVENT_MONITOR_MEMORY_MAX": str(8 << 30)})
    answer = emulator.invoke({})
    assert answer.status == 200, runtime.output()
    assert "monitor_memory_usage" in answer.json()["monitoring"], answer.json()
