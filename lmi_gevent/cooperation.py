"""Libraries that would block the whole process, or trip over each other, made to cooperate
with gevent as the handler imports them (concurrent mode).

* gRPC: its C core waits in its own threads unless ``grpc.experimental.gevent.init_gevent()``
  was called before the first channel; :func:`install` calls it the moment the handler imports
  grpc (:func:`init_grpc_gevent`). Opt out with ``LMI_GEVENT_GRPC_GEVENT=0``.
* asyncio: a handler that calls ``asyncio.run()`` gets a running loop of its own per greenlet
  (:func:`running_loop_per_greenlet`).
* multiprocessing: ``Pool``, ``Queue``, ``Pipe`` and its locks wait on gevent in the runtime's
  process, and a child forked without exec leaves the runtime's greenlets behind
  (:mod:`lmi_gevent.multiprocessing_waits`).
* psycopg2: the rest of this page.

psycopg2 runs libpq in C: without help, a query blocks the hub, and every other invocation
waits with it. psycopg2 has one hook for this, ``psycopg2.extensions.set_wait_callback``:
with a callback registered, it drives libpq in non-blocking mode and calls the callback
whenever it must wait for the socket. Ours waits with ``gevent.socket.wait_read/wait_write``,
so other greenlets run meanwhile.

:func:`install` registers that callback at once when psycopg2 is already imported, or the
moment the handler imports it (at init or lazily inside an invocation) through a
``sys.meta_path`` post-import hook. A handler that never imports psycopg2 never has it
imported by us. Opt out with ``LMI_GEVENT_PSYCOPG2_WAIT_CALLBACK=0``.

What changes for the handler once the callback is registered (each point is tested in
``tests/drivers/test_psycopg2_cooperation.py``):

* Queries, transactions, named (server-side) cursors and ``connection.cancel()`` from another
  greenlet work as before. Connections made before the callback was registered (at init)
  cooperate too.
* ``COPY`` (``copy_from``, ``copy_to``, ``copy_expert``) and large objects (``lobject``)
  raise ``psycopg2.ProgrammingError``: psycopg2 refuses them with a wait callback. A handler
  that needs them must opt out (and then every query blocks the process).
* One connection used by two invocations at once: the second one gets
  ``ProgrammingError: execute cannot be used while an asynchronous query is underway``
  instead of waiting its turn. Give each invocation its own connection (a pool).
* An invocation interrupted while it waits (the deadline reclaims its slot, or the drain
  cuts it) leaves its connection closed (``InterfaceError: connection already closed`` on
  the next use), and the server keeps running the statement until it ends: set
  ``statement_timeout``. We do not call ``cancel()`` then, because libpq's cancel request is
  a blocking C call that would freeze every invocation if the server were unreachable.
* libpq cannot enforce ``connect_timeout`` in non-blocking mode, so the callback does: a
  connection attempt that has not completed within ``connect_timeout`` seconds (in total,
  over all hosts tried) fails with ``OperationalError``.
* Asynchronous connections (``async_=True``) are not affected: the caller polls them.
* A wait callback registered by someone else (e.g. psycogreen) is left in place.
"""

from __future__ import annotations

import logging
import sys
import time
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, Callable, Sequence

log = logging.getLogger("lmi_gevent")

PSYCOPG2 = "psycopg2"
GRPC = "grpc"
ASYNCIO = "asyncio"


def install(*, psycopg2: bool = True, grpc: bool = True) -> None:
    """Have psycopg2 wait on gevent, gRPC run on gevent and asyncio keep one running loop per
    greenlet, now or as soon as the handler imports them.

    Call only in concurrent mode, after ``gevent.monkey.patch_all()`` and before the handler
    is imported (gRPC must be told before its first channel is made). Never imports any of
    these libraries itself.
    """
    when_imported(ASYNCIO, running_loop_per_greenlet)
    from . import multiprocessing_waits  # Pool, Queue, Pipe: see that module
    multiprocessing_waits.install()
    if psycopg2:
        when_imported(PSYCOPG2, register_psycopg2_wait_callback, "extensions")
    if grpc:
        when_imported(GRPC, init_grpc_gevent)


def when_imported(name: str, on_import: Callable[[ModuleType], object],
                  needs: str | None = None) -> None:
    """``on_import(module)`` now if ``name`` is imported (with its attribute ``needs``, for a
    package still importing itself), otherwise right after the handler imports it."""
    module = sys.modules.get(name)
    if module is not None and (needs is None or getattr(module, needs, None) is not None):
        on_import(module)
    else:
        PostImportHook(name, on_import).add()


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


def init_grpc_gevent(grpc: ModuleType) -> None:
    """gRPC's own gevent integration: its C core then waits through the gevent hub.

    gRPC asks for it after patching and before any channel or server exists; the post-import
    hook calls it the moment ``import grpc`` completes, before the handler's next line. Calling
    it again (a handler that also does) is harmless.
    """
    from grpc.experimental import gevent as grpc_gevent

    grpc_gevent.init_gevent()
    log.debug("gRPC runs on gevent (LMI_GEVENT_GRPC_GEVENT).")


def register_psycopg2_wait_callback(psycopg2: ModuleType) -> bool:
    """Register our gevent wait callback unless another one is set; True if ours is in place."""
    extensions = psycopg2.extensions
    current = extensions.get_wait_callback()
    if current is not None:
        if getattr(current, "lmi_gevent", False):
            return True
        # The user chose their own green callback (psycogreen, a custom one): respect it.
        log.info("psycopg2 already has a wait callback (%r); lmi-gevent leaves it in place.",
                 current)
        return False
    extensions.set_wait_callback(gevent_wait_callback(psycopg2))
    log.debug("psycopg2 waits on gevent (LMI_GEVENT_PSYCOPG2_WAIT_CALLBACK).")
    return True


def gevent_wait_callback(psycopg2: ModuleType) -> Callable[[Any], None]:
    """Build the callback psycopg2 calls whenever a connection must wait for its socket."""
    from gevent.socket import wait_read, wait_write

    extensions = psycopg2.extensions
    waits = {extensions.POLL_READ: wait_read, extensions.POLL_WRITE: wait_write}
    poll_ok, connecting = extensions.POLL_OK, extensions.STATUS_SETUP
    operational_error = psycopg2.OperationalError

    def wait(connection: Any) -> None:
        # psycopg2 calls us once per operation; a connection attempt is one call, so one
        # deadline bounds all of it.
        deadline = _connect_deadline(connection) if connection.status == connecting else None
        while (state := connection.poll()) != poll_ok:
            wait_for = waits.get(state)
            if wait_for is None:
                raise operational_error(f"psycopg2 poll() returned an unknown state {state!r}")
            wait_for(connection.fileno(), **_time_left(deadline, operational_error))

    wait.lmi_gevent = True  # type: ignore[attr-defined]  # marks the callback as ours
    return wait


def _connect_deadline(connection: Any) -> tuple[int, float] | None:
    """(connect_timeout, monotonic deadline), or None to wait forever.

    libpq enforces connect_timeout only in blocking mode, so in green mode we must.
    """
    raw = connection.get_dsn_parameters().get("connect_timeout")
    try:
        seconds = int(raw) if raw else 0
    except ValueError:
        return None
    return (seconds, time.monotonic() + seconds) if seconds > 0 else None  # <= 0: no limit


def _time_left(deadline: tuple[int, float] | None,
               error_class: type[Exception]) -> dict[str, Any]:
    """wait_read/wait_write arguments that stop at ``deadline`` with libpq's error text."""
    if deadline is None:
        return {}
    seconds, at = deadline
    expired = error_class(f"timeout expired: no connection within connect_timeout={seconds}s")
    left = at - time.monotonic()
    if left <= 0:
        raise expired
    return {"timeout": left, "timeout_exc": expired}


class PostImportHook:
    """A ``sys.meta_path`` entry that calls ``on_import(module)`` right after ``name`` has
    been imported (its code ran without error), then removes itself.

    It finds nothing itself: it asks the finders after it, and wraps the loader they return
    so that the module, once executed, is handed to ``on_import``. The module sees its real
    loader in ``__loader__`` and ``__spec__.loader``.
    """

    def __init__(self, name: str, on_import: Callable[[ModuleType], object]) -> None:
        self.name = name
        self.on_import = on_import

    def add(self) -> None:
        if not any(isinstance(f, PostImportHook) and f.name == self.name for f in sys.meta_path):
            sys.meta_path.insert(0, self)

    def remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname != self.name:
            return None
        spec = self._find_with_later_finders(fullname, path, target)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _LoaderThenHook(spec.loader, self)
        return spec

    def _find_with_later_finders(self, fullname: str, path: Sequence[str] | None,
                                 target: ModuleType | None) -> ModuleSpec | None:
        finders = sys.meta_path
        start = finders.index(self) + 1 if self in finders else 0
        for finder in list(finders[start:]):
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec is not None else None
            if spec is not None:
                return spec
        return None

    def imported(self, module: ModuleType) -> None:
        self.remove()
        try:
            self.on_import(module)
        except Exception:
            # Our hook must never break the handler's import: log, and let it block.
            log.exception("lmi-gevent could not adapt %s to concurrent mode after it was "
                          "imported; it runs unadapted.", self.name)


class _LoaderThenHook:
    """Runs the real loader, then the hook. Gone from the module before its code runs."""

    def __init__(self, loader: Any, hook: PostImportHook) -> None:
        self.loader = loader
        self.hook = hook

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # Hand the real loader back first: importlib.resources, pkgutil and the package's own
        # code look at __loader__/__spec__.loader.
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.hook.imported(module)
