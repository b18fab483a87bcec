"""The Lambda Runtime API over keep-alive HTTP/1.1 (see :mod:`lmi_gevent.runtime_api.connection`).

One :class:`RuntimeApiClient` per slot: each owns one connection, so a slot's long-poll never
waits behind another slot's post. Imported only after the serving mode is chosen, so that in
concurrent mode its sockets are gevent's.
"""

from __future__ import annotations

import sys

from .. import __version__
from ..streaming import TRAILER_NAMES
from .address import runtime_api_address
from .connection import Connection, ConnectionLost, peek
from .marshal import to_json

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

API_PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
XRAY_CAUSE_HEADER = "Lambda-Runtime-Function-XRay-Error-Cause"
INVOCATION_ID_HEADER = "Lambda-Runtime-Invocation-Id"
RESPONSE_MODE_HEADER = "Lambda-Runtime-Function-Response-Mode"
XRAY_CAUSE_LIMIT = 1024 * 1024  # the official client drops larger causes rather than send them
USER_AGENT = (f"lmi-gevent/{__version__} "
              f"python/{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}")

# Request ids go into a URL path; anything outside this set is refused rather than escaped.
# (A set, not a regular expression: compiling one costs a classic cold start ~0.2 ms.)
_SAFE_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
_SAFE_ID_LENGTH = 200


class RuntimeApiError(Exception):
    """The Runtime API could not be reached or answered with an unexpected status."""

    def __init__(self, endpoint: str, status: int | None, detail: str) -> None:
        where = f"{endpoint} -> {status}" if status else endpoint
        super().__init__(f"Runtime API {where}: {detail}")
        self.endpoint = endpoint
        self.status = status


class PlatformFailure(RuntimeApiError):
    """HTTP 500: the platform is in a non-recoverable state and the runtime should exit."""


class InvalidInvocation(ValueError):
    """A ``/next`` response the runtime cannot answer: its request id is missing or unsafe."""


class Invocation:
    """One event from ``/next`` with the headers that describe it."""

    __slots__ = ("request_id", "deadline_ms", "function_arn", "trace_id", "client_context",
                 "cognito_identity", "tenant_id", "invocation_id", "content_type", "body",
                 "header_problem")

    def __init__(self, headers: dict[str, str], body: bytes) -> None:
        """``headers``: the /next response's headers with lower-cased names."""
        request_id = headers.get("lambda-runtime-aws-request-id") or ""
        if not (0 < len(request_id) <= _SAFE_ID_LENGTH
                and _SAFE_ID_CHARS.issuperset(request_id)):
            raise InvalidInvocation(
                f"Lambda-Runtime-Aws-Request-Id header is missing or unsafe: {request_id!r}")
        self.request_id = request_id
        # Any other bad header still leaves an answerable invocation: it is answered with an
        # error naming the header (see invoke.build_context) instead of being dropped.
        self.header_problem: str | None = None
        deadline = headers.get("lambda-runtime-deadline-ms") or ""
        try:
            self.deadline_ms = int(deadline)
        except ValueError:
            self.deadline_ms = 0
            self.header_problem = (
                f"Lambda-Runtime-Deadline-Ms header is not epoch milliseconds: {deadline!r}")
        self.function_arn = headers.get("lambda-runtime-invoked-function-arn")
        self.trace_id = headers.get("lambda-runtime-trace-id")
        self.client_context = headers.get("lambda-runtime-client-context")
        self.cognito_identity = headers.get("lambda-runtime-cognito-identity")
        self.tenant_id = headers.get("lambda-runtime-aws-tenant-id")
        self.invocation_id = headers.get("lambda-runtime-invocation-id")
        self.content_type = headers.get("content-type")
        self.body = body

    def __repr__(self) -> str:
        return f"Invocation({self.request_id})"


class RuntimeApiClient:
    """Calls to one Runtime API endpoint over one keep-alive connection."""

    def __init__(self, address: str) -> None:
        host_port = runtime_api_address(address)
        if host_port is None:
            raise ValueError(f"AWS_LAMBDA_RUNTIME_API: not host:port: {address!r}")
        self.address = address
        self._conn = Connection(*host_port)

    def close(self) -> None:
        self._conn.close()

    def connection_fd(self) -> int:
        """The connection's file descriptor (-1 when closed), for a thread that must act on it
        without the event loop (:mod:`lmi_gevent.runtime_api.without_hub`)."""
        return self._conn.sock.fileno() if self._conn.sock is not None else -1

    def has_unread_data(self) -> bool:
        """True when an answer (e.g. an invocation) is waiting unread on the connection."""
        return self._conn.sock is not None and readable_now(self._conn.sock)

    def _call(self, method: str, path: str, headers: dict[str, str] | None = None,
              body: bytes | None = None, before_read: Callable[[Any], None] | None = None,
              *, attempts: int = 2) -> tuple[int, dict[str, str], bytes]:
        """One request; ``attempts=2`` sends it again once on a fresh connection when the
        first one turns out to be closed (posts leave that to :mod:`lmi_gevent.runtime_api.delivery`,
        which must know that a second attempt was made)."""
        all_headers = {"User-Agent": USER_AGENT}
        if headers:
            all_headers.update(headers)
        for attempt in range(1, attempts + 1):
            try:
                response = self._conn.request(method, path, all_headers, body, before_read)
                return response.status, response.headers, response.body
            except (ConnectionLost, BrokenPipeError, ConnectionResetError) as exc:
                self._conn.close()
                # A keep-alive connection the server already closed fails on first use;
                # one fresh connection is the standard remedy.
                if attempt == attempts:
                    raise RuntimeApiError(path, None, f"connection lost ({exc})") from exc
            except OSError as exc:
                self._conn.close()
                raise RuntimeApiError(path, None, f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def next_invocation(self, wait: Callable[[Any], None] | None = None) -> Invocation:
        """Long-poll ``/next``; raises RuntimeApiError or InvalidInvocation.

        ``wait(sock)``, if given, is where the long wait happens (see ``_http``).
        """
        path = f"{API_PREFIX}/invocation/next"
        status, headers, body = self._call("GET", path, before_read=wait)
        if status != 200:
            # Even a 500 here is retried: on /next it also means "too many idle polls".
            raise RuntimeApiError(path, status, _excerpt(body))
        return Invocation(headers, body)

    def post_response(self, invocation: Invocation, body: bytes, content_type: str
                      ) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type}
        return self._post(f"{API_PREFIX}/invocation/{invocation.request_id}/response",
                          headers, body, invocation)

    def post_stream(self, invocation: Invocation, chunks: Iterable[bytes], content_type: str,
                    trailers: Callable[[], dict[str, str]]) -> tuple[int, bytes]:
        """Stream a response: each chunk is sent as it is produced, then ``trailers()``.

        Not retried here: once a chunk is sent the answer cannot be repeated. A caller that
        knows nothing was taken from ``chunks`` yet may call again after a RuntimeApiError.
        """
        path = f"{API_PREFIX}/invocation/{invocation.request_id}/response"
        headers = {"User-Agent": USER_AGENT, "Content-Type": content_type,
                   RESPONSE_MODE_HEADER: "streaming", "Trailer": TRAILER_NAMES}
        if invocation.invocation_id:
            headers[INVOCATION_ID_HEADER] = invocation.invocation_id
        try:
            response = self._conn.request_chunked("POST", path, headers, chunks, trailers)
        except OSError as exc:
            self._conn.close()
            raise RuntimeApiError(path, None, f"{type(exc).__name__}: {exc}") from exc
        if response.status == 500:
            raise PlatformFailure(path, response.status, _excerpt(response.body))
        return response.status, response.body

    def post_error(self, invocation: Invocation, error: dict[str, Any],
                   cause: dict[str, Any] | None) -> tuple[int, bytes]:
        headers = _error_headers(error, cause)
        return self._post(f"{API_PREFIX}/invocation/{invocation.request_id}/error",
                          headers, to_json(error).encode("utf-8"), invocation)

    def post_init_error(self, error: dict[str, Any]) -> tuple[int, bytes]:
        return self._post(f"{API_PREFIX}/init/error", _error_headers(error, None),
                          to_json(error).encode("utf-8"), None)

    def _post(self, path: str, headers: dict[str, str], body: bytes,
              invocation: Invocation | None) -> tuple[int, bytes]:
        if invocation is not None and invocation.invocation_id:
            headers[INVOCATION_ID_HEADER] = invocation.invocation_id
        status, _, reply = self._call("POST", path, headers, body, attempts=1)
        if status == 500:
            raise PlatformFailure(path, status, _excerpt(reply))
        return status, reply


def readable_now(sock: Any) -> bool:
    """True when bytes wait unread on ``sock``.

    Peeks without waiting instead of asking ``select``: a handler may have monkey-patched
    ``select`` with gevent, and then a signal handler runs in gevent's hub, where a patched
    ``select`` cannot be called. An end of stream counts as nothing to read.
    """
    try:
        return bool(peek(sock))
    except (OSError, ValueError):  # closed under us: nothing to read
        return False


def _error_headers(error: dict[str, Any], cause: dict[str, Any] | None) -> dict[str, str]:
    error_type = error.get("errorType") or ""
    # Header values must be printable ASCII on one line; a class name may be neither.
    if not (error_type.isascii() and error_type.isprintable()):
        error_type = "Unhandled"
    headers = {"Content-Type": "application/json", ERROR_TYPE_HEADER: error_type or "Unhandled"}
    if cause is not None:
        import json  # errors only

        text = json.dumps(cause, ensure_ascii=True, separators=(",", ":"), default=str)
        if len(text) < XRAY_CAUSE_LIMIT:
            headers[XRAY_CAUSE_HEADER] = text
    return headers


def _excerpt(body: bytes, limit: int = 300) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return text + ("…" if len(body) > limit else "")
