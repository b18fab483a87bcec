"""Each asyncio task step in a greenlet of its own, so that a blocking call inside ``async def``
(``time.sleep``, ``requests.get``: cooperative after ``patch_all``) holds only its own task,
not the process's one event loop (docs/async.md, "Blocking calls inside async def").

A step is one resumption of a task's coroutine, up to its next ``await`` that suspends. The
loop runs it in a fresh greenlet whose parent is the loop's greenlet: a step that never
blocks ends and hands straight back (one greenlet switch pair). A step that blocks switches to
the gevent hub instead; the switch hook below then

* parks the task as "not current" (asyncio allows one current task per loop at a time, and
  other tasks' steps now run on the same loop) and restores it when the step resumes;
* makes the step's parent the hub and wakes the loop's greenlet, so the loop goes on with
  the other tasks while this step waits.

asyncio's own bookkeeping is kept: steps still enter and leave their task through
``asyncio.tasks._enter_task``/``_leave_task`` (stable from 3.7 to 3.14), nothing is
re-implemented.
"""

from __future__ import annotations

import contextvars
from typing import Any, Callable

import gevent
import greenlet

STEP = "lmi_gevent_step_of"  # a step greenlet's attribute: the loop it steps
PARKED = "lmi_gevent_parked_task"


def step_loop_class() -> type:
    """An asyncio event loop class whose task steps run in greenlets of their own."""
    import asyncio

    class StepLoop(asyncio.SelectorEventLoop):
        loop_greenlet: Any = None

        def call_soon(self, callback: Callable[..., Any], *args: Any,  # type: ignore[override]
                      context: contextvars.Context | None = None) -> Any:
            # A task's step or wakeup (its __self__ is the task) runs the task's code.
            if isinstance(getattr(callback, "__self__", None), asyncio.Task):
                return super().call_soon(run_step, self, callback, args,
                                         context or contextvars.copy_context(),
                                         context=_WRAPPER_CONTEXT)
            return super().call_soon(callback, *args, context=context)

    return StepLoop


_WRAPPER_CONTEXT = contextvars.Context()  # run_step itself needs no context of its own


def run_step(loop: Any, callback: Callable[..., Any], args: tuple[Any, ...],
             context: contextvars.Context) -> None:
    """In the loop's greenlet: run one step in a fresh greenlet; returns when the step ended
    or blocked (then the switch hook wakes this greenlet and the step goes on by itself)."""
    step = greenlet.greenlet(_step_body, parent=greenlet.getcurrent())
    setattr(step, STEP, loop)
    # The task's context is the greenlet's own (as Context.run would make it current), so
    # whoever looks at the greenlet (the stall detector) finds the invocation's ids.
    step.gr_context = context
    step.switch(loop, callback, args)


def _step_body(loop: Any, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        callback(*args)
    except BaseException as problem:  # noqa: BLE001 - a task re-raises SystemExit and the like
        if not isinstance(problem, greenlet.GreenletExit):
            # After a block this greenlet's parent is the hub, which must not get it.
            loop.call_exception_handler({"message": "an asyncio task step raised",
                                         "exception": problem})
    finally:
        if greenlet.getcurrent().parent is not loop.loop_greenlet:
            # It blocked, so it ends while the loop waits in its selector, and what the step
            # scheduled (a timer, a callback) would wait for the next wake-up: wake it now.
            loop.call_soon_threadsafe(_nothing)


def _nothing() -> None:
    pass


def install_switch_hook(loop: Any, loop_greenlet: Any) -> None:
    """Park and restore the current task of steps that block, and hand the loop on."""
    import asyncio

    tasks: Any = asyncio.tasks  # _enter_task and _leave_task have no stubs worth trusting
    current_task, enter, leave = tasks.current_task, tasks._enter_task, tasks._leave_task
    set_running = asyncio.events._set_running_loop
    hub = gevent.get_hub()
    previous: Callable[[str, Any], Any] | None = None

    def on_switch(event: str, args: Any) -> Any:
        outcome = previous(event, args) if previous is not None else None
        if event != "switch" and event != "throw":
            return outcome
        origin, target = args
        if getattr(origin, STEP, None) is loop and not origin.dead:
            running = current_task(loop)
            if running is not None:  # blocked mid-step: other tasks' steps run meanwhile
                leave(loop, running)
                setattr(origin, PARKED, running)
            if target is hub and origin.parent is loop_greenlet:
                origin.parent = hub  # it ends later, from the hub; the loop goes on now
                hub.loop.run_callback(loop_greenlet.switch)
        if getattr(target, STEP, None) is loop:
            set_running(loop)  # a fresh greenlet has no running loop of its own
            parked = getattr(target, PARKED, None)
            if parked is not None:
                setattr(target, PARKED, None)
                enter(loop, parked)
        return outcome

    loop.loop_greenlet = loop_greenlet
    previous = greenlet.settrace(on_switch)
