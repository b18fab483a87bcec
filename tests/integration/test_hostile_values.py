"""Hostile but realistic return values and handler failures, side by side with awslambdaric.

Every invocation gets exactly one answer — the official client's error type and message where it
has one — promptly, and the next invocation is served, in sequential mode, in concurrent mode with
one process and with 2 workers; afterwards the runtime still stops on SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from lmi_gevent.emulator.api import Emulator
from tests.support import OFFICIAL_RUNTIME, RUNTIME, start_runtime

pytestmark = pytest.mark.timeout(120)

APP = """
import decimal, os, sys


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("__str__ refuses")


class Unprintable:
    def __str__(self):
        raise RuntimeError("__str__ refuses")


def nested(depth):
    value = 0
    for _ in range(depth):
        value = [value]
    return value


def recurse(n):
    return recurse(n + 1) + 1


def cycle():
    d = {}
    d["d"] = d
    return d


def list_cycle():
    items = []
    items.append(items)
    return items


def handler(event, context):
    case = event["case"]
    if case == "ok":
        return {"pid": os.getpid()}
    if case == "recursion":
        return recurse(0)
    if case == "memory":
        raise MemoryError()
    if case == "raising __str__ exception":
        raise BadStr()
    return {
        "cycle": cycle,
        "list cycle": list_cycle,
        "tuple key": lambda: {(1, 2): "x"},
        "decimal key": lambda: {decimal.Decimal("1.5"): 1},
        "set": lambda: {1, 2},
        "generator": lambda: (i for i in range(3)),
        "object with a raising __str__": Unprintable,
        "deep nesting": lambda: nested(100_000),
        "bad utf-8 bytes inside": lambda: {"b": b"\\xff"},
        "huge int": lambda: 10 ** 400,
        "nan": lambda: float("nan"),
    }[case]()
"""

CASES = ["cycle", "list cycle", "tuple key", "decimal key", "set", "generator",
         "object with a raising __str__", "deep nesting", "bad utf-8 bytes inside", "huge int",
         "nan", "recursion", "memory", "raising __str__ exception"]

MODES = {
    "sequential": {"concurrency": 1, "env": {}},
    "concurrent, one process": {"concurrency": 4, "env": {"LMI_GEVENT_WORKERS": "1"}},
    "concurrent, 2 workers": {"concurrency": 4, "env": {"LMI_GEVENT_WORKERS": "2"}},
}


def answer_of(emulator: Emulator, case: str) -> dict[str, Any]:
    """What the caller got: the body (an error's type and message) or no answer at all."""
    try:
        result = emulator.invoke({"case": case}, timeout=15)
    except TimeoutError:
        return {"answered": False}
    body = result.json() if result.body else None
    if result.function_error and isinstance(body, dict):
        # 3.14 names the C stack used when it overflowed, which differs between a greenlet
        # and awslambdaric's main thread; the rest of the message must match.
        message = re.sub(r"Stack overflow \(used \d+ kB\)", "Stack overflow (used N kB)",
                         str(body.get("errorMessage")))
        return {"answered": True, "errorType": body.get("errorType"), "errorMessage": message}
    return {"answered": True, "body": body}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    (root / "app.py").write_text(APP)
    return root


@pytest.fixture(scope="module")
def official(app: Path) -> dict[str, dict[str, Any]]:
    """awslambdaric's answer to each case (a fresh runtime when one case kills it)."""
    answers: dict[str, dict[str, Any]] = {}
    with Emulator(timeout=20) as emulator:
        runtime = start_runtime(emulator, app, argv=OFFICIAL_RUNTIME)
        for case in CASES:
            if runtime.returncode is not None:
                runtime = start_runtime(emulator, app, argv=OFFICIAL_RUNTIME)
            answers[case] = answer_of(emulator, case)
        runtime.stop()
    return answers


@pytest.mark.parametrize("mode", list(MODES))
def test_each_hostile_value_gets_one_answer_and_the_slot_keeps_serving(
        app: Path, official: dict[str, dict[str, Any]], mode: str) -> None:
    settings = MODES[mode]
    with Emulator(concurrency=settings["concurrency"], timeout=20) as emulator:
        runtime = start_runtime(emulator, app, concurrency=settings["concurrency"],
                                env=settings["env"], argv=RUNTIME)
        for case in CASES:
            ours = answer_of(emulator, case)
            assert ours["answered"], f"{case}: no answer\n{runtime.output()}"
            if official[case]["answered"]:
                assert ours == official[case], case
            else:  # awslambdaric has no answer here; ours is still one error answer
                assert ours.get("errorType"), case
            assert answer_of(emulator, "ok")["answered"], f"not served after {case}"
        stats = emulator.stats()
        assert stats["answered"] == 2 * len(CASES)
        assert stats["repeated_answers"] == 0
        assert runtime.returncode is None, runtime.output()
        runtime.send_signal(signal.SIGTERM)
        assert runtime.wait(timeout=20) == 0, runtime.output()
        assert group_is_gone(runtime.pid), "a process of the runtime is still running"


def group_is_gone(group: int, timeout: float = 10) -> bool:
    """True once no process is left in the runtime's process group (its workers included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False
