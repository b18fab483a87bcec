"""HTTP connection pools sized for the slots of this process (``LMI_GEVENT_POOL_SIZING``).

Client libraries size their connection pools for one invocation per process: botocore keeps
up to 10 connections per client (``max_pool_connections``), a ``requests.Session`` 10 per
host (``HTTPAdapter(pool_maxsize=10)``), a ``urllib3.PoolManager`` 1 per host. A client made
once at module level, as AWS recommends, is shared by every slot here: with more invocations
at once than the pool holds, each one past the pool opens a connection of its own and
throws it away afterwards ("Connection pool is full, discarding connection"), so the process
keeps opening connections (TLS handshakes, against a real endpoint) instead of reusing them.

Where the user did not choose a size, the default becomes the slots of this process (never
smaller than the library's own default). Where the user chose one smaller than the slots, a
warning says so once per library and size (``lmi-gevent check`` reports it too). Installed
when the handler imports the library; nothing is imported otherwise.
"""

from __future__ import annotations

import functools
import logging
import sys
from types import ModuleType
from typing import Any, Callable

log = logging.getLogger("lmi_gevent")

# Callers whose explicit pool size comes from a size the user (or its default) chose one
# level up: their own constructor is where it is judged.
_SIZED_ON_BEHALF = ("requests.", "botocore.", "urllib3.")


def install(slots: int) -> None:
    """Size the default pools of botocore, requests and urllib3 for ``slots`` invocations at
    once, now or when the handler imports them. Concurrent mode, before the handler import."""
    from .hooks import applied

    sizing = PoolSizing(slots)
    applied("botocore.config", "pool_sizing", sizing.size_botocore)
    applied("requests.adapters", "pool_sizing", sizing.size_requests)
    applied("urllib3.poolmanager", "pool_sizing", sizing.size_urllib3)


class PoolSizing:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.reported: set[tuple[str, int]] = set()

    def chosen(self, library: str, setting: str, size: Any) -> None:
        """The user chose ``size``: warn once if it is smaller than the slots."""
        if not isinstance(size, int) or size >= self.slots or (library, size) in self.reported:
            return
        self.reported.add((library, size))
        log.warning("%s: %s=%d is smaller than the %d invocations this process serves at once; "
                    "the invocations past it open a connection each and discard it "
                    "(\"Connection pool is full\"). Leave it unset (lmi-gevent sizes it) or "
                    "make it at least %d.", library, setting, size, self.slots, self.slots,
                    extra={"poolSize": {"library": library, "setting": setting, "size": size,
                                        "slots": self.slots}})

    def size_botocore(self, config: ModuleType) -> None:
        Config = config.Config
        default = Config.OPTION_DEFAULTS.get("max_pool_connections", 10)
        Config.OPTION_DEFAULTS["max_pool_connections"] = max(default, self.slots)
        original = Config.__init__

        @functools.wraps(original)
        def __init__(client_config: Any, *args: Any, **kwargs: Any) -> None:
            original(client_config, *args, **kwargs)
            if "max_pool_connections" in getattr(client_config, "_user_provided_options", {}):
                self.chosen("botocore", "max_pool_connections",
                            client_config.max_pool_connections)

        Config.__init__ = __init__

    def size_requests(self, adapters: ModuleType) -> None:
        HTTPAdapter = adapters.HTTPAdapter
        default = max(adapters.DEFAULT_POOLSIZE, self.slots)
        HTTPAdapter.__init__ = self._sized(HTTPAdapter.__init__, "pool_maxsize", 1, default,
                                           "requests HTTPAdapter")

    def size_urllib3(self, poolmanager: ModuleType) -> None:
        PoolManager = poolmanager.PoolManager
        original = PoolManager.__init__

        @functools.wraps(original)
        def __init__(manager: Any, *args: Any, **kwargs: Any) -> None:
            if "maxsize" not in kwargs:
                kwargs["maxsize"] = self.slots  # urllib3's default: 1 connection per host
            elif not _caller_module().startswith(_SIZED_ON_BEHALF):
                self.chosen("urllib3 PoolManager", "maxsize", kwargs["maxsize"])
            original(manager, *args, **kwargs)

        PoolManager.__init__ = __init__

    def _sized(self, original: Callable[..., None], name: str, position: int, default: int,
               library: str) -> Callable[..., None]:
        """``original`` (an ``__init__``) with ``name`` (the ``position``-th argument after
        self) defaulting to ``default``; a value the caller passes is judged."""

        @functools.wraps(original)
        def __init__(instance: Any, *args: Any, **kwargs: Any) -> None:
            if len(args) > position:
                self.chosen(library, name, args[position])
            elif name in kwargs:
                self.chosen(library, name, kwargs[name])
            else:
                kwargs[name] = default
            original(instance, *args, **kwargs)

        return __init__


def _caller_module() -> str:
    """The module that called the wrapped constructor (two frames up)."""
    frame = sys._getframe(2)
    return str(frame.f_globals.get("__name__", ""))
