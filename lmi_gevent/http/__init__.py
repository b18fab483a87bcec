"""HTTP apps on Lambda: a WSGI adapter for every Lambda HTTP event source, buffered or streamed.

    from lmi_gevent.http import wsgi_handler
    from myapp import app            # Flask, Django's get_wsgi_application(), any WSGI app

    handler = wsgi_handler(app)                    # buffered answers
    handler = wsgi_handler(app, streaming=True)    # Function URL with InvokeMode: RESPONSE_STREAM

Not to be confused with ``lmi_gevent.runtime_api.connection``, the runtime's own HTTP/1.1 client for the
Runtime API. Importing this package imports neither gevent nor any web framework.
"""

from __future__ import annotations

from .sources import HttpRequest, UnsupportedEvent, detect
from .wsgi import default_binary_rule, wsgi_handler

__all__ = ["HttpRequest", "UnsupportedEvent", "default_binary_rule", "detect", "wsgi_handler"]
