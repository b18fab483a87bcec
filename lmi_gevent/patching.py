"""Step 2 of the lifecycle: ``gevent.monkey.patch_all()`` before anything else is imported.

A module imported before patching keeps references to the blocking originals (``ssl``'s
socket class, a ``threading.Lock`` made at import, a pool's real threads); its calls then
block the whole process instead of one greenlet. We patch as early as the console script
allows and name what a ``sitecustomize``/``PYTHONSTARTUP``/``.pth`` file imported sooner.
"""

from __future__ import annotations

import sys

# Modules that hold blocking primitives when imported before patching (checked, not imported).
EARLY_IMPORT_RISKS = (
    "ssl", "urllib3", "requests", "botocore", "boto3", "concurrent.futures", "queue",
    "http.client", "asyncio", "psycopg", "psycopg2", "pymysql", "redis", "grpc",
)
# (threading itself is not listed: gevent patches an already-imported threading module in
# place, and some interpreters import it at start-up without harm.)


def imported_too_early() -> list[str]:
    """The risky modules already in ``sys.modules`` (before patching)."""
    return [name for name in EARLY_IMPORT_RISKS if name in sys.modules]


def patch_all() -> list[str]:
    """Monkey-patch the stdlib for gevent, make what a handler spawns inherit its context and
    give each greenlet its own SIGALRM timer; return the modules that were imported too early."""
    early = imported_too_early()
    from gevent import monkey

    # gevent warns on stderr about ssl imported early; we report all risks in one log line.
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monkey.MonkeyPatchWarning)
        monkey.patch_all()
    from . import alarms, inherit
    inherit.install()  # before the handler's `from gevent import spawn`
    alarms.install()  # before the handler's `from signal import alarm`
    return early
