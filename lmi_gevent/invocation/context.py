"""The handler's ``context`` object and the per-invocation context variables.

Per-invocation state (request id, tenant id, trace id) lives in :mod:`contextvars`. Each slot
greenlet has a context of its own, so values set inside it are seen by that invocation alone
(docs/design.md, invariant 4) — and by what the handler spawns, which starts in a copy of it
(:mod:`lmi_gevent.integrations.threads`). Sequential mode also keeps the ids process-wide, as the official
client does (:func:`current_ids`).
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import time
from collections.abc import Iterator

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "lmi_gevent.request_id", default=None)
TENANT_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "lmi_gevent.tenant_id", default=None)
TRACE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "lmi_gevent.trace_id", default=None)

W3C_FIELDS = ("traceparent", "tracestate", "baggage")

# Sequential mode runs one invocation at a time, so its ids are also kept process-wide, as the
# official client keeps them: a thread the handler starts begins with an empty context and
# would otherwise log without the request id. Concurrent mode never sets these (see inherit).
_process_ids: tuple[str | None, str | None] = (None, None)


def set_process_ids(request_id: str | None, tenant_id: str | None) -> None:
    global _process_ids
    _process_ids = (request_id, tenant_id)


def current_ids() -> tuple[str | None, str | None]:
    """(request id, tenant id) of the invocation this code runs for, or (None, None)."""
    request_id = REQUEST_ID.get()
    if request_id is None:
        return _process_ids
    return request_id, TENANT_ID.get()


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, fields: dict[str, Any] | None = None) -> None:
        fields = fields or {}
        self.cognito_identity_id = fields.get("cognitoIdentityId")
        self.cognito_identity_pool_id = fields.get("cognitoIdentityPoolId")

    def __repr__(self) -> str:
        return (f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
                f"cognito_identity_pool_id={self.cognito_identity_pool_id}])")


class Client:
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code",
                 "app_package_name")

    def __init__(self, fields: dict[str, Any]) -> None:
        for name in self.__slots__:
            setattr(self, name, fields.get(name))

    def __repr__(self) -> str:
        inner = ",".join(f"{name}={getattr(self, name)}" for name in self.__slots__)
        return f"Client([{inner}])"


class ClientContext:
    __slots__ = ("custom", "env", "client")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.custom = fields.get("custom")
        self.env = fields.get("env")
        client = fields.get("client")
        self.client = Client(client) if isinstance(client, dict) else client

    def __repr__(self) -> str:
        return f"ClientContext([custom={self.custom},env={self.env},client={self.client}])"


class LambdaContext:
    """What the handler receives as ``context``; the same fields as the official client's."""

    def __init__(
        self,
        aws_request_id: str,
        *,
        deadline_ms: int,
        invoked_function_arn: str | None = None,
        client_context: dict[str, Any] | None = None,
        cognito_identity: dict[str, Any] | None = None,
        tenant_id: str | None = None,
        xray_trace_id: str | None = None,
        environ: Any = os.environ,
    ) -> None:
        self.aws_request_id = aws_request_id
        self.log_group_name = environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id
        self.xray_trace_id = xray_trace_id
        self._w3c = _take_w3c(client_context)
        self.client_context = (ClientContext(client_context)
                               if isinstance(client_context, dict) else None)
        self.identity = CognitoIdentity(cognito_identity if isinstance(cognito_identity, dict)
                                        else None)
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def w3c(self) -> dict[str, str]:
        """The W3C trace context (traceparent, tracestate, baggage) sent in the client context."""
        return dict(self._w3c)

    def log(self, msg: Any) -> None:
        """Write ``msg`` to the function's log as is (no level, no prefix), like the official client."""
        for handler in logging.getLogger().handlers:
            sink = getattr(handler, "sink", None)
            if sink is not None:
                sink.write(str(msg))
                return
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        return (
            "LambdaContext(["
            f"aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},"
            f"log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},"
            f"memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},"
            f"identity={self.identity},"
            f"tenant_id={self.tenant_id}"
            "])"
        )


def _take_w3c(client_context: Any) -> dict[str, str]:
    # The w3c block is removed from the client context so it is reachable only via w3c().
    if not isinstance(client_context, dict):
        return {}
    raw = client_context.pop("w3c", None)
    if not isinstance(raw, dict):
        return {}
    return {key: raw[key] for key in W3C_FIELDS if isinstance(raw.get(key), str)}


TRACE_ENV_KEY = "_X_AMZN_TRACE_ID"


class _InvocationEnviron(type(os.environ)):  # type: ignore[misc]
    """``os.environ`` whose ``_X_AMZN_TRACE_ID`` is the current invocation's trace id.

    botocore and the X-Ray SDK read the trace id from the process environment; with many
    invocations in one process that variable must be per invocation. Inside an invocation the
    key reads (and writes) the :data:`TRACE_ID` context variable; outside, the real environment.
    Child processes started with the inherited environment do not see it (document, not fix).
    """

    def __getitem__(self, key: str) -> str:
        if key == TRACE_ENV_KEY and REQUEST_ID.get() is not None:
            value = TRACE_ID.get()
            if value is None:
                raise KeyError(key)
            return value
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: str) -> None:
        if key == TRACE_ENV_KEY and REQUEST_ID.get() is not None:
            TRACE_ID.set(str(value))
            return
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        if key == TRACE_ENV_KEY and REQUEST_ID.get() is not None:
            if TRACE_ID.get() is None:
                raise KeyError(key)
            TRACE_ID.set(None)
            return
        super().__delitem__(key)

    def __iter__(self) -> Iterator[str]:
        inside = REQUEST_ID.get() is not None
        for key in super().__iter__():
            if not (inside and key == TRACE_ENV_KEY):
                yield key
        if inside and TRACE_ID.get() is not None:
            yield TRACE_ENV_KEY

    def __len__(self) -> int:
        return sum(1 for _ in self)


def install_invocation_environ() -> None:
    """Make ``os.environ['_X_AMZN_TRACE_ID']`` per invocation (concurrent mode).

    The object keeps its identity (modules holding ``os.environ`` see the change) and the
    process-wide value is removed so no invocation can read another's stale id.
    """
    os.environ.pop(TRACE_ENV_KEY, None)
    os.environ.__class__ = _InvocationEnviron
    import subprocess  # already imported by gevent's patching

    subprocess.Popen.__init__ = _inherit_invocation_environ(  # type: ignore[method-assign]
        subprocess.Popen.__init__)


_POSITIONAL_ENV = 10  # Popen(args, bufsize, executable, stdin, stdout, stderr, preexec_fn,
#                            close_fds, shell, cwd, env, ...): env's index after args


def _inherit_invocation_environ(init: Any) -> Any:
    """A child started inside an invocation without an explicit ``env`` gets the invocation's
    view of the environment (its ``_X_AMZN_TRACE_ID``), as a child of the official client's
    one-invocation-per-process worker would. The C-level environment has no trace id."""

    def __init__(self: Any, args: Any, *more: Any, **options: Any) -> None:
        if (len(more) < _POSITIONAL_ENV and options.get("env") is None
                and REQUEST_ID.get() is not None and TRACE_ID.get() is not None):
            options["env"] = dict(os.environ)
        init(self, args, *more, **options)

    __init__.__wrapped__ = init  # type: ignore[attr-defined]
    return __init__
