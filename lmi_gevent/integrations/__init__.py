"""Libraries and stdlib areas adapted to concurrent mode, one module each, all on one
post-import-hook mechanism (:mod:`.hooks`): a library is adapted the moment the handler
imports it, and a library the handler never imports is never imported by us.

* :mod:`.monkey` — step 2 of the lifecycle: ``gevent.monkey.patch_all()`` and our own
  patches (:mod:`.threads`: what a handler starts runs for its invocation; :mod:`.alarms`:
  ``signal.alarm`` per greenlet);
* :mod:`.asyncio`, :mod:`.multiprocessing`, :mod:`.psycopg2`, :mod:`.grpc` — libraries that
  would block the process or trip over each other;
* :mod:`.isolation` with :mod:`.powertools` — per-invocation state kept on process-wide objects;
* :mod:`.pools` — connection pools sized for the slots; :mod:`.sentry` — Sentry's Lambda
  integration.

Internal: the settings that switch them on and off are the public surface (docs/settings.md).
Importing this package imports none of its modules.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time

if TYPE_CHECKING:
    from ..config import Config


def install(config: Config, slots: int) -> None:
    """Concurrent mode, after patching and before the handler's import (gRPC must hear of
    gevent before its first channel): adapt each library now or as the handler imports it.
    ``slots`` is this process's share of the environment's concurrency."""
    from . import asyncio, multiprocessing

    asyncio.install()
    multiprocessing.install()
    if config.psycopg2_wait_callback:
        from . import psycopg2
        psycopg2.install()
    if config.grpc_gevent:
        from . import grpc
        grpc.install()
    if config.powertools_isolation:
        from . import powertools
        powertools.install()
    if config.pool_sizing:
        from . import pools
        pools.install(slots=slots)
