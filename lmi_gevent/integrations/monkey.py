"""Step 2 of the lifecycle: ``gevent.monkey.patch_all()`` before anything else is imported.

A module imported before patching keeps references to the blocking originals (``ssl``'s
socket class, a ``threading.Lock`` made at import, a pool's real threads); its calls then
block the whole process instead of one greenlet. We patch as early as the console script
allows and name what a ``sitecustomize``/``PYTHONSTARTUP``/``.pth`` file imported sooner.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

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
    # gevent warns on stderr about ssl imported early; we report all risks in one log line.
    import warnings

    from gevent import events, monkey
    scan_each_event = events.notify_and_call_entry_points
    events.notify_and_call_entry_points = plugins_found_once()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", monkey.MonkeyPatchWarning)
            monkey.patch_all()
    finally:
        events.notify_and_call_entry_points = scan_each_event
    from . import alarms
    from . import threads as inherit
    inherit.install()  # before the handler's `from gevent import spawn`
    alarms.install()  # before the handler's `from signal import alarm`
    resolve_ip_literals_inline()
    return early


def plugins_found_once() -> Callable[[Any], None]:
    """gevent's ``notify_and_call_entry_points`` for the span of ``patch_all``, with one scan.

    gevent tells its plugins (entry points of the ``gevent.plugins.*`` groups) of every step
    of patching, and looks them up anew each time: ~25 scans of every installed
    distribution's metadata, a large share of a worker's start-up where many packages are
    installed. gevent has no setting to skip them, so the distributions are read once here
    and each event still reaches the same subscribers and plugins, in gevent's order.
    """
    from gevent.events import notify

    groups: dict[str, list[Any]] | None = None

    def notify_and_call_entry_points(event: Any) -> None:
        nonlocal groups
        notify(event)
        if groups is None:
            from importlib import metadata

            groups, seen = {}, set()
            for distribution in metadata.distributions():
                for entry_point in distribution.entry_points:
                    key = (entry_point.group, entry_point.name, entry_point.value)
                    if entry_point.group.startswith("gevent.plugins.") and key not in seen:
                        seen.add(key)  # one distribution found twice on sys.path: once
                        groups.setdefault(entry_point.group, []).append(entry_point)
        for plugin in groups.get(event.ENTRY_POINT_NAME, ()):
            plugin.load()(event)

    return notify_and_call_entry_points


def resolve_ip_literals_inline() -> None:
    """``getaddrinfo`` on an IP address answers at once instead of in gevent's thread pool.

    gevent's default resolver runs every ``getaddrinfo`` in a native thread so that a DNS
    query cannot block the hub — also for ``127.0.0.1``, which needs no query: a thread hop
    per new connection to a local sidecar, an extension or an address from configuration
    (~20% of a ``requests.get`` to 127.0.0.1 in the benchmark). With ``AI_NUMERICHOST`` the
    C ``getaddrinfo`` only parses, so it is called inline; host names go to the resolver as
    before, whichever resolver gevent is configured with.
    """
    import _socket

    import gevent

    resolver = gevent.get_hub().resolver
    resolve = resolver.getaddrinfo

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                    flags: int = 0) -> Any:
        if _is_ip_literal(host):
            return _socket.getaddrinfo(host, port, family, type, proto,
                                       flags | _socket.AI_NUMERICHOST)
        return resolve(host, port, family, type, proto, flags)

    resolver.getaddrinfo = getaddrinfo


def _is_ip_literal(host: Any) -> bool:
    import _socket

    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str) or not host:
        return False
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    return False
