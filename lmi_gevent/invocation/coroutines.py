"""``async def`` handlers: one asyncio event loop per process, alive as long as the process.

A handler that returns an awaitable (an ``async def`` function, an object whose ``__call__``
is ``async def``, a ``functools.partial`` of one) has it awaited on :func:`process_loop`, in a
task that starts in a copy of the invocation's context, so the request, trace and tenant ids
reach its logs and every task it starts. The same loop runs every invocation and the ASGI
lifespan, so a client bound to a loop (``httpx.AsyncClient``, an asyncpg pool) created at
import or at startup works in every invocation (docs/async.md).

Sequential mode uses :class:`SequentialLoop`: the loop runs only while an invocation waits
on it (``run_until_complete``), so a sync handler may still call ``asyncio.run`` between.
Concurrent mode installs :class:`lmi_gevent.serving.event_loop.GreenletLoop` instead, a loop
running in its own greenlet for the life of the process. Either is built on first use:
a function without ``async def`` never imports asyncio.
"""

from __future__ import annotations

import contextvars
import logging

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing is not imported on a classic cold start
if TYPE_CHECKING:
    from typing import Any, Awaitable, Callable, Protocol

    class ProcessLoop(Protocol):
        """The process's event loop, as the invoke path sees it."""

        loop: Any  # asyncio.AbstractEventLoop, not imported here: asyncio stays unimported

        def run(self, awaitable: Awaitable[Any],
                context: contextvars.Context | None = None) -> Any:
            """Run ``awaitable`` to its end on the loop, blocking the caller (a thread or a
            greenlet, never the loop itself) until then; its result or its exception.
            If the caller is interrupted (a deadline cut), the task is cancelled."""

        def close(self) -> None:
            """Stop the loop and close it; the process is ending."""

    class Lifespan(Protocol):
        """A handler's ``lifespan`` attribute (``asgi_handler`` sets one): started before
        the process polls for its first invocation, shut down during the drain."""

        async def startup(self) -> None: ...

        async def shutdown(self) -> None: ...

log = logging.getLogger("lmi_gevent")


class SequentialLoop:
    """The classic loop's: ``run_until_complete`` on a loop kept for the life of the process."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()

    def run(self, awaitable: Awaitable[Any], context: contextvars.Context | None = None) -> Any:
        task = start_task(self.loop, awaitable, context)
        try:
            return settled(self.loop.run_until_complete(task))
        except BaseException:
            if not task.done():  # a signal cut it: the task learns at the next run
                task.cancel()
            raise

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.close()


_factory: Callable[[], ProcessLoop] = SequentialLoop
_current: ProcessLoop | None = None


def use(factory: Callable[[], ProcessLoop]) -> None:
    """Concurrent mode, before the handler loads: build the process's loop with ``factory``."""
    global _factory
    _factory = factory


def process_loop() -> ProcessLoop:
    """The process's one event loop, built on first use."""
    global _current
    if _current is None:
        _current = _factory()
    return _current


def close_process_loop() -> None:
    global _current
    if _current is not None:
        loop, _current = _current, None
        loop.close()


def is_awaitable(value: Any) -> bool:
    """A coroutine, or anything with ``__await__``: what an async handler returns."""
    return hasattr(type(value), "__await__") or _is_generator_coroutine(value)


def _is_generator_coroutine(value: Any) -> bool:
    code = getattr(getattr(value, "gi_code", None), "co_flags", 0)
    return bool(code & 0x100)  # CO_ITERABLE_COROUTINE: a @types.coroutine generator


async def outcome_of(awaitable: Awaitable[Any]) -> tuple[bool, Any]:
    """(True, result) or (False, exception): the task itself always ends well, so neither a
    SystemExit nor a KeyboardInterrupt from a handler escapes the loop (docs/design.md,
    invariant 5), and the exception keeps the handler's frames for the error answer."""
    try:
        return True, await awaitable
    except BaseException as problem:  # noqa: BLE001 - handed to the invocation's answer
        return False, problem


def start_task(loop: Any, awaitable: Awaitable[Any], context: contextvars.Context | None) -> Any:
    """The invocation's task, started in a copy of ``context`` (or of the caller's): made
    inside ``context.run`` since ``create_task(context=...)`` is 3.11+."""
    if context is None:
        return loop.create_task(outcome_of(awaitable))
    return context.run(loop.create_task, outcome_of(awaitable))


def settled(outcome: tuple[bool, Any]) -> Any:
    """The result of :func:`outcome_of`, or its exception raised."""
    ok, value = outcome
    if ok:
        return value
    raise value


# --- lifespan: what runs once per process around the invocations -----------------------------

def start_lifespan(handler: Any) -> Lifespan | None:
    """Run the handler's lifespan startup on the process loop; its failure propagates (an
    init error). None when the handler has no lifespan."""
    lifespan = getattr(handler, "lifespan", None)
    if lifespan is None or not callable(getattr(lifespan, "startup", None)):
        return None
    process_loop().run(lifespan.startup())
    return lifespan


def stop_lifespan(lifespan: Lifespan | None) -> None:
    """The lifespan shutdown, then the loop's end; a failure is logged, not raised: the
    process is exiting anyway and its answers are already out."""
    try:
        if lifespan is not None:
            process_loop().run(lifespan.shutdown())
    except Exception as problem:  # noqa: BLE001 - logged; exit goes on
        log.error("The lifespan shutdown failed: %s: %s", type(problem).__name__, problem)
    finally:
        close_process_loop()
