"""asyncio in concurrent handlers: each greenlet keeps its own running loop (and, on Python
3.14+, its own current task), so a handler may call ``asyncio.run()`` while other invocations
do the same.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, Callable

from .hooks import when_imported

MODULE = "asyncio"


def install() -> None:
    when_imported(MODULE, running_loop_per_greenlet)


def running_loop_per_greenlet(asyncio: ModuleType) -> None:
    """Let every invocation run its own asyncio event loop (``asyncio.run`` in a handler).

    asyncio keeps "the running loop" per OS thread, and all slots share one thread: while one
    invocation's loop waits (its selector yields to gevent), a second ``asyncio.run`` fails
    with "cannot be called from a running event loop", and ``get_running_loop()`` would hand
    out another invocation's loop. A greenlet switch hook parks the running loop on the
    greenlet that switches out and restores the one of the greenlet that switches in, so each
    greenlet sees only its own. Python 3.14 also keeps the current task per thread (see
    :func:`task_swapper`); the hook parks it with the loop. A loop that runs in a greenlet of
    its own (spawned, or one persistent loop per process) is parked the same way. The hook is
    installed only once the handler imports asyncio; it costs ~0.35 µs per switch.
    """
    import greenlet

    events = asyncio.events
    get_running, set_running = events._get_running_loop, events._set_running_loop
    swap_task = task_swapper(asyncio)
    previous: Callable[[str, Any], Any] | None = None

    def on_switch(event: str, args: Any) -> Any:
        if event == "switch" or event == "throw":
            origin, target = args
            running = get_running()
            if running is not None:
                origin.lmi_gevent_loop = running
                if swap_task is not None:
                    origin.lmi_gevent_task = swap_task(running, None)
            parked = getattr(target, "lmi_gevent_loop", None)
            if parked is not None:
                target.lmi_gevent_loop = None
            if parked is not running:
                set_running(parked)
            if parked is not None and swap_task is not None:
                task = getattr(target, "lmi_gevent_task", None)
                if task is not None:
                    target.lmi_gevent_task = None
                    swap_task(parked, task)
        if previous is not None:
            return previous(event, args)
        return None

    previous = greenlet.settrace(on_switch)


def task_swapper(asyncio: ModuleType) -> Callable[[Any, Any], Any] | None:
    """``swap(loop, task) -> previous task`` where the current task is kept per OS thread.

    Up to 3.13 asyncio maps each loop to its current task, so a loop per greenlet is enough.
    From 3.14 the C accelerator keeps the current task in the thread state next to the running
    loop: a step of one invocation's task that yields to gevent would leave its task "entered"
    for every other greenlet ("Cannot enter into task ... while another task ... is being
    executed"), and ``current_task()`` would name another invocation's task. The swap function
    asyncio itself uses for eager tasks moves it in and out; it checks ``loop`` is running.
    """
    if sys.version_info < (3, 14):
        return None
    swap: Callable[[Any, Any], Any] | None = getattr(asyncio.tasks, "_swap_current_task", None)
    return swap
