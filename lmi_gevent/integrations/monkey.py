"""Step 2 of the lifecycle: ``gevent.monkey.patch_all()`` before anything else is imported.

A module imported before patching keeps references to the blocking originals (``ssl``'s
socket class, a ``threading.Lock`` made at import, a pool's real threads); its calls then
block the whole process instead of one greenlet. We patch as early as the console script
allows and name what a ``sitecustomize``/``PYTHONSTARTUP``/``.pth`` file imported sooner.
"""

from __future__ import annotations

import contextlib
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

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

    from gevent import monkey

    with warnings.catch_warnings(), plugins_scanned_once():
        warnings.simplefilter("ignore", monkey.MonkeyPatchWarning)
        monkey.patch_all()
    from . import alarms
    from . import threads as inherit
    inherit.install()  # before the handler's `from gevent import spawn`
    alarms.install()  # before the handler's `from signal import alarm`
    resolve_ip_literals_inline()
    return early


@contextlib.contextmanager
def plugins_scanned_once() -> Iterator[None]:
    """For the span of the block, gevent finds its plugins with one cheap scan
    (:func:`plugins_found_once`) instead of ``importlib.metadata`` at every event."""
    from gevent import events

    scan_each_event = events.notify_and_call_entry_points
    events.notify_and_call_entry_points = plugins_found_once()
    try:
        yield
    finally:
        events.notify_and_call_entry_points = scan_each_event


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
            groups = gevent_plugins()
        for plugin in groups.get(event.ENTRY_POINT_NAME, ()):
            plugin.load()(event)

    return notify_and_call_entry_points


PLUGIN_GROUP_PREFIX = "gevent.plugins."


def gevent_plugins() -> dict[str, list[Any]]:
    """Every ``gevent.plugins.*`` entry point of the distributions on ``sys.path``, by group,
    each (group, name, value) once, in the order ``importlib.metadata`` finds them.

    Reads the ``entry_points.txt`` of each ``*.dist-info``/``*.egg-info`` directory itself:
    importing ``importlib.metadata`` (pathlib, zipfile, email, csv, ...) costs a worker more
    than the scan. Where that reading could miss a distribution ``importlib.metadata`` would
    find (a zip file on ``sys.path``, an import hook that finds distributions of its own), it
    asks ``importlib.metadata`` instead.
    """
    if _needs_importlib_metadata():
        return _plugins_from_importlib_metadata()
    groups: dict[str, list[Any]] = {}
    seen: set[tuple[str, str, str]] = set()
    for entry in list(sys.path):
        if not isinstance(entry, str):
            continue  # importlib's path finder skips these too
        try:
            children = os.listdir(entry or ".")
        except NotADirectoryError:
            return _plugins_from_importlib_metadata()  # a zip file (or egg) on sys.path
        except OSError:
            continue
        for info in _metadata_directories(entry, children):
            try:
                with open(os.path.join(info, "entry_points.txt"), encoding="utf-8") as text:
                    declared = text.read()
            except (OSError, UnicodeDecodeError):
                continue  # as importlib.metadata: no readable entry_points.txt, none declared
            if PLUGIN_GROUP_PREFIX not in declared:
                continue
            for group, name, value in _entry_points(declared):
                key = (group, name, value)
                if group.startswith(PLUGIN_GROUP_PREFIX) and key not in seen:
                    seen.add(key)  # one distribution found twice on sys.path: once
                    groups.setdefault(group, []).append(_EntryPoint(name, value, group))
    return groups


def _needs_importlib_metadata() -> bool:
    """True when an import hook other than the standard path finder finds distributions."""
    from importlib.machinery import PathFinder

    return any(finder is not PathFinder and hasattr(finder, "find_distributions")
               for finder in sys.meta_path)


def _metadata_directories(entry: str, children: list[str]) -> list[str]:
    """The metadata directories ``importlib.metadata`` reads in one ``sys.path`` directory."""
    found = [os.path.join(entry, child) for child in children
             if child.lower().endswith((".dist-info", ".egg-info"))]
    if os.path.basename(entry).lower().endswith(".egg"):  # an unzipped egg on sys.path
        found += [os.path.join(entry, child) for child in children if child.lower() == "egg-info"]
    return found


def _entry_points(text: str) -> list[tuple[str, str, str]]:
    """(group, name, value) of an ``entry_points.txt``, parsed as ``importlib.metadata`` does:
    ``[group]`` lines, ``name = value`` lines, ``#`` comments and blank lines skipped."""
    found, group = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line.strip("[]")
        elif group is not None and "=" in line:
            name, value = line.split("=", 1)
            found.append((group, name.strip(), value.strip()))
    return found


class _EntryPoint:
    """The part of ``importlib.metadata.EntryPoint`` gevent uses: ``load()``."""

    __slots__ = ("group", "name", "value")

    def __init__(self, name: str, value: str, group: str) -> None:
        self.name, self.value, self.group = name, value, group

    def __repr__(self) -> str:
        return f"EntryPoint(name={self.name!r}, value={self.value!r}, group={self.group!r})"

    def load(self) -> Any:
        """``module``, ``module:attr`` or ``module:attr.attr``, extras (``[...]``) ignored."""
        from importlib import import_module

        reference = self.value.split("[", 1)[0]
        module_name, _, attrs = reference.partition(":")
        target = import_module(module_name.strip())
        for attr in filter(None, attrs.strip().split(".")):
            target = getattr(target, attr)
        return target


def _plugins_from_importlib_metadata() -> dict[str, list[Any]]:
    from importlib import metadata

    groups: dict[str, list[Any]] = {}
    seen: set[tuple[str, str, str]] = set()
    for distribution in metadata.distributions():
        for entry_point in distribution.entry_points:
            key = (entry_point.group, entry_point.name, entry_point.value)
            if entry_point.group.startswith(PLUGIN_GROUP_PREFIX) and key not in seen:
                seen.add(key)  # one distribution found twice on sys.path: once
                groups.setdefault(entry_point.group, []).append(entry_point)
    return groups


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
