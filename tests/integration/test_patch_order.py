"""Patching happens before the handler (and anything it imports) in concurrent mode, and never
in sequential mode. Each scenario runs a fresh interpreter: import order is process state."""

from __future__ import annotations

import os

import pytest

from tests.support import start_runtime

pytestmark = pytest.mark.timeout(60)

PROBE = """
import sys
# Recorded at the handler module's import, i.e. after whatever the runtime did first.
STATE = {"gevent_loaded": "gevent" in sys.modules}
if STATE["gevent_loaded"]:
    from gevent import monkey
    STATE.update({name: monkey.is_module_patched(name)
                  for name in ("socket", "ssl", "threading", "time", "select", "os", "queue")})
import socket, ssl, threading, time, concurrent.futures
STATE["socket_class"] = socket.socket.__module__
STATE["sslcontext_socket"] = ssl.SSLContext.sslsocket_class.__module__
STATE["lock"] = type(threading.Lock()).__module__
STATE["sleep"] = time.sleep.__module__

def handler(event, context):
    return STATE
"""


def test_concurrent_mode_patches_before_the_handler_is_imported(emulator_factory, task_root) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=2, timeout=10)
    start_runtime(emulator, task_root(probe=PROBE), "probe.handler", concurrency=2)
    state = emulator.invoke({}).json()
    assert state["gevent_loaded"] is True
    assert all(state[name] for name in ("socket", "ssl", "threading", "time", "select", "os", "queue"))
    assert state["socket_class"].startswith("gevent")
    assert state["sslcontext_socket"].startswith("gevent")
    assert state["sleep"].startswith("gevent")


def test_sequential_mode_never_imports_gevent(emulator_factory, task_root) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=1, timeout=10)
    start_runtime(emulator, task_root(probe=PROBE), "probe.handler")
    state = emulator.invoke({}).json()
    assert state["gevent_loaded"] is False
    assert state["socket_class"] == "socket" and state["sleep"] == "time"


@pytest.mark.parametrize("value", ["", "1"])
def test_empty_or_one_is_sequential(emulator_factory, task_root, value) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=1, timeout=10)
    start_runtime(emulator, task_root(probe=PROBE), "probe.handler",
                  env={"AWS_LAMBDA_MAX_CONCURRENCY": value})
    assert emulator.invoke({}).json()["gevent_loaded"] is False


def test_modules_imported_before_patching_are_named_in_a_warning(emulator_factory, task_root, tmp_path) -> None:  # type: ignore[no-untyped-def]
    early = tmp_path / "early"
    early.mkdir()
    # sitecustomize runs at interpreter start, before lmi-gevent can patch anything.
    (early / "sitecustomize.py").write_text("import ssl, queue\n")
    emulator = emulator_factory(concurrency=2, timeout=10)
    runtime = start_runtime(emulator, task_root(probe=PROBE), "probe.handler", concurrency=2,
                            env={"PYTHONPATH": os.pathsep.join([str(early), os.environ.get("PYTHONPATH", "")])})
    assert emulator.invoke({}).status == 200
    output = runtime.output()  # written before the answer it preceded
    warning = next(line for line in output.splitlines() if "Imported before gevent could patch" in line)
    assert "ssl" in warning and "queue" in warning and warning.startswith("[WARNING]")
    assert "MonkeyPatchWarning" not in runtime.output()  # one clear line instead of gevent's


def test_no_warning_without_early_imports(emulator_factory, task_root) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=2, timeout=10)
    runtime = start_runtime(emulator, task_root(probe=PROBE), "probe.handler", concurrency=2)
    emulator.invoke({})
    assert "Imported before gevent could patch" not in runtime.output()
