"""The emulator's servers on gevent, around one :class:`Sandbox`: the Runtime API the runtime
polls (:mod:`.runtime_api`), the Invoke API with the ``/_lmi/`` control API that callers and
tests use (:mod:`.invoke_api`, :mod:`.control_api`), and optionally a Function URL
(:mod:`.function_url_api`). Each connection is read by :mod:`.connection`. Imported only by
the emulator's entry points, never by ``import lmi_gevent``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from gevent.server import StreamServer

from ._sandbox import Sandbox, Settings
from .connection import guarded, serve_connection
from .function_url_api import FunctionUrlApi
from .invoke_api import InvokeApi
from .runtime_api import RuntimeApi

__all__ = ["EmulatorServer", "Sandbox", "Settings"]

# Thousands of slots may long-poll at once; the default listen backlog would drop them.
BACKLOG = 4096


class EmulatorServer:
    """Both servers around one Sandbox. ``start()`` binds and returns at once (gevent).
    ``runtime_host`` binds the Runtime API elsewhere than the Invoke API (``local`` keeps it
    on loopback whatever ``--host`` says).

    >>> server = EmulatorServer(Settings(concurrency=4)); server.start()
    >>> server.runtime_api  # for AWS_LAMBDA_RUNTIME_API
    '127.0.0.1:40123'
    """

    def __init__(self, settings: Settings, *, host: str = "127.0.0.1",
                 runtime_port: int = 0, invoke_port: int = 0, runtime_host: str | None = None,
                 function_url_port: int | None = None) -> None:
        self.settings = settings
        self.sandbox = Sandbox(settings)
        record = self.sandbox.record
        bad = partial(record.count, "bad_requests")
        self._runtime = StreamServer(
            (runtime_host or host, runtime_port),
            partial(serve_connection, router=guarded(RuntimeApi(self.sandbox).route, record.status),
                    on_bad_request=bad),
            backlog=BACKLOG)
        self._invoke = StreamServer(
            (host, invoke_port),
            partial(serve_connection, router=guarded(InvokeApi(self.sandbox).route, record.status),
                    on_bad_request=bad),
            backlog=BACKLOG)
        # A Function URL on a port of its own when asked for (``local --function-url``).
        self._function_url: StreamServer | None = None
        if function_url_port is not None:
            api = FunctionUrlApi(self.sandbox, lambda: int(self._function_url.address[1]))  # type: ignore[union-attr]
            self._function_url = StreamServer((host, function_url_port), api.serve, backlog=BACKLOG)

    def start(self) -> None:
        self._runtime.start()
        self._invoke.start()
        if self._function_url is not None:
            self._function_url.start()

    def stop(self, timeout: float = 1.0) -> None:
        if self._function_url is not None:
            self._function_url.stop(timeout)
        self._invoke.stop(timeout)
        self._runtime.stop(timeout)

    @property
    def function_url(self) -> str | None:
        """``http://host:port/`` of the Function URL, when there is one."""
        if self._function_url is None:
            return None
        return "http://" + _host_port(self._function_url.address) + "/"

    @property
    def runtime_api(self) -> str:
        """``host:port`` of the Runtime API, the value for AWS_LAMBDA_RUNTIME_API."""
        return _host_port(self._runtime.address)

    @property
    def invoke_url(self) -> str:
        return "http://" + _host_port(self._invoke.address)

    @property
    def invoke_port(self) -> int:
        return int(self._invoke.address[1])


def _host_port(address: tuple[Any, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
