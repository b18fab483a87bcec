"""Streamed answers: a handler returns a :class:`StreamingResponse` and its chunks reach the
caller as the handler produces them.

    from lmi_gevent.streaming import StreamingResponse

    def handler(event, context):
        def rows():
            for number in range(1000):
                yield f"{number}\\n".encode()
        return StreamingResponse(rows(), content_type="text/csv")

The invoke path stays one (docs/design.md, invariant 6): :class:`lmi_gevent.invocation.invoker.Invoker` sees this
kind of answer and posts it with ``Lambda-Runtime-Function-Response-Mode: streaming`` and chunked
transfer encoding instead of in one body. An exception while the chunks are produced (including
a deadline reclaim or a drain cut) ends the stream with the error trailers
``Lambda-Runtime-Function-Error-Type`` and ``Lambda-Runtime-Function-Error-Body``.

:func:`http_stream` is the form Function URLs (``InvokeMode: RESPONSE_STREAM``) and API Gateway
streaming expect: a JSON prelude with the status, headers and cookies, 8 NUL bytes, then the body.
Stdlib only: it works in sequential mode, which never imports gevent.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

HTTP_INTEGRATION_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
PRELUDE_SEPARATOR = b"\0" * 8
# AWS: a streamed response may carry up to 200 MB (6 MB uncapped, the rest at up to 2 MB/s,
# which the platform enforces by reading slower; the runtime needs only the size cap).
STREAM_LIMIT = 200 * 1024 * 1024
ERROR_TYPE_TRAILER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
TRAILER_NAMES = f"{ERROR_TYPE_TRAILER}, {ERROR_BODY_TRAILER}"

Chunk = bytes | bytearray | memoryview | str


class StreamingResponse:
    """An answer sent as a stream of chunks (``bytes``, or ``str`` sent as UTF-8).

    ``chunks`` is any iterable; its ``close()``, if it has one, is called once the stream ends
    for whatever reason, as WSGI servers do. Empty chunks are skipped (a zero-length chunk would
    end a chunked body).
    """

    def __init__(self, chunks: Iterable[Chunk], content_type: str = "application/octet-stream"
                 ) -> None:
        self.chunks = chunks
        self.content_type = content_type

    def __repr__(self) -> str:
        return f"StreamingResponse(content_type={self.content_type!r})"


def http_stream(chunks: Iterable[Chunk], status: int = 200,
                headers: Mapping[str, str] | None = None,
                cookies: Sequence[str] = ()) -> StreamingResponse:
    """A streamed HTTP answer for Function URLs and API Gateway response streaming.

    ``headers`` are sent as one value each (join repeated ones with ``", "``); every
    ``Set-Cookie`` value goes in ``cookies``.
    """
    return StreamingResponse(_PreludeFirst(http_prelude(status, headers or {}, cookies), chunks),
                             HTTP_INTEGRATION_CONTENT_TYPE)


def http_prelude(status: int, headers: Mapping[str, str], cookies: Sequence[str]) -> bytes:
    """The JSON prelude and its 8-NUL separator. JSON escapes NUL, so none can appear inside.

    Raises ``ForbiddenHeader`` (a ValueError naming the header) for a name that is not an
    HTTP token or a value with CR, LF or another control character (docs/http.md)."""
    # Imported here: lmi_gevent.http's package imports this module (wsgi_handler streams).
    from .http.headers import check_cookies, check_fields
    check_fields((name, value if isinstance(value, str) else str(value))
                 for name, value in headers.items())
    check_cookies(cookie if isinstance(cookie, str) else str(cookie) for cookie in cookies)
    import json  # here, not at the top: a classic cold start never streams

    document: dict[str, Any] = {"statusCode": int(status), "headers": dict(headers)}
    if cookies:
        document["cookies"] = list(cookies)
    return json.dumps(document, separators=(",", ":")).encode("utf-8") + PRELUDE_SEPARATOR


class _PreludeFirst:
    """``prelude`` then the chunks of ``chunks``; closing it closes ``chunks``."""

    def __init__(self, prelude: bytes, chunks: Iterable[Chunk]) -> None:
        self._prelude: bytes | None = prelude
        self._chunks = chunks
        self._iterator: Iterator[Chunk] | None = None

    def __iter__(self) -> Iterator[Chunk]:
        return self

    def __next__(self) -> Chunk:
        if self._prelude is not None:
            prelude, self._prelude = self._prelude, None
            return prelude
        if self._iterator is None:
            self._iterator = iter(self._chunks)
        return next(self._iterator)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


class StreamTooLarge(Exception):
    """The stream went past :data:`STREAM_LIMIT` bytes."""


class StreamBody:
    """The chunks of one stream as the Runtime API client sends them, and how it ended.

    Iterating yields non-empty ``bytes``. An exception raised while the next chunk is produced
    (a BaseException too: a deadline reclaim or a drain cut is raised into the producer) ends
    the iteration and is kept in :attr:`failure`, for the error trailers. ``started`` tells
    whether any chunk was handed out: a post that fails before that may be retried.
    """

    def __init__(self, response: StreamingResponse, limit: int = STREAM_LIMIT) -> None:
        self._chunks = response.chunks
        self._iterator: Iterator[Chunk] | None = None
        self.limit = limit
        self.started = False
        self.sent_bytes = 0
        self.failure: BaseException | None = None
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._closed:
            raise StopIteration
        while True:
            try:
                if self._iterator is None:
                    self._iterator = iter(self._chunks)
                chunk = next(self._iterator)
                data = _as_bytes(chunk)
                if self.sent_bytes + len(data) > self.limit:
                    raise StreamTooLarge(
                        f"Response stream exceeded the maximum allowed size ({self.limit} bytes).")
            except StopIteration:
                self.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - becomes the error trailers
                self.failure = exc
                self.close()
                raise StopIteration from None
            if data:
                self.started = True
                self.sent_bytes += len(data)
                return data

    def close(self) -> None:
        """Close the producer (once); an exception from its ``close()`` counts as a failure."""
        if self._closed:
            return
        self._closed = True
        close = getattr(self._chunks, "close", None)
        if close is None:
            return
        try:
            close()
        except BaseException as exc:  # noqa: BLE001 - reported like any producer failure
            if self.failure is None:
                self.failure = exc

    def trailers(self, describe: Callable[[BaseException], dict[str, Any]]) -> dict[str, str]:
        """The error trailers for :attr:`failure` (none after a clean end).

        ``describe(exc)`` gives the error body (``errorType``, ``errorMessage``, ``stackTrace``).
        """
        if self.failure is None:
            return {}
        return error_trailers(describe(self.failure))


def error_trailers(error: Mapping[str, Any]) -> dict[str, str]:
    """``Lambda-Runtime-Function-Error-Type`` and ``-Body`` (base64 JSON) for an error body."""
    import base64
    import json

    error_type = str(error.get("errorType") or "Unhandled")
    if not (error_type.isascii() and error_type.isprintable()):
        error_type = "Unhandled"
    document = {"errorType": error_type, "errorMessage": str(error.get("errorMessage", "")),
                "stackTrace": list(error.get("stackTrace") or [])}
    encoded = base64.b64encode(json.dumps(document).encode("utf-8")).decode("ascii")
    return {ERROR_TYPE_TRAILER: error_type, ERROR_BODY_TRAILER: encoded}


def _as_bytes(chunk: Chunk) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(f"a stream chunk must be bytes or str, not {type(chunk).__name__}")
