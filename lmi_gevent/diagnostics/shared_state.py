"""In the runtime under ``lmi-gevent check``: the process state that invocations change, which
one process shares between them (reported as warnings in the runtime's log, read back by check).

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
    reported, nor is a shared object changed in place (a cache).
    """

    def __init__(self, module: Any) -> None:
        self.module = module
        self.previous: dict[tuple[str, str], Any] | None = None
        self.reported: set[tuple[str, str]] = set()
        self.searched = False

    def wrap(self, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def watched(event: Any, context: Any) -> Any:
            try:
                return handler(event, context)
            finally:
                self.after_invocation()
                self.find_left_values(event, context)

        return watched

    def find_left_values(self, event: Any, context: Any) -> None:
        """Report each module-level place that holds this invocation's own values.

        One invocation is enough to leave its values behind, and the walk costs milliseconds
        of CPU over a large object graph (a boto3 client's), which would skew check's timing
        of the later invocations: only the first invocation (check's warm-up) is searched.
        """
        if self.searched:
            return
        self.searched = True
        import logging

        import gevent

        from .state_finder import find_left_values, invocation_marks

        request_id, marks = invocation_marks(event, context)
        for left in find_left_values(self._roots(), request_id, marks, pause=lambda: gevent.sleep(0)):
            key = ("value", left.place)
            if key in self.reported:
                continue
            self.reported.add(key)
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
            ("global", name): id(value) for name, value in vars(self.module).items()
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
            logging.getLogger("lmi_gevent").warning(
                "%s; in concurrent mode every invocation shares it.", message,
                extra={"sharedState": {"kind": kind, "name": name,
                                       "module": self.module.__name__}})


def watch_globals(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``handler``, reporting the process state that its invocations change (GlobalsWatch)."""
    module = sys.modules.get(getattr(handler, "__module__", None) or "")
    return handler if module is None else GlobalsWatch(module).wrap(handler)
