"""Which frame a stall is attributed to (the key that makes reports once per call site)."""

from __future__ import annotations

import os
import sysconfig

import pytest

import lmi_gevent.invocation.invoker
from lmi_gevent.diagnostics.stacks import Frame, call_site, frame_kind, user_stack

pytestmark = pytest.mark.timeout(10)

SITE = sysconfig.get_paths()["purelib"]
STDLIB = os.path.dirname(os.__file__)
SLOT = Frame(lmi_gevent.invocation.invoker.__file__, 83, "_call_handler")
HANDLER = Frame("/var/task/app.py", 12, "handler")
HELPER = Frame("/var/task/db.py", 7, "query")
DRIVER = Frame(os.path.join(SITE, "MySQLdb", "cursors.py"), 319, "_query")
STDLIB_FRAME = Frame(os.path.join(STDLIB, "socket.py"), 700, "recv_into")


def test_frames_are_classified():
    assert [frame_kind(f) for f in (SLOT, HANDLER, DRIVER, STDLIB_FRAME)] == [
        "plumbing", "user", "third-party", "stdlib"]


def test_a_blocking_driver_is_attributed_to_the_innermost_user_frame():
    assert call_site([SLOT, HANDLER, HELPER, DRIVER, STDLIB_FRAME]) == "/var/task/db.py:7"


def test_without_user_code_the_third_party_frame_then_the_innermost_is_used():
    assert call_site([SLOT, DRIVER, STDLIB_FRAME]) == f"{DRIVER.filename}:319"
    assert call_site([SLOT, STDLIB_FRAME]) == f"{STDLIB_FRAME.filename}:700"
    assert call_site([]) == "<unknown>"


def test_the_runtime_s_outer_frames_are_left_out_of_the_stack_shown():
    assert user_stack([SLOT, HANDLER, DRIVER]) == [HANDLER, DRIVER]
    assert user_stack([SLOT]) == [SLOT]
