"""Property: whatever a broken or hostile platform puts in a ``/next`` answer's headers and
body, the invocation gets exactly one answer — the handler's response, or an error with a
clear ``Runtime.*`` type — and nothing escapes into the slot; only an unusable request id
(which cannot go into an answer's URL) is refused, with InvalidInvocation."""

from __future__ import annotations

import io
import json
import re
import time
from typing import Any

from hypothesis import given, strategies as st

from lmi_gevent.runtime_api import errors
from lmi_gevent.runtime_api.client import InvalidInvocation, Invocation
from lmi_gevent.invocation.invoker import Invoker
from lmi_gevent.invocation.logs import FunctionLog, StreamSink

# Header values as an HTTP reader can hand them over: latin-1 text without line breaks.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
# A JSON header: valid JSON of any shape, or any text at all.
json_header = st.one_of(json_values.map(lambda v: json.dumps(v, ensure_ascii=False)), header_text)
deadline = st.one_of(st.integers(-2**70, 2**70).map(str), header_text,
                     st.just(str(int(time.time() * 1000) + 60_000)))
request_id = st.one_of(st.uuids().map(str), st.from_regex(r"[A-Za-z0-9._:-]{1,200}", fullmatch=True),
                       header_text)
content_type = st.sampled_from(["application/json", "application/json; charset=utf-8",
                                "text/plain", "application/octet-stream", ""]) | header_text
body = st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200))

OPTIONAL = {
    "lambda-runtime-invoked-function-arn": header_text,
    "lambda-runtime-trace-id": header_text,
    "lambda-runtime-client-context": json_header,
    "lambda-runtime-cognito-identity": json_header,
    "lambda-runtime-aws-tenant-id": header_text,
    "lambda-runtime-invocation-id": header_text,
    "content-type": content_type,
    "lambda-runtime-deadline-ms": deadline,
}
headers = st.fixed_dictionaries({"lambda-runtime-aws-request-id": request_id},
                                optional=OPTIONAL)

RUNTIME_TYPES = {errors.UNMARSHAL_ERROR, errors.CONTEXT_UNMARSHAL_ERROR, errors.MARSHAL_ERROR}
SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}\Z")


class RecordingClient:
    """Stands in for RuntimeApiClient: every post is recorded and accepted."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []

    def post_response(self, invocation: Invocation, body: bytes, content_type: str) -> tuple[int, bytes]:
        self.posts.append(("response", body))
        return 202, b""

    def post_error(self, invocation: Invocation, error: dict[str, Any], cause: Any) -> tuple[int, bytes]:
        json.dumps(error)  # the error body must be serialisable as it is posted
        self.posts.append(("error", error))
        return 202, b""


def reads_everything(event: Any, context: Any) -> dict[str, Any]:
    """A handler that touches every part of the context a platform header feeds."""
    identity = context.identity
    client_context = context.client_context
    return {
        "event": type(event).__name__,
        "remaining": context.get_remaining_time_in_millis(),
        "identity": [identity.cognito_identity_id, identity.cognito_identity_pool_id] if identity else None,
        "client": repr(client_context),
        "custom": getattr(client_context, "custom", None) is not None,
        "w3c": context.w3c(),
        "tenant": context.tenant_id,
        "arn": context.invoked_function_arn,
        "repr": repr(context)[:50],
    }


@given(headers=headers, body=body)
def test_any_next_answer_gets_exactly_one_clear_answer(headers: dict[str, str], body: bytes) -> None:
    try:
        invocation = Invocation(headers, body)
    except InvalidInvocation as refused:
        assert not SAFE_ID.match(headers["lambda-runtime-aws-request-id"])
        assert "Lambda-Runtime-Aws-Request-Id" in str(refused)
        return
    client = RecordingClient()
    invoker = Invoker(reads_everything, FunctionLog(StreamSink(io.StringIO()), json_format=False))
    invoker.run(invocation, client)  # type: ignore[arg-type]  # must not raise
    assert len(client.posts) == 1, client.posts
    kind, answer = client.posts[0]
    if kind == "error":
        assert answer["errorType"] in RUNTIME_TYPES, answer
        assert answer["errorMessage"] and answer["requestId"] == invocation.request_id
    else:
        assert json.loads(answer)["event"] in ("dict", "list", "str", "int", "float", "bool",
                                               "NoneType", "bytes")
