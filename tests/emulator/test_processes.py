"""api.Emulator and RuntimeProcess never leave a process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.support import alive

from lmi_gevent.emulator.api import Emulator

pytestmark = pytest.mark.timeout(30)

FORKING_RUNTIME = textwrap.dedent('''
    import os, sys, time
    child = os.fork()
    if child == 0:
        time.sleep(60)
        os._exit(0)
    print("child", child, flush=True)
    print("env", os.environ["AWS_LAMBDA_RUNTIME_API"], os.environ.get("AWS_LAMBDA_MAX_CONCURRENCY"), flush=True)
    time.sleep(60)
''')




def wait_dead(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_stop_kills_the_runtime_and_what_it_forked(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_MAX_CONCURRENCY", "99")
    emu = Emulator()
    try:
        runtime = emu.start_runtime([sys.executable, "-c", FORKING_RUNTIME])
        deadline = time.monotonic() + 10
        while not re.search(r"^env .*\n", runtime.output(), re.MULTILINE) and time.monotonic() < deadline:
            time.sleep(0.02)
        lines = dict(line.split(" ", 1) for line in runtime.output().splitlines())
        grandchild = int(lines["child"])
        assert lines["env"] == f"{emu.runtime_api} None"  # the caller's setting is not inherited
        emulator_pid = emu.pid
    finally:
        emu.stop()
    assert wait_dead(runtime.pid) and wait_dead(grandchild) and wait_dead(emulator_pid)
    assert runtime.returncode is not None


def test_send_signal_reaches_the_runtime_and_wait_returns_its_code():
    with Emulator() as emu:
        script = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\nprint('up', flush=True)\ntime.sleep(30)"
        runtime = emu.start_runtime([sys.executable, "-c", script])
        deadline = time.monotonic() + 10
        while "up" not in runtime.output() and time.monotonic() < deadline:
            time.sleep(0.02)
        runtime.send_signal(signal.SIGTERM)
        assert runtime.wait(10) == 7


def test_emulator_exits_when_the_process_that_started_it_dies():
    script = ("import sys; sys.path.insert(0, sys.argv[1])\n"
              "from lmi_gevent.emulator.api import Emulator\n"
              "emu = Emulator(); print(emu.pid, flush=True)\n"
              "import os; os._exit(0)  # no atexit, no stop(): as if killed\n")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", script, repo], capture_output=True, text=True, timeout=20)
    emulator_pid = int(out.stdout.split()[0])
    assert wait_dead(emulator_pid, timeout=5)


def test_api_imports_no_gevent():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import lmi_gevent.emulator.api\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('gevent', 'greenlet'))\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code, repo], capture_output=True, text=True, timeout=20, check=True)
    assert out.stdout.strip() == "[]"


ECHO_THEN_ACK = textwrap.dedent('''
    import socket, sys
    ack = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    for i in range(int(sys.argv[2])):
        sys.stdout.write(f"line {i}\\n" + "x" * (i * 37 % 5000) + "\\n")
        sys.stdout.flush()
        ack.sendall(b"%d\\n" % i)
        ack.recv(1)  # wait for the test before the next line
''')


def test_output_holds_everything_written_before_the_call() -> None:
    # A line written before an event the test sees (here an ack; in the suite, an answer)
    # is in output() right after that event, with no waiting.
    import socket

    from lmi_gevent.emulator.api import RuntimeProcess

    rounds = 300
    with socket.create_server(("127.0.0.1", 0)) as server:
        process = RuntimeProcess([sys.executable, "-c", ECHO_THEN_ACK, str(server.getsockname()[1]),
                                  str(rounds)], env=os.environ, cwd=None)
        try:
            conn, _ = server.accept()
            with conn, conn.makefile("rb") as acks:
                missing = []
                for i in range(rounds):
                    assert acks.readline() == b"%d\n" % i
                    if f"line {i}\n" not in process.output():
                        missing.append(i)
                    conn.sendall(b"k")
            assert missing == []
            assert process.wait(10) == 0
        finally:
            process.kill()
