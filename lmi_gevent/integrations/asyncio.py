"""asyncio in concurrent handlers: each greenlet keeps its own running loop, so a handler may
call ``asyncio.run()`` while other invocations do the same.
"""

from __future__ import annotations

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
    greenlet sees only its own. The hook is installed only once the handler imports asyncio;
    it costs ~0.35 µs per switch.
    """
    import greenlet

    events = asyncio.events
    get_running, set_running = events._get_running_loop, events._set_running_loop
    previous: Callable[[str, Any], Any] | None = None

    def on_switch(event: str, args: Any) -> Any:
        if event == "switch" or event == "throw":
            origin, target = args
            running = get_running()
            if running is not None:
                origin.lmi_gevent_loop = running
            parked = getattr(target, "lmi_gevent_loop", None)
            if parked is not None:
                target.lmi_gevent_loop = None
            if parked is not running:
                set_running(parked)
        if previous is not None:
            return previous(event, args)
        return None

    previous = greenlet.settrace(on_switch)
