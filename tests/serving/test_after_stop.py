"""What happens once the runtime stopped: the function's own signal handlers
(serving/function_signals.py) and the threads it left running (serving/sequential.py).

Each test runs in a fresh interpreter: the wrapper changes the process's ``signal`` module.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.support import REPO, run_python

pytestmark = pytest.mark.timeout(60)


def test_the_functions_registrations_are_recorded_not_installed() -> None:
    result = run_python(textwrap.dedent("""
        import json, os, signal
        from lmi_gevent.serving import function_signals as fs

        delivered = []
        def runtime(signum, frame): delivered.append("runtime")
        def mine(signum, frame): delivered.append("mine")
        def usr1(signum, frame): delivered.append("usr1")

        fs.install()
        fs.runtime_signal(signal.SIGTERM, runtime)
        previous = signal.signal(signal.SIGTERM, mine)
        again = signal.signal(signal.SIGTERM, mine)
        signal.signal(signal.SIGUSR1, usr1)
        try:
            signal.signal(signal.SIGINT, "not a handler")
            bad = None
        except TypeError as problem:
            bad = str(problem)
        os.kill(os.getpid(), signal.SIGTERM)  # the runtime's handler is the one installed
        os.kill(os.getpid(), signal.SIGUSR1)  # other signals: installed as the function asked
        out = {
            "previous": previous == signal.SIG_DFL,
            "again": again is mine,
            "seen": signal.getsignal(signal.SIGTERM) is mine,
            "delivered": delivered,
            "to_run": fs.function_handler(signal.SIGTERM) is mine,
            "sigint_default": fs.function_handler(signal.SIGINT),
            "sigint_ignored": (signal.signal(signal.SIGINT, signal.SIG_IGN) is signal.default_int_handler
                               and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
                               and fs.function_handler(signal.SIGINT) is None),
            "bad": bad,
        }
        fs.uninstall()
        out["restored"] = signal.getsignal(signal.SIGTERM) is mine
        print(json.dumps(out))
    """))
    assert result == {"previous": True, "again": True, "seen": True,
                      "delivered": ["runtime", "usr1"], "to_run": True, "sigint_default": None,
                      "sigint_ignored": True,
                      "bad": "signal handler must be signal.SIG_IGN, signal.SIG_DFL, or a "
                             "callable object", "restored": True}


@pytest.mark.parametrize("body, code", [("pass", None), ("sys.exit(3)", 3), ("sys.exit()", 0),
                                        ("raise ValueError('boom')", 1)])
def test_the_functions_handler_decides_the_exit_code(body: str, code: int | None) -> None:
    result = run_python(textwrap.dedent(f"""
        import json, signal, sys
        from lmi_gevent.serving import function_signals as fs

        calls = []
        def mine(signum, frame):
            calls.append((signum, frame is not None))
            {body}

        fs.install()
        signal.signal(signal.SIGTERM, mine)
        code = fs.run_function_handler(signal.SIGTERM)
        print(json.dumps({{"code": code, "calls": calls,
                          "none": fs.run_function_handler(None)}}))
    """))
    assert result == {"code": code, "calls": [[15, True]], "none": None}


def test_a_stopped_runtime_does_not_wait_for_a_thread_left_running() -> None:
    code = textwrap.dedent("""
        import signal, threading, time
        from lmi_gevent.serving.sequential import end_after_stop
        threading.Thread(target=time.sleep, args=(300,), name="left-running").start()
        end_after_stop(signal.SIGTERM)
        print("not reached")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert "not reached" not in done.stdout
    assert "Exiting without waiting for 1 thread(s) the function left running: left-running." \
        in done.stderr


def test_without_a_stop_signal_nothing_is_cut_short() -> None:
    result = run_python(textwrap.dedent("""
        import json, threading, time
        from lmi_gevent.serving.sequential import end_after_stop
        thread = threading.Thread(target=time.sleep, args=(0.2,))
        thread.start()
        code = end_after_stop(None, 1)  # a platform failure: the interpreter exits as usual
        print(json.dumps({"code": code, "alive": thread.is_alive()}))
    """))
    assert result == {"code": 1, "alive": True}
