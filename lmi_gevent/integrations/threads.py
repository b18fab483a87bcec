"""What a handler starts runs for its invocation (concurrent mode).

The request id, tenant id and trace id live in context variables set in the slot's greenlet.
A new greenlet or thread starts with an empty context, so a handler that fans work out
(``gevent.spawn``, a pool, ``threading.Thread`` — a greenlet once patched — or a
``ThreadPoolExecutor``) would log without its request id and read no ``_X_AMZN_TRACE_ID``.
:func:`install` makes each of them start in a copy of its creator's context, the way an
asyncio task does:

* greenlets made by ``gevent.spawn``, ``gevent.spawn_later``, ``gevent.pool`` pools and
  groups (``spawn``, ``map``, ``imap``, ``apply_async``…) and ``_thread.start_new_thread``;
* ``threading.Thread``: ``start()`` copies the starting code's context (also on Python 3.14,
  whose threads otherwise start in a fresh one);
* ``concurrent.futures.ThreadPoolExecutor.submit`` (and so ``map`` and asyncio's
  ``run_in_executor``): each work item runs in its submitter's context, not in that of
  whichever invocation happened to start the pool's worker, so a pool shared by many
  invocations attributes every item to the right one.

A copy is taken when the greenlet or thread starts: one that outlives its invocation keeps
that invocation's ids. Greenlets made with ``gevent.spawn_raw`` or by calling
``gevent.Greenlet(...)`` directly start empty (their log lines carry no request id).
Sequential mode does not need this: there, the ids are also process-wide, as in the
official client (:func:`lmi_gevent.invocation.context.current_ids`).
"""

from __future__ import annotations

import contextvars
import functools
from types import ModuleType
from typing import Any, Callable

from .hooks import when_imported

EXECUTOR_MODULE = "concurrent.futures.thread"


def install() -> None:
    """Call once, after ``gevent.monkey.patch_all()`` and before the handler is imported."""
    import threading

    import gevent
    import gevent.pool
    import gevent.thread

    greenlet_class: Any = inheriting(gevent.Greenlet)
    gevent.spawn = greenlet_class.spawn
    gevent.spawn_later = greenlet_class.spawn_later
    gevent.thread.Greenlet = greenlet_class  # _thread.start_new_thread
    # Pools and groups: their own greenlets, and the ones that drive map/imap/apply_async.
    gevent.pool.Group.greenlet_class = greenlet_class
    gevent.pool.Greenlet = greenlet_class
    gevent.pool.IMap = inheriting(gevent.pool.IMap)
    gevent.pool.IMapUnordered = inheriting(gevent.pool.IMapUnordered)
    threading.Thread.start = _start_in_callers_context(threading.Thread.start)  # type: ignore[method-assign, assignment]

    when_imported(EXECUTOR_MODULE, _patch_executor)


def inheriting(base: type) -> type:
    """A subclass of the gevent Greenlet class ``base`` whose instances start in a copy of
    their creator's context (gevent's classes are compiled and cannot be changed in place)."""

    base_init: Any = base.__init__  # type: ignore[misc]

    class Inheriting(base):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            base_init(self, *args, **kwargs)
            self.gr_context = contextvars.copy_context()

    Inheriting.__name__ = Inheriting.__qualname__ = base.__name__
    Inheriting.__module__ = base.__module__
    Inheriting.__doc__ = base.__doc__
    return Inheriting


def _start_in_callers_context(start: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(start)
    def start_in_callers_context(thread: Any) -> None:
        context = contextvars.copy_context()
        run = thread.run  # bound now: a subclass's own run() is kept
        thread.run = lambda: context.run(run)
        start(thread)

    return start_in_callers_context


def _patch_executor(module: ModuleType) -> None:
    executor = module.ThreadPoolExecutor
    submit = executor.submit
    if getattr(submit, "lmi_gevent", False):
        return

    @functools.wraps(submit)
    def submit_in_callers_context(self: Any, fn: Callable[..., Any], /, *args: Any,
                                  **kwargs: Any) -> Any:
        return submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

    submit_in_callers_context.lmi_gevent = True  # type: ignore[attr-defined]
    executor.submit = submit_in_callers_context
