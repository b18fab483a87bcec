"""In the runtime under ``lmi-gevent check``: the process state that invocations change, which
one process shares between them (reported as warnings in the runtime's log, read back by check):
globals rebound (and where, from the bytecode), environment variables and the working
directory (and the line that wrote them), invocation values left in module-level objects,
module-level containers that keep growing, and libraries that block once used (sqlite3).

Imported by :mod:`lmi_gevent.lifecycle` only when check starts it (``LMI_GEVENT_CHECK_GLOBALS``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import FunctionType, ModuleType
from typing import Any

GLOBALS_ENV = "LMI_GEVENT_CHECK_GLOBALS"  # internal: set by check for the runtime it starts


class GlobalsWatch:
    """Process state that invocations change, which one process shares between them: the
    globals of the handler's module that invocations rebind (``global x; x = ...``), the
    working directory and environment variables; and the invocation's own values left in
    module-level objects after it ended (:mod:`lmi_gevent.diagnostics.state_finder`).

    Under the official client each slot is a process with its own copy of all three; in
    concurrent mode the invocations running beside each other overwrite them. After each
    invocation the state is compared with its state after the one before: what is set once
    and then left alone (lazy initialisation, done by check's warm-up invocation) is not
    reported, nor is a shared object changed in place (a cache). A global rebound to an
    equal cached object (a small int, an interned string) looks unchanged: check varies the
    events so that such values differ.
    """

    def __init__(self, module: Any) -> None:
        self.module = module
        self.previous: dict[tuple[str, str], Any] | None = None
        self.reported: set[tuple[str, str]] = set()
        self.searches = 0
        self.writes = global_writes(module)
        self.write_sites = trace_process_writes()
        self.library_uses = LibraryUses()
        self.library_uses.watch()
        self.containers = GrowingContainers(module)

    def wrap(self, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def watched(event: Any, context: Any) -> Any:
            new_event = self.containers.before(event)
            try:
                return handler(event, context)
            finally:
                self.after_invocation()
                self.find_left_values(event, context)
                self.report_growth(self.containers.after(new_event))
                self.library_uses.watch()

        return watched

    def report_growth(self, grown: list[tuple[str, int, int]]) -> None:
        import logging

        for name, before, after in grown:
            self.containers.reported.add(name)
            logging.getLogger("lmi_gevent").warning(
                "The module-level %s of %s grows with invocations of events it has seen "
                "(%d then %d entries); in concurrent mode every invocation shares it.",
                name, self.module.__name__, before, after,
                extra={"sharedState": {"kind": "container", "name": name,
                                       "module": self.module.__name__,
                                       "value": f"{before} then {after} entries"}})

    def find_left_values(self, event: Any, context: Any) -> None:
        """Report each module-level place that holds this invocation's own values.

        The first two invocations (check runs them one after the other, untimed) are
        searched: what only the first left is set once (a client made with the first
        event's region) and is not reported; what the second left is written by every
        invocation. The walk costs milliseconds of CPU over a large object graph (a boto3
        client's), which would skew check's timing of the later invocations.
        """
        if self.searches >= 2:
            return
        self.searches += 1
        if self.searches == 1:
            return
        import logging

        import gevent

        from .state_finder import find_left_values, invocation_marks

        request_id, marks = invocation_marks(event, context)
        for left in find_left_values(self._roots(), request_id, marks, pause=lambda: gevent.sleep(0)):
            key = ("value", left.place)
            if key in self.reported:
                continue
            self.reported.add(key)
            self.containers.reported.add(left.path.split(".")[0].split("[")[0])
            logging.getLogger("lmi_gevent").warning(
                "An invocation left %s in %s (%s) after it ended; in concurrent mode every "
                "invocation shares that object.", left.source, left.path, left.value,
                extra={"sharedState": {"kind": "value", "name": left.path,
                                       "module": self.module.__name__, "source": left.source,
                                       "value": left.value}})

    def _roots(self) -> dict[str, Any]:
        """The handler module's globals worth searching: objects, and its own classes."""
        roots: dict[str, Any] = {}
        for name, value in vars(self.module).items():
            if name.startswith("__") or isinstance(value, (ModuleType, FunctionType)):
                continue
            if isinstance(value, type):
                if value.__module__ == self.module.__name__:
                    roots[name] = dict(vars(value))
                continue
            roots[name] = value
        return roots

    def snapshot(self) -> dict[tuple[str, str], Any]:
        state: dict[tuple[str, str], Any] = {
            ("global", name): _Bound(value) for name, value in vars(self.module).items()
            if not name.startswith("__")}
        try:
            state[("cwd", "")] = os.getcwd()
        except OSError:  # removed under us
            state[("cwd", "")] = None
        state.update({("env", key): value for key, value in os.environ.items()
                      if key != "_X_AMZN_TRACE_ID"})  # per invocation by design
        return state

    def after_invocation(self) -> None:
        import logging

        now = self.snapshot()
        previous, self.previous = self.previous, now
        if previous is None:
            return
        for key in sorted(now.keys() | previous.keys()):
            if key in self.reported or previous.get(key) == now.get(key):
                continue
            self.reported.add(key)
            kind, name = key
            message = {
                "global": f"Invocations rebind the module global {name!r} of "
                          f"{self.module.__name__}",
                "cwd": "Invocations change the working directory (os.chdir)",
                "env": f"Invocations set os.environ[{name!r}]",
            }[kind]
            shared = {"kind": kind, "name": name, "module": self.module.__name__}
            if kind == "global":
                shared["site"] = ", ".join(self.writes.get(name, ()))
            elif key in self.write_sites:
                shared["site"] = self.write_sites[key]
                before, after = _short(previous.get(key)), _short(now.get(key))
                shared["value"] = (f"{before} then {after}" if before != after else
                                   f"a new {after} each time")
            logging.getLogger("lmi_gevent").warning(
                "%s; in concurrent mode every invocation shares it.", message,
                extra={"sharedState": shared})


class GrowingContainers:
    """Module-level lists, dicts, sets and deques that grow even while every invocation
    replays an event seen before: they accumulate per-invocation data (a cache keyed by the
    event stops growing once each event was seen). Sizes are compared between moments when
    no invocation of a new event is in flight."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.seen: set[str] = set()
        self.new_in_flight = 0
        self.baseline: dict[str, int] | None = None
        self.reported: set[str] = set()

    def before(self, event: Any) -> bool:
        """Note the invocation's event; True when it is one not seen before."""
        import json

        try:
            key = json.dumps(event, sort_keys=True, default=repr)
        except (TypeError, ValueError):
            key = repr(event)
        if key in self.seen:
            return False
        self.seen.add(key)
        self.new_in_flight += 1
        self.baseline = None  # it may fill a cache: sizes count from after it
        return True

    def after(self, new_event: bool) -> list[tuple[str, int, int]]:
        """(name, size before, size now) for each container that grew since the baseline."""
        if new_event:
            self.new_in_flight -= 1
        if self.new_in_flight:
            return []
        from collections import deque

        sizes = {name: len(value) for name, value in vars(self.module).items()
                 if not name.startswith("__") and isinstance(value, (list, dict, set, deque))}
        baseline, self.baseline = self.baseline, sizes
        if baseline is None:
            return []
        return [(name, baseline[name], size) for name, size in sizes.items()
                if name in baseline and size > baseline[name] and name not in self.reported]


class _Bound:
    """A global's binding: equal when it is the same object (what a rebinding changes)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Bound) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


def _short(bound: Any) -> str:
    text = repr(bound.value) if isinstance(bound, _Bound) else repr(bound)
    return text if len(text) <= 60 else text[:57] + "..."


def global_writes(module: ModuleType) -> dict[str, list[str]]:
    """{global name: ["file:line", ...]} for every ``global x; x = ...`` in the module's code
    (its functions, its classes' methods and what they nest), read from the bytecode."""
    import dis
    from types import CodeType

    writes: dict[str, list[str]] = {}
    todo: list[CodeType] = []
    for value in vars(module).values():
        candidates = vars(value).values() if isinstance(value, type) else (value,)
        for candidate in candidates:
            code = getattr(getattr(candidate, "__func__", candidate), "__code__", None)
            if isinstance(code, CodeType) and code.co_filename == getattr(module, "__file__", ""):
                todo.append(code)
    seen: set[int] = set()
    while todo:
        code = todo.pop()
        if id(code) in seen:
            continue
        seen.add(id(code))
        todo += [const for const in code.co_consts if isinstance(const, CodeType)]
        starts = {offset: line for offset, line in dis.findlinestarts(code) if line}
        line = code.co_firstlineno
        for instruction in dis.get_instructions(code):
            line = starts.get(instruction.offset, line)
            if instruction.opname in ("STORE_GLOBAL", "DELETE_GLOBAL"):
                site = f"{code.co_filename}:{line}"
                sites = writes.setdefault(str(instruction.argval), [])
                if site not in sites:
                    sites.append(site)
    return writes


class LibraryUses:
    """Libraries whose mere import is harmless but whose use blocks: logged on first use.

    sqlite3 is imported (to be patched) by tracers that never open a database; a connection
    is what runs queries to completion in C. ``sqlite3.connect`` is wrapped once sqlite3 is
    loaded (checked again after every invocation, for a lazy import).
    """

    def __init__(self) -> None:
        self.wrapped = False
        self.reported = False

    def watch(self) -> None:
        module = sys.modules.get("sqlite3")
        if self.wrapped or module is None:
            return
        self.wrapped = True
        connect = module.connect

        def watched_connect(*args: Any, **kwargs: Any) -> Any:
            self.used("sqlite3", "_sqlite3")
            return connect(*args, **kwargs)

        module.connect = watched_connect  # type: ignore[attr-defined]

    def used(self, library: str, module: str) -> None:
        if self.reported:
            return
        self.reported = True
        import logging

        site = _caller_site()
        logging.getLogger("lmi_gevent").warning(
            "An invocation used %s (at %s): each of its calls runs to completion in C.",
            library, site, extra={"libraryUse": {"library": library, "module": module,
                                                 "site": site}})


def trace_process_writes() -> dict[tuple[str, str], str]:
    """{("env", KEY) or ("cwd", ""): "file:line"}, filled as the process environment and the
    working directory are written (os.putenv, which os.environ calls, and os.chdir), with
    the latest writer's site: the snapshot says *that* they changed, this says *where*."""
    sites: dict[tuple[str, str], str] = {}
    putenv, unsetenv, chdir = os.putenv, os.unsetenv, os.chdir

    def traced_putenv(key: Any, value: Any) -> None:
        sites[("env", os.fsdecode(key))] = _caller_site()
        putenv(key, value)

    def traced_unsetenv(key: Any) -> None:
        sites[("env", os.fsdecode(key))] = _caller_site()
        unsetenv(key)

    def traced_chdir(path: Any) -> None:
        sites[("cwd", "")] = _caller_site()
        chdir(path)

    os.putenv, os.unsetenv, os.chdir = traced_putenv, traced_unsetenv, traced_chdir
    return sites


def _caller_site() -> str:
    """file:line of the nearest caller outside lmi_gevent and the os module."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame = sys._getframe(1)
    while frame is not None and (frame.f_globals.get("__name__") == "os"  # may be frozen
                                 or os.path.abspath(frame.f_code.co_filename).startswith(here)):
        frame = frame.f_back  # type: ignore[assignment]
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"


def watch_globals(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``handler``, reporting the process state that its invocations change (GlobalsWatch)."""
    module = sys.modules.get(getattr(handler, "__module__", None) or "")
    return handler if module is None else GlobalsWatch(module).wrap(handler)
