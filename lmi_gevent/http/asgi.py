"""``asgi_handler(app)``: a Lambda handler that serves an ASGI 3 app (FastAPI, Starlette, Quart,
anything with ``async def app(scope, receive, send)``) from any HTTP event source, buffered or
streamed, and runs the app's lifespan once per process.

The event is read and the answer written by :mod:`lmi_gevent.http.sources`, the same readers
and writers :func:`lmi_gevent.http.wsgi_handler` uses. The handler is ``async def``: the
runtime awaits it on the process's one event loop (:mod:`lmi_gevent.invocation.coroutines`).
Streamed (``streaming=True``, on sources that can stream): the prelude goes once the app sent
its status and first body bytes, then each ``http.response.body`` as the app sends it.
"""

from __future__ import annotations

import asyncio
import http
import logging
import sys
from typing import Any, Awaitable, Callable, Iterator
from urllib.parse import unquote

from ..config import ConfigError, parse_base_path, read_setting
from ..invocation import coroutines
from ..streaming import StreamingResponse, http_stream
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

Message = dict[str, Any]
AsgiApp = Callable[[dict[str, Any], Callable[[], Awaitable[Message]],
                    Callable[[Message], Awaitable[None]]], Awaitable[None]]
LIFESPAN_MODES = ("auto", "on", "off")
STREAM_QUEUE = 16  # chunks the app may send ahead of the platform reading them


class LifespanFailure(RuntimeError):
    """The app's lifespan startup failed: the process cannot serve (an init error)."""


def asgi_handler(app: AsgiApp, *, streaming: bool = False,
                 binary: BinaryRule = default_binary_rule, base_path: str | None = None,
                 lifespan: str = "auto") -> Callable[[Any, Any], Awaitable[Any]]:
    """An ``async def`` Lambda handler serving ``app`` for API Gateway REST and HTTP APIs,
    Function URLs, ALB and VPC Lattice, detected per event.

    ``streaming``, ``binary`` and ``base_path`` as for :func:`lmi_gevent.http.wsgi_handler`.
    ``lifespan``: ``"auto"`` runs the app's lifespan startup once per process before its first
    invocation and its shutdown during the drain, and goes on without it when the app does
    not speak the lifespan protocol; ``"on"``: such an app is an init error; ``"off"``: never.
    The scope carries the event and the context as ``aws.event``/``aws.context`` (Mangum's
    names) and ``lambda.event``/``lambda.context`` (the WSGI environ's).
    """
    if lifespan not in LIFESPAN_MODES:
        raise ValueError(f"asgi_handler(lifespan={lifespan!r}): expected one of "
                         f"{', '.join(LIFESPAN_MODES)}")
    if base_path is None:
        base = read_setting("http_base_path")
    else:
        base = parse_base_path("asgi_handler(base_path=...)", base_path)
    cycle = None if lifespan == "off" else AppLifespan(app, required=lifespan == "on")
    widened: set[int] = set()  # the loops whose anyio thread limiter was sized for the slots

    async def handler(event: Any, context: Any) -> Any:
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in widened:
            widened.add(loop_id)
            _size_thread_limiter(_slots())
        source = detect(event)
        with malformed(source, "reading"):
            request = source.request()
            if base:
                move_base_path(request, base)
            scope = build_scope(request, event, context, cycle.state if cycle else None)
        scope["lambda.source"] = source.name
        if streaming and source.streams:
            return await _stream(app, scope, request.body)
        answer = await _buffered(app, scope, request.body, binary)
        return answer_or_refuse(source, answer, _request_line(scope))

    handler.asgi_app = app  # type: ignore[attr-defined]
    handler.lifespan = cycle  # type: ignore[attr-defined]  # coroutines.start_lifespan runs it
    return handler


def _slots() -> int:
    try:
        return int(read_setting("max_concurrency"))
    except ConfigError:
        return 1  # the runtime reports the setting at fault


def _size_thread_limiter(slots: int) -> None:
    """Starlette runs ``def`` endpoints through ``anyio.to_thread``, whose default limiter
    lets 40 run at once per loop: with more slots than that, the rest would queue although
    the threads are greenlets after patch_all. Raised to the slots, never lowered."""
    to_thread = sys.modules.get("anyio.to_thread")
    if to_thread is None or slots <= 1:
        return
    try:
        limiter = to_thread.current_default_thread_limiter()
        if limiter.total_tokens < slots:
            limiter.total_tokens = slots
    except Exception as problem:  # noqa: BLE001 - an anyio without it: def endpoints queue at 40
        log.debug("Could not size anyio's thread limiter for %d slots: %s", slots, problem)


# --- scope ---------------------------------------------------------------------------------

def build_scope(request: HttpRequest, event: Any, context: Any,
                state: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ASGI HTTP scope for one request (``path`` includes ``root_path``, as uvicorn sends)."""
    scheme, server_name, port = server_of(request.headers)
    full_path = request.script_name + request.path
    headers = [(name.lower().encode("latin-1"), _latin1(value)) for name, value in request.headers]
    if request.cookies:
        headers.append((b"cookie", _latin1("; ".join(str(cookie) for cookie in request.cookies))))
    query = request.query_string
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.protocol.partition("/")[2] or "1.1",
        "method": request.method,
        "scheme": scheme,
        "path": unquote(full_path) if "%" in full_path else full_path,
        "raw_path": full_path.encode("utf-8"),
        "root_path": unquote(request.script_name) if "%" in request.script_name else request.script_name,
        "query_string": query.encode("latin-1") if query.isascii() else query.encode("utf-8"),
        "headers": headers,
        "client": (request.source_ip, 0) if request.source_ip else None,
        "server": (server_name, int(port) if port.isdigit() else None),
        "aws.event": event,
        "aws.context": context,
        "lambda.event": event,
        "lambda.context": context,
    }
    if state is not None:
        scope["state"] = dict(state)  # each request gets a shallow copy (ASGI lifespan state)
    if request.remote_user:
        scope["lambda.remote_user"] = str(request.remote_user)
    return scope


def _latin1(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


# --- one request -----------------------------------------------------------------------------

class _Exchange:
    """``receive`` and ``send`` for one request: the body goes in once, then receive waits
    for the answer's end (Starlette listens for a disconnect while it streams)."""

    def __init__(self, body: bytes, chunks: asyncio.Queue[Any] | None = None) -> None:
        self.body = body
        self.body_sent = False
        self.status: int | None = None
        self.headers: Headers = []
        self.parts: list[bytes] = []
        self.done = False
        self._finished: asyncio.Event | None = None  # made when someone waits for the end
        self.chunks = chunks  # streaming: where each body part goes

    async def receive(self) -> Message:
        if not self.body_sent:
            self.body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        if not self.done:
            if self._finished is None:
                self._finished = asyncio.Event()
            await self._finished.wait()
        return {"type": "http.disconnect"}

    def finish(self) -> None:
        """The answer is over (or the caller went away): receive() says disconnect."""
        self.done = True
        if self._finished is not None:
            self._finished.set()

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            if self.status is not None:
                raise RuntimeError("the ASGI app sent http.response.start twice")
            self.status = int(message["status"])
            try:  # the spec's bytes pairs, decoded in one pass
                self.headers = [(name.decode("latin-1"), value.decode("latin-1"))
                                for name, value in message.get("headers") or ()]
            except AttributeError:  # an app that sent text
                self.headers = [(_text(name), _text(value))
                                for name, value in message.get("headers") or ()]
        elif kind == "http.response.body":
            if self.status is None:
                raise RuntimeError("the ASGI app sent http.response.body before "
                                   "http.response.start")
            if self.done:
                return  # the answer ended (or the caller went away): nothing more goes out
            data = message.get("body") or b""
            if type(data) is not bytes:
                data = bytes(data)
            if self.chunks is None:
                self.parts.append(data)
            elif data:
                await self.chunks.put(data)
            if not message.get("more_body", False):
                self.finish()
        else:
            raise RuntimeError(f"the ASGI app sent a message of type {kind!r}, which an HTTP "
                               "request does not take")


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


async def _buffered(app: AsgiApp, scope: dict[str, Any], body: bytes,
                    binary: BinaryRule) -> HttpAnswer:
    exchange = _Exchange(body)
    try:
        await app(scope, exchange.receive, exchange.send)
        if exchange.status is None:
            raise RuntimeError("the ASGI app returned without sending http.response.start")
    except Exception:  # noqa: BLE001 - an app failure is a 500, as any ASGI server answers
        return _failed(scope)
    finally:
        exchange.finish()
    data = exchange.parts[0] if len(exchange.parts) == 1 else b"".join(exchange.parts)
    return HttpAnswer(exchange.status, _reason(exchange.status), exchange.headers, data,
                      as_text(exchange.headers, data, binary))


def _failed(scope: dict[str, Any]) -> HttpAnswer:
    log.exception("The ASGI app failed on %s %s; answering 500.", scope["method"], scope["path"])
    return error_answer()


# --- streaming -------------------------------------------------------------------------------

_END = object()


async def _stream(app: AsgiApp, scope: dict[str, Any], body: bytes) -> StreamingResponse:
    """Start the app as a task of its own, wait for its status and first body bytes (so that
    a failure before them is still a clean 500), then hand the rest over as it comes."""
    chunks: asyncio.Queue[Any] = asyncio.Queue(STREAM_QUEUE)
    exchange = _Exchange(body, chunks)
    task = asyncio.get_running_loop().create_task(_run_streamed(app, scope, exchange))
    first = asyncio.ensure_future(chunks.get())
    await asyncio.wait([first, task], return_when=asyncio.FIRST_COMPLETED)
    if not first.done():
        first.cancel()
        failure = None if task.cancelled() else task.exception()
        if failure is not None or exchange.status is None:
            return _prelude_answer(scope, failure)
        item: Any = chunks.get_nowait() if not chunks.empty() else _END
    else:
        item = first.result()
    if isinstance(item, BaseException) or exchange.status is None:
        return _prelude_answer(scope, item if isinstance(item, BaseException) else None)
    try:
        check_fields(exchange.headers)
    except ForbiddenHeader as refused:  # the prelude is refused: none of the app's bytes go out
        task.cancel()
        return streamed(refused_answer(_request_line(scope), refused))
    headers, cookies = prelude_headers(exchange.headers)
    return http_stream(_Chunks(item, chunks, exchange, task), exchange.status, headers, cookies)


async def _run_streamed(app: AsgiApp, scope: dict[str, Any], exchange: _Exchange) -> None:
    assert exchange.chunks is not None
    try:
        await app(scope, exchange.receive, exchange.send)
        if exchange.status is None:
            raise RuntimeError("the ASGI app returned without sending http.response.start")
    except Exception as problem:  # noqa: BLE001 - handed to the reader, which ends the stream
        await exchange.chunks.put(problem)
        return
    finally:
        exchange.finish()
    await exchange.chunks.put(_END)


def _prelude_answer(scope: dict[str, Any], failure: BaseException | None) -> StreamingResponse:
    if failure is not None:
        log.error("The ASGI app failed on %s before its answer began; answering 500.",
                  _request_line(scope), exc_info=failure)
    return streamed(error_answer())


def _request_line(scope: dict[str, Any]) -> str:
    return f"{scope['method']} {scope['path']}"




class _Chunks:
    """The streamed body as the invoke path reads it: each chunk is awaited on the process
    loop from the slot (a greenlet, or the main thread in sequential mode)."""

    def __init__(self, first: Any, chunks: asyncio.Queue[Any], exchange: _Exchange,
                 task: asyncio.Task[None]) -> None:
        self.pending: Any = first
        self.chunks = chunks
        self.exchange = exchange
        self.task = task

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        item, self.pending = self.pending, None
        if item is None:
            item = coroutines.process_loop().run(self.chunks.get())
        if item is _END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item  # after the prelude: the stream ends with the error trailers
        return item

    def close(self) -> None:
        if self.task.done():
            return
        try:  # the platform stopped reading, or the slot was cut: the app must stop too
            coroutines.process_loop().run(_cancel(self.task, self.exchange))
        except Exception as problem:  # noqa: BLE001 - the stream is over either way
            log.warning("Could not cancel the ASGI app's stream task: %s: %s",
                        type(problem).__name__, problem)


async def _cancel(task: asyncio.Task[None], exchange: _Exchange) -> None:
    exchange.finish()
    task.cancel()
    await asyncio.wait([task])


# --- lifespan ----------------------------------------------------------------------------------

class AppLifespan:
    """The ASGI lifespan protocol for one app: ``startup()`` and ``shutdown()`` awaited by
    the runtime on the process loop; the app's lifespan task runs between them."""

    def __init__(self, app: AsgiApp, *, required: bool = False) -> None:
        self.app = app
        self.required = required
        self.state: dict[str, Any] = {}
        self.supported = True
        self._task: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[Message] | None = None
        self._reply: asyncio.Future[Message] | None = None

    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "state": self.state}
        self._task = loop.create_task(self.app(scope, self._inbox.get, self._send))  # type: ignore[arg-type]
        reply = await self._exchange("lifespan.startup")
        if reply is None:
            return
        if reply.get("type") == "lifespan.startup.failed":
            raise LifespanFailure(f"the ASGI app's lifespan startup failed: "
                                  f"{reply.get('message') or 'no message'}")

    async def shutdown(self) -> None:
        if not self.supported or self._task is None or self._task.done():
            return
        reply = await self._exchange("lifespan.shutdown")
        if reply is not None and reply.get("type") == "lifespan.shutdown.failed":
            raise LifespanFailure(f"the ASGI app's lifespan shutdown failed: "
                                  f"{reply.get('message') or 'no message'}")

    async def _send(self, message: Message) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(message)

    async def _exchange(self, kind: str) -> Message | None:
        """Send ``kind``, wait for the app's reply or its end; None when it does not speak
        the protocol (it returned or raised instead of replying)."""
        assert self._inbox is not None and self._task is not None
        self._reply = asyncio.get_running_loop().create_future()
        await self._inbox.put({"type": kind})
        waiting: list[asyncio.Future[Any]] = [self._reply, self._task]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if self._reply.done():
            return self._reply.result()
        self._reply.cancel()
        failure = None if self._task.cancelled() else self._task.exception()
        if self.required or kind == "lifespan.shutdown":
            raise LifespanFailure(f"the ASGI app ended without answering {kind}"
                                  + (f": {type(failure).__name__}: {failure}" if failure else ""))
        self.supported = False
        log.debug("The ASGI app does not speak the lifespan protocol (%s); serving without it.",
                  f"{type(failure).__name__}: {failure}" if failure else "it returned")
        return None
