"""Concurrent mode's event loop: one asyncio loop per worker process, running in its own
greenlet for the life of the process (docs/async.md, "The event-loop model").

Why one loop in one greenlet, and not a loop per slot greenlet: asyncio keeps the running
loop (and, from 3.14, the current task) per OS thread, and every slot shares the one thread,
so loops per greenlet leak into each other unless every switch swaps them; and a loop per
invocation cannot serve a client created at import or at startup, which stays bound to the
loop it first ran on. Here the loop greenlet's running loop is parked and restored on each
switch by :mod:`lmi_gevent.integrations.asyncio`, so a sync handler's ``asyncio.run`` in a
slot greenlet still gets a loop of its own.

After ``patch_all`` the loop's selector waits through gevent, so while the loop has nothing
to run the hub serves the slots; a slot awaiting a coroutine waits on a gevent result,
settled by the task's done callback in the loop greenlet.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any, Awaitable

import gevent
from gevent.event import AsyncResult

from ..invocation import coroutines
from . import task_steps

log = logging.getLogger("lmi_gevent")

# How long the loop's end may wait for its greenlet (its tasks were cancelled before).
STOP_TIMEOUT = 2.0


class GreenletLoop:
    """The worker's loop, running ``run_forever`` in a greenlet of its own."""

    def __init__(self) -> None:
        self.loop = task_steps.step_loop_class()()
        self.greenlet = gevent.spawn(self.loop.run_forever)
        self.greenlet.name = "lmi-gevent event loop"
        self.waiting: set[AsyncResult] = set()  # the slots' answers still to come
        self.greenlet.link(self._ended)
        task_steps.install_switch_hook(self.loop, self.greenlet)

    def _ended(self, loop_greenlet: Any) -> None:
        """The loop stopped (closed, or run_forever failed): no waiting slot may hang."""
        problem = RuntimeError("the process's event loop stopped before the invocation's task "
                               f"ended ({loop_greenlet.exception or 'stopped'})")
        for answer in list(self.waiting):
            answer.set((False, problem))

    def run(self, awaitable: Awaitable[Any], context: contextvars.Context | None = None) -> Any:
        if gevent.getcurrent() is self.greenlet:
            raise RuntimeError("ProcessLoop.run() called from the event loop itself: await the "
                               "coroutine instead")
        answer: AsyncResult = AsyncResult()
        tasks: list[Any] = []

        def settle(task: Any) -> None:
            answer.set((False, _cancelled()) if task.cancelled() else task.result())

        def start() -> None:  # in the loop greenlet
            task = coroutines.start_task(self.loop, awaitable, context or caller_context)
            task.add_done_callback(settle)
            tasks.append(task)

        if self.greenlet.dead:
            raise RuntimeError("the process's event loop has stopped")
        caller_context = contextvars.copy_context()
        self.loop.call_soon_threadsafe(start)
        self.waiting.add(answer)
        try:
            outcome = answer.get()
        except BaseException:
            if not answer.ready() and not self.loop.is_closed():
                # The slot was cut (deadline, drain): the task must not run on unanswered.
                self.loop.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])
            raise
        finally:
            self.waiting.discard(answer)
        return coroutines.settled(outcome)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.greenlet.join(timeout=STOP_TIMEOUT)
        if self.greenlet.dead:
            self.loop.close()
        else:
            log.warning("The event loop did not stop within %.0fs; leaving it to the exit.",
                        STOP_TIMEOUT)


def _cancelled() -> BaseException:
    import asyncio

    return asyncio.CancelledError("the invocation's task was cancelled")


def install() -> None:
    """Concurrent mode: the process's loop is a :class:`GreenletLoop` (built on first use)."""
    coroutines.use(GreenletLoop)
