"""One invocation: context -> unmarshal -> handler -> marshal -> exactly one answer.

Both serving modes call :meth:`Invoker.run`; they differ only in how many run at once and how
they stop (docs/design.md, invariant 6).
"""

from __future__ import annotations

import contextlib
import logging
import os

from ..records import Record
from ..runtime_api import errors
from ..runtime_api.client import Invocation, RuntimeApiClient
from ..runtime_api.delivery import RetryPolicy, deliver
from ..runtime_api.marshal import decode_event, encode_response
from ..streaming import StreamBody, StreamingResponse, StreamTooLarge
from . import coroutines
from .context import (
    REQUEST_ID,
    TENANT_ID,
    TRACE_ENV_KEY,
    TRACE_ID,
    LambdaContext,
    set_process_ids,
)
from .logs import FunctionLog

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, ContextManager

    Guard = Callable[[Invocation], ContextManager[Any]]

log = logging.getLogger("lmi_gevent")

# Platform limit on a synchronous response (docs/protocol.md: 6 MiB + 100 bytes).
RESPONSE_LIMIT = 6 * 1024 * 1024 + 100


class InvocationCut(BaseException):
    """Raised into a running handler to stop it; the invocation is answered with this error.

    A BaseException so that handlers' ``except Exception`` blocks do not swallow it.
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


class _StreamInterrupted(Exception):
    """A streamed post failed after some of it was sent: it must not be repeated."""

    def __init__(self, sent_bytes: int) -> None:
        super().__init__(sent_bytes)
        self.sent_bytes = sent_bytes


class Failure(Record):
    """An invocation to be answered with an error body (and its X-Ray cause)."""

    error: dict[str, Any]
    cause: dict[str, Any] | None


def _no_guard(invocation: Invocation) -> ContextManager[Any]:
    return contextlib.nullcontext()


class Invoker:
    """Runs invocations of one handler and posts their answers.

    ``guard`` wraps the handler call (concurrent mode uses it to reclaim the slot of an
    invocation that runs past its deadline). ``process_wide`` (sequential mode) also keeps the
    ids process-wide and sets the real ``_X_AMZN_TRACE_ID`` environment variable, as the
    official client does, so threads the handler starts see them too. ``retry`` times the
    attempts to post an answer that did not get through (see :mod:`lmi_gevent.runtime_api.delivery`).
    """

    def __init__(self, handler: Callable[[Any, Any], Any], function_log: FunctionLog, *,
                 guard: Guard = _no_guard, process_wide: bool = False,
                 retry: RetryPolicy = RetryPolicy()) -> None:
        self.handler = handler
        self.function_log = function_log
        self.guard = guard
        self.process_wide = process_wide
        self.retry = retry

    def run(self, invocation: Invocation, client: RuntimeApiClient) -> None:
        """Handle one invocation and post its one answer; PlatformFailure propagates."""
        REQUEST_ID.set(invocation.request_id)
        TENANT_ID.set(invocation.tenant_id)
        TRACE_ID.set(invocation.trace_id)
        if self.process_wide:
            set_process_ids(invocation.request_id, invocation.tenant_id)
            _set_process_trace_env(invocation.trace_id)
        try:
            outcome = self._call_handler(invocation)
            if isinstance(outcome, Failure):
                self._post_error(invocation, client, outcome.error, outcome.cause)
            elif isinstance(outcome, StreamingResponse):
                self._post_stream(invocation, client, outcome)
            else:
                self._post_response(invocation, client, *outcome)
        finally:
            REQUEST_ID.set(None)
            TENANT_ID.set(None)
            TRACE_ID.set(None)
            if self.process_wide:
                set_process_ids(None, None)

    def _call_handler(self, invocation: Invocation
                      ) -> tuple[bytes, str] | Failure | StreamingResponse:
        """The response body and content type, the stream to post, or the failure to answer
        with instead."""
        context: Any = None
        event: Any = None
        result: Any = None
        try:
            context = build_context(invocation)
            event = decode_event(invocation.body, invocation.content_type)
            with self.guard(invocation):
                result = self.handler(event, context)
                if coroutines.is_awaitable(result):  # an async handler: awaited on the loop
                    result = coroutines.process_loop().run(result)
            if isinstance(result, StreamingResponse):
                return result
            body, content_type = encode_response(result)
        except InvocationCut as cut:
            fault = errors.RuntimeFault(cut.error_type, cut.message)
            return Failure(*errors.describe_exception(fault, invocation.request_id))
        except BaseException as exc:  # noqa: BLE001 - SystemExit etc. must not kill the slot
            return Failure(*errors.describe_exception(exc, invocation.request_id))
        finally:
            context = event = result = None  # drop references before the (slow) post
        return body, content_type

    def _post_response(self, invocation: Invocation, client: RuntimeApiClient, body: bytes,
                       content_type: str) -> None:
        if len(body) > RESPONSE_LIMIT:
            error = errors.error_body(
                errors.RESPONSE_TOO_LARGE,
                f"Response payload size ({len(body)} bytes) exceeded the maximum allowed "
                f"payload size ({RESPONSE_LIMIT} bytes).", None, invocation.request_id)
            self._post_error(invocation, client, error, None)
            return
        status = self._post(invocation, "response",
                            lambda: client.post_response(invocation, body, content_type))
        if status == 413:
            error = errors.error_body(
                errors.RESPONSE_TOO_LARGE,
                f"The Runtime API refused the {len(body)}-byte response as too large (413).",
                None, invocation.request_id)
            self._post_error(invocation, client, error, None)

    def _post_stream(self, invocation: Invocation, client: RuntimeApiClient,
                     response: StreamingResponse) -> None:
        """Post a streamed answer; the chunks are produced under the same guard as the handler
        ran, so a deadline reclaim or a drain cut ends the stream with the error trailers."""
        body = StreamBody(response)

        def trailers() -> dict[str, str]:
            return body.trailers(lambda exc: self._stream_error(invocation, exc))

        def post() -> tuple[int, bytes]:
            # Delivery retries a post that failed; a stream may be posted again only while
            # nothing of it went out, else the platform would get a second, different answer.
            if body.started:
                raise _StreamInterrupted(body.sent_bytes)
            return client.post_stream(invocation, body, response.content_type, trailers)

        try:
            with self.guard(invocation):
                self._post(invocation, "response", post)
        except _StreamInterrupted as interrupted:
            log.error("The stream of invocation %s broke off after %d bytes and cannot be sent "
                      "again; the platform sees it truncated.", invocation.request_id,
                      interrupted.sent_bytes)
        except InvocationCut as cut:
            # Cut while a chunk was being written: the chunked body cannot be ended cleanly,
            # so the connection is dropped and the platform sees a truncated stream.
            client.close()
            log.error("Invocation %s was cut (%s) while its stream was being written; the "
                      "stream ends truncated.", invocation.request_id, cut.error_type)
        finally:
            body.close()  # a post that failed early still closes the app's iterable

    def _stream_error(self, invocation: Invocation, exc: BaseException) -> dict[str, Any]:
        """The error body for a stream that failed after it began (logged like any error)."""
        if isinstance(exc, InvocationCut):
            exc = errors.RuntimeFault(exc.error_type, exc.message)
        elif isinstance(exc, StreamTooLarge):
            exc = errors.RuntimeFault(errors.RESPONSE_TOO_LARGE, str(exc))
        error, _ = errors.describe_exception(exc, invocation.request_id)
        self.function_log.unhandled_error(error)
        return error

    def _post_error(self, invocation: Invocation, client: RuntimeApiClient,
                    error: dict[str, Any], cause: dict[str, Any] | None) -> None:
        self.function_log.unhandled_error(error)
        self._post(invocation, "error", lambda: client.post_error(invocation, error, cause))

    def _post(self, invocation: Invocation, kind: str,
              post: Callable[[], tuple[int, bytes]]) -> int | None:
        """Post an answer until it is delivered or its deadline passed (logged either way);
        the last status, or None when it never got through. PlatformFailure propagates."""
        deadline = invocation.deadline_ms / 1000 if invocation.deadline_ms > 0 else None
        outcome = deliver(post, f"the {kind} of invocation {invocation.request_id}",
                          deadline=deadline, policy=self.retry)
        if outcome is None:
            return None
        if not outcome.delivered:
            log.warning("Runtime API answered %s to the %s of invocation %s: %s", outcome.status,
                        kind, invocation.request_id,
                        outcome.reply[:300].decode("utf-8", "replace"))
        return outcome.status


def build_context(invocation: Invocation) -> LambdaContext:
    if invocation.header_problem:
        raise errors.RuntimeFault(errors.CONTEXT_UNMARSHAL_ERROR, invocation.header_problem)
    return LambdaContext(
        invocation.request_id,
        deadline_ms=invocation.deadline_ms,
        invoked_function_arn=invocation.function_arn,
        client_context=_json_header(invocation.client_context, "Client Context"),
        cognito_identity=_json_header(invocation.cognito_identity, "Cognito Identity"),
        tenant_id=invocation.tenant_id,
        xray_trace_id=invocation.trace_id,
    )


def _json_header(raw: str | None, name: str) -> Any:
    if not raw:  # an empty header means "none"
        return None
    import json  # only for invocations that carry such a header

    try:
        return json.loads(raw)
    except ValueError as problem:
        raise errors.RuntimeFault(errors.CONTEXT_UNMARSHAL_ERROR,
                                  f"Unable to parse {name} JSON: {problem}") from None


def _set_process_trace_env(trace_id: str | None) -> None:
    if trace_id is None:
        os.environ.pop(TRACE_ENV_KEY, None)
    else:
        os.environ[TRACE_ENV_KEY] = trace_id
