"""``wsgi_handler(app)``: a Lambda handler that serves a WSGI app (PEP 3333) from any HTTP
event source (see :mod:`lmi_gevent.http.sources`), buffered or streamed.

Buffered: the app's body is collected and answered in the source's shape, base64 when it is
binary. Streamed (``streaming=True``, on sources that can stream): the status, headers and
cookies go out as the prelude once the app produced its first body bytes, then each chunk as
the app yields it (:func:`lmi_gevent.streaming.http_stream`).
"""

from __future__ import annotations

import io
import logging
import sys
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import unquote_to_bytes

from ..config import ConfigError, parse_base_path, read_setting
from ..streaming import StreamingResponse, http_stream
from ..workers import assignment as worker
from .headers import ForbiddenHeader, check_fields
from .sources import (
    BinaryRule,
    Headers,
    HttpAnswer,
    HttpRequest,
    answer_or_refuse,
    as_text,
    default_binary_rule,
    detect,
    error_answer,
    malformed,
    move_base_path,
    prelude_headers,
    refused_answer,
    server_of,
    streamed,
)

log = logging.getLogger("lmi_gevent.http")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
__all__ = ["BinaryRule", "default_binary_rule", "wsgi_handler"]  # the rule lives in sources.py

def wsgi_handler(app: WsgiApp, *, streaming: bool = False,
                 binary: BinaryRule = default_binary_rule,
                 base_path: str | None = None) -> Callable[[Any, Any], Any]:
    """A Lambda handler serving ``app`` for API Gateway REST and HTTP APIs, Function URLs,
    ALB and VPC Lattice, detected per event.

    ``streaming``: answer with a response stream on sources that can stream (Function URLs,
    API Gateway); ALB and VPC Lattice are still answered buffered. ``binary(content_type,
    content_encoding)`` decides which bodies are base64-encoded in buffered answers (a body
    that is not UTF-8 always is). Any other event is answered with an ``UnsupportedEvent``
    error naming the accepted shapes. In the environ, ``lambda.event`` and ``lambda.context``
    hold the event and the context (also under serverless-wsgi's ``serverless.*`` names).

    ``base_path``: an API Gateway custom domain's base path mapping (``"/v1"``), which API
    Gateway leaves in the event's path; a request whose path starts with it gets it as
    ``SCRIPT_NAME``. ``None`` (default) reads ``LMI_GEVENT_HTTP_BASE_PATH``; ``""``: none.
    """
    multithread = _concurrent()
    multiprocess = worker.supervised()
    if base_path is None:
        base = read_setting("http_base_path")
    else:
        base = parse_base_path("wsgi_handler(base_path=...)", base_path)

    def handler(event: Any, context: Any) -> Any:
        source = detect(event)
        with malformed(source, "reading"):
            request = source.request()
            if base:
                move_base_path(request, base)
            environ = build_environ(request, event, context, multithread=multithread,
                                    multiprocess=multiprocess)
        environ["lambda.source"] = source.name
        if streaming and source.streams:
            return _stream(app, environ)
        answer = _buffered(app, environ, binary)
        # ValueError is left alone here: it is the answer's (e.g. too many cookies for the
        # source), not the event's.
        return answer_or_refuse(source, answer, _request_line(environ))

    handler.wsgi_app = app  # type: ignore[attr-defined]
    return handler


def _concurrent() -> bool:
    """``wsgi.multithread``: true when other invocations run in this process at the same time."""
    try:
        return read_setting("max_concurrency") > 1
    except ConfigError:
        return False  # the runtime reports the setting at fault; this only sets a hint


# --- environ ---------------------------------------------------------------------------------

def build_environ(request: HttpRequest, event: Any, context: Any, *,
                  multithread: bool = False, multiprocess: bool = False) -> dict[str, Any]:
    """The PEP 3333 environ for one request."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": _native(request.script_name),
        # Unquoted from the raw path, as a server does with the request line; WSGI wants
        # the bytes as latin-1 text.
        "PATH_INFO": _path_info(request.path),
        "QUERY_STRING": _native(request.query_string),
        "SERVER_PROTOCOL": request.protocol,
        "CONTENT_LENGTH": str(len(request.body)),
        "wsgi.version": (1, 0),
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "lambda.event": event,
        "lambda.context": context,
        "serverless.event": event,
        "serverless.context": context,
    }
    _add_headers(environ, request.headers, request.cookies)
    _add_server(environ, request)
    return environ


def _path_info(path: str) -> str:
    if "%" not in path and path.isascii():
        return path  # nothing to unquote (most paths): skip the bytes round trip
    return unquote_to_bytes(path).decode("latin-1")


def _native(text: str) -> str:
    """A "native string" per PEP 3333: text beyond latin-1 goes as its UTF-8 bytes."""
    if text.isascii():
        return text
    try:
        text.encode("latin-1")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8").decode("latin-1")


# Header name -> environ key ("" for a header that is left out), for the names seen so far;
# bounded, since clients choose the names.
_ENVIRON_KEYS: dict[str, str] = {}
_ENVIRON_KEYS_MAX = 1024


def _environ_key(name: str) -> str:
    key = _ENVIRON_KEYS.get(name)
    if key is not None:
        return key
    if "_" in name:
        key = ""  # as gunicorn and nginx do: X_User must not pass for X-User
    else:
        key = name.upper().replace("-", "_")
        if key == "CONTENT_LENGTH":
            key = ""  # the decoded body's length is set instead
        elif key != "CONTENT_TYPE":
            key = "HTTP_" + key
    if len(_ENVIRON_KEYS) < _ENVIRON_KEYS_MAX:
        _ENVIRON_KEYS[name] = key
    return key


def _add_headers(environ: dict[str, Any], headers: Headers, cookies: list[str]) -> None:
    for name, value in headers:
        key = _ENVIRON_KEYS.get(name) or _environ_key(name)
        if not key:
            continue
        if not value.isascii():
            value = _native(value)
        if key in environ:
            separator = "; " if key == "HTTP_COOKIE" else ", "
            environ[key] = f"{environ[key]}{separator}{value}"
        else:
            environ[key] = value
    if cookies:
        joined = "; ".join(_native(str(cookie)) for cookie in cookies)
        existing = environ.get("HTTP_COOKIE")
        environ["HTTP_COOKIE"] = f"{existing}; {joined}" if existing else joined


def _add_server(environ: dict[str, Any], request: HttpRequest) -> None:
    scheme, name, port = server_of(request.headers)
    environ["wsgi.url_scheme"] = scheme
    environ["SERVER_NAME"] = name
    environ["SERVER_PORT"] = port
    if request.source_ip:
        environ["REMOTE_ADDR"] = request.source_ip
    if request.remote_user:
        environ["REMOTE_USER"] = _native(str(request.remote_user))


# --- calling the app ---------------------------------------------------------------------------

class _Responder:
    """``start_response`` and the legacy ``write`` callable for one request."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: Headers = []
        self.headers_sent = False
        self.written: list[bytes] = []

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        self.status = status
        self.headers = headers if type(headers) is list else list(headers)
        return self.written.append

    def take_written(self) -> bytes:
        if not self.written:
            return b""
        data = b"".join(self.written)
        self.written.clear()
        return data

    def status_code(self) -> tuple[int, str]:
        if self.status is None:
            raise AssertionError("the WSGI app returned without calling start_response")
        code, _, reason = self.status.partition(" ")
        if not (len(code) == 3 and code.isdigit() and code[0] != "0"):
            # A WSGI status starts with three digits (PEP 3333); int() would take " 2_00".
            raise AssertionError(f"the WSGI status {self.status!r} does not start with a 3-digit code")
        return int(code), reason.strip()


def _close(result: Any) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _buffered(app: WsgiApp, environ: dict[str, Any], binary: BinaryRule) -> HttpAnswer:
    responder = _Responder()
    written = responder.written
    try:
        result = app(environ, responder.start_response)
        try:
            parts = []
            for chunk in result:
                if written:
                    parts.append(responder.take_written())
                parts.append(chunk)
            if written:
                parts.append(responder.take_written())
        finally:
            _close(result)
        status, reason = responder.status_code()
    except Exception:  # noqa: BLE001 - an app failure is a 500, as any WSGI server answers
        return _error_answer(environ)
    body = parts[0] if len(parts) == 1 else b"".join(parts)
    return HttpAnswer(status, reason, responder.headers, body, as_text(responder.headers, body, binary))


def _error_answer(environ: dict[str, Any]) -> HttpAnswer:
    log.exception("The WSGI app failed on %s; answering 500.", _request_line(environ))
    return error_answer()


def _request_line(environ: dict[str, Any]) -> str:
    return f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}"


# --- streaming ---------------------------------------------------------------------------------

def _stream(app: WsgiApp, environ: dict[str, Any]) -> StreamingResponse:
    """Run the app up to its first body bytes (so that a failure before them is still a clean
    500), then stream the rest as it comes."""
    responder = _Responder()
    try:
        result = app(environ, responder.start_response)
    except Exception:  # noqa: BLE001 - as in buffered mode
        return streamed(_error_answer(environ))
    iterator = iter(result)
    try:
        first = _first_bytes(iterator, responder)
        status, _ = responder.status_code()
        check_fields(responder.headers)
    except ForbiddenHeader as refused:  # the prelude is refused: none of the app's bytes go out
        _close(result)
        return streamed(refused_answer(_request_line(environ), refused))
    except Exception:  # noqa: BLE001 - nothing was sent yet: a clean 500
        _close(result)
        return streamed(_error_answer(environ))
    responder.headers_sent = True
    headers, cookies = prelude_headers(responder.headers)
    return http_stream(_rest(first, iterator, responder, result), status, headers, cookies)


def _first_bytes(iterator: Iterator[bytes], responder: _Responder) -> bytes:
    """Pull chunks until there is body data or the body ended (PEP 3333: headers go out with
    the first non-empty chunk)."""
    for chunk in iterator:
        data = responder.take_written() + chunk
        if data:
            return data
    return responder.take_written()


def _rest(first: bytes, iterator: Iterator[bytes], responder: _Responder, result: Any
          ) -> Iterator[bytes]:
    try:
        if first:
            yield first
        for chunk in iterator:
            written = responder.take_written()
            if written:
                yield written
            if chunk:
                yield chunk
        written = responder.take_written()
        if written:
            yield written
    finally:
        _close(result)


