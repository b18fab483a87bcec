"""HTTP apps on Lambda: WSGI and ASGI adapters for every Lambda HTTP event source, buffered or
streamed.

    from lmi_gevent.http import wsgi_handler, asgi_handler
    from myapp import app            # Flask, Django's get_wsgi_application(), any WSGI app

    handler = wsgi_handler(app)                    # buffered answers
    handler = wsgi_handler(app, streaming=True)    # Function URL with InvokeMode: RESPONSE_STREAM
    handler = asgi_handler(fastapi_app)            # FastAPI, Starlette: an async def handler

Not to be confused with ``lmi_gevent.runtime_api.connection``, the runtime's own HTTP/1.1 client for the
Runtime API. Importing this package imports neither gevent, asyncio nor any web framework:
``asgi_handler`` is loaded on first use.
"""

from __future__ import annotations

from typing import Any

from .sources import HttpRequest, UnsupportedEvent, default_binary_rule, detect
from .wsgi import wsgi_handler

__all__ = ["HttpRequest", "UnsupportedEvent", "asgi_handler", "default_binary_rule", "detect",
           "wsgi_handler"]


def __getattr__(name: str) -> Any:
    if name == "asgi_handler":  # asyncio is imported only by those who serve an ASGI app
        from .asgi import asgi_handler
        return asgi_handler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
