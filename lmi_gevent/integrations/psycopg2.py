"""psycopg2 waits on gevent (``LMI_GEVENT_PSYCOPG2_WAIT_CALLBACK``, on by default).

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
import time
from types import ModuleType
from typing import Any, Callable

from .hooks import when_imported

log = logging.getLogger("lmi_gevent")

MODULE = "psycopg2"


def install() -> None:
    """Register the wait callback now if psycopg2 is imported, else the moment it is."""
    when_imported(MODULE, register_psycopg2_wait_callback, "extensions")


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
