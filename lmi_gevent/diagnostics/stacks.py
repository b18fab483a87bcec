"""Stacks as the runtime reports them: captured cheaply (no source read), formatted like a
traceback, and attributed to the handler's own code rather than the runtime's plumbing."""

from __future__ import annotations

import linecache
import os
import sys
import sysconfig
from typing import Any, NamedTuple

import gevent
import greenlet

STACK_DEPTH = 64  # frames kept per stack


class Frame(NamedTuple):
    filename: str
    lineno: int
    function: str


def frames_from(frame: Any) -> list[Frame]:
    """The stack ending at ``frame``, outermost first; reads no source files."""
    frames: list[Frame] = []
    while frame is not None and len(frames) < STACK_DEPTH:
        code = frame.f_code
        frames.append(Frame(code.co_filename, frame.f_lineno or 0, code.co_name))
        frame = frame.f_back
    frames.reverse()
    return frames


def format_stack(stack: list[Frame]) -> list[str]:
    lines = []
    for frame in stack:
        lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.function}')
        source = linecache.getline(frame.filename, frame.lineno).strip()
        if source:
            lines.append(f"    {source}")
    return lines


def _directories(*paths: str) -> tuple[str, ...]:
    return tuple(sorted({os.path.join(os.path.realpath(path), "") for path in paths}))


# lmi_gevent itself (this file is in its diagnostics/ package), gevent and greenlet.
_PLUMBING = _directories(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         os.path.dirname(gevent.__file__), os.path.dirname(greenlet.__file__))
_SITE_PACKAGES = _directories(*(sysconfig.get_paths()[key] for key in ("purelib", "platlib")),
                              *(path for path in sys.path if path.endswith("-packages")))
# os.py lives in the stdlib itself (a venv's sysconfig "stdlib" is the venv's own lib dir).
_STDLIB = _directories(os.path.dirname(os.__file__))


def frame_kind(frame: Frame) -> str:
    """``plumbing`` (lmi-gevent, gevent, greenlet), ``third-party``, ``stdlib`` or ``user``."""
    if frame.filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return "plumbing"
    path = os.path.realpath(frame.filename)
    if path.startswith(_PLUMBING):
        return "plumbing"
    if path.startswith(_SITE_PACKAGES):  # checked before the stdlib, which may contain it
        return "third-party"
    if path.startswith(_STDLIB):
        return "stdlib"
    return "user"


def user_stack(stack: list[Frame]) -> list[Frame]:
    """``stack`` without the runtime's own outer frames (slot loop, invoke path)."""
    for start, frame in enumerate(stack):
        if frame_kind(frame) != "plumbing":
            return stack[start:]
    return stack


def call_site(stack: list[Frame]) -> str:
    """``file:line`` where a stall is attributed, for deduplication and the report.

    The innermost frame of the function's own code, so that a blocking driver is reported
    where the handler calls it. Dependencies deployed into the task root (the usual Lambda
    package) count as the function's code. Failing that, the innermost third-party frame,
    then the innermost frame.
    """
    kinds = [frame_kind(frame) for frame in stack]
    for wanted in ("user", "third-party"):
        for frame, kind in zip(reversed(stack), reversed(kinds), strict=True):
            if kind == wanted:
                return f"{frame.filename}:{frame.lineno}"
    if stack:
        return f"{stack[-1].filename}:{stack[-1].lineno}"
    return "<unknown>"
