"""gRPC on gevent (``LMI_GEVENT_GRPC_GEVENT``, on by default).

gRPC's C core waits in its own threads unless ``grpc.experimental.gevent.init_gevent()`` was
called before the first channel: :func:`install` calls it the moment the handler imports grpc.
"""

from __future__ import annotations

import logging
from types import ModuleType

from .hooks import when_imported

log = logging.getLogger("lmi_gevent")

MODULE = "grpc"


def install() -> None:
    when_imported(MODULE, init_grpc_gevent)


def init_grpc_gevent(grpc: ModuleType) -> None:
    """gRPC's own gevent integration: its C core then waits through the gevent hub.

    gRPC asks for it after patching and before any channel or server exists; the post-import
    hook calls it the moment ``import grpc`` completes, before the handler's next line. Calling
    it again (a handler that also does) is harmless.
    """
    from grpc.experimental import gevent as grpc_gevent

    grpc_gevent.init_gevent()
    log.debug("gRPC runs on gevent (LMI_GEVENT_GRPC_GEVENT).")
