from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from lmi_gevent.runtime_api import errors
from lmi_gevent.runtime_api.client import InvalidInvocation, Invocation
from lmi_gevent.invocation.invoker import build_context

FULL_HEADERS = {
    "Lambda-Runtime-Aws-Request-Id": "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
    "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:f",
    "Lambda-Runtime-Trace-Id": "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
    "Lambda-Runtime-Client-Context": '{"client": {"installation_id": "i", "app_title": "t", '
                                     '"app_version_name": "n", "app_version_code": "c", '
                                     '"app_package_name": "p"}, "custom": {"k": "v"}, "env": {"e": "1"}, '
                                     '"w3c": {"traceparent": "00-abc-def-01", "tracestate": "x=y", '
                                     '"baggage": "b=1", "other": "dropped"}}',
    "Lambda-Runtime-Cognito-Identity": '{"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}',
    "Lambda-Runtime-Aws-Tenant-Id": "tenant-a",
    "Lambda-Runtime-Invocation-Id": "inv-1",
    "Content-Type": "application/json",
}


def invocation(**overrides: str | None) -> Invocation:
    deadline = str(int(time.time() * 1000) + 30_000)
    headers = {**FULL_HEADERS, "Lambda-Runtime-Deadline-Ms": deadline, **overrides}
    return Invocation({name.lower(): value for name, value in headers.items() if value is not None}, b"{}")


def test_context_from_full_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"AWS_LAMBDA_FUNCTION_NAME": "f", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                       "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/f",
                       "AWS_LAMBDA_LOG_STREAM_NAME": "stream"}.items():
        monkeypatch.setenv(key, value)
    ctx = build_context(invocation())
    assert ctx.aws_request_id == "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
    assert (ctx.function_name, ctx.function_version, ctx.memory_limit_in_mb) == ("f", "$LATEST", "512")
    assert (ctx.log_group_name, ctx.log_stream_name) == ("/aws/lambda/f", "stream")
    assert ctx.invoked_function_arn.endswith(":function:f")
    assert ctx.tenant_id == "tenant-a"
    assert ctx.xray_trace_id.startswith("Root=1-5bef4de7")
    assert ctx.identity.cognito_identity_id == "id-1"
    assert ctx.identity.cognito_identity_pool_id == "pool-1"
    client = ctx.client_context.client
    assert (client.installation_id, client.app_title, client.app_version_name, client.app_version_code,
            client.app_package_name) == ("i", "t", "n", "c", "p")
    assert ctx.client_context.custom == {"k": "v"} and ctx.client_context.env == {"e": "1"}
    assert ctx.w3c() == {"traceparent": "00-abc-def-01", "tracestate": "x=y", "baggage": "b=1"}
    assert not hasattr(ctx.client_context, "w3c")
    assert 25_000 < ctx.get_remaining_time_in_millis() <= 30_000
    assert "aws_request_id=8476a536" in repr(ctx)


def test_empty_client_context_and_cognito_headers_mean_none() -> None:
    ctx = build_context(invocation(**{"Lambda-Runtime-Client-Context": "",
                                      "Lambda-Runtime-Cognito-Identity": "",
                                      "Lambda-Runtime-Aws-Tenant-Id": None}))
    assert ctx.client_context is None and ctx.w3c() == {} and ctx.tenant_id is None
    assert ctx.identity.cognito_identity_id is None and ctx.identity.cognito_identity_pool_id is None


@pytest.mark.parametrize("header, name", [("Lambda-Runtime-Client-Context", "Client Context"),
                                          ("Lambda-Runtime-Cognito-Identity", "Cognito Identity")])
def test_invalid_json_in_context_headers_is_a_context_unmarshal_error(header: str, name: str) -> None:
    with pytest.raises(errors.RuntimeFault) as caught:
        build_context(invocation(**{header: "{not json"}))
    assert caught.value.error_type == "Runtime.LambdaContextUnmarshalError"
    assert caught.value.message.startswith(f"Unable to parse {name} JSON: ")


def test_remaining_time_never_negative() -> None:
    ctx = build_context(invocation(**{"Lambda-Runtime-Deadline-Ms": "1000"}))
    assert ctx.get_remaining_time_in_millis() == 0


@pytest.mark.parametrize("request_id", [None, "", "../../init/error", "a b", "id?x=1", "é",
                                        "abc\n", "x" * 201, "a/b", "%2e%2e"])
def test_unsafe_request_ids_are_refused_naming_the_header(request_id: str | None) -> None:
    with pytest.raises(InvalidInvocation, match="Lambda-Runtime-Aws-Request-Id"):
        invocation(**{"Lambda-Runtime-Aws-Request-Id": request_id})


@pytest.mark.parametrize("request_id", ["8476a536-e9f4-11e8-9739-2dfe598c3fcd", "x" * 200,
                                        "A.b_c:d-9"])
def test_request_ids_of_the_safe_characters_are_taken(request_id: str) -> None:
    assert invocation(**{"Lambda-Runtime-Aws-Request-Id": request_id}).request_id == request_id


@pytest.mark.parametrize("deadline", [None, "", "soon", "1.5e12"])
def test_bad_deadline_is_a_context_error_naming_the_header(deadline: str | None) -> None:
    bad = invocation(**{"Lambda-Runtime-Deadline-Ms": deadline})
    assert bad.request_id  # still answerable
    with pytest.raises(errors.RuntimeFault) as caught:
        build_context(bad)
    assert caught.value.error_type == "Runtime.LambdaContextUnmarshalError"
    assert "Lambda-Runtime-Deadline-Ms" in caught.value.message


def test_invocation_environ_gives_each_context_its_own_trace_id() -> None:
    # Runs in a subprocess: the environ view changes os.environ's class for the whole process.
    code = textwrap.dedent("""
        import contextvars, os, subprocess
        from lmi_gevent.invocation.context import REQUEST_ID, TRACE_ID, install_invocation_environ
        os.environ["_X_AMZN_TRACE_ID"] = "stale-process-wide"
        install_invocation_environ()
        assert "_X_AMZN_TRACE_ID" not in os.environ
        def inside(rid, trace):
            REQUEST_ID.set(rid); TRACE_ID.set(trace)
            seen = (os.environ.get("_X_AMZN_TRACE_ID"), os.getenv("_X_AMZN_TRACE_ID"),
                    "_X_AMZN_TRACE_ID" in os.environ, dict(os.environ).get("_X_AMZN_TRACE_ID"))
            os.environ["_X_AMZN_TRACE_ID"] = trace + "-rewritten"
            return seen + (os.environ["_X_AMZN_TRACE_ID"],)
        a = contextvars.Context().run(inside, "a", "trace-a")
        b = contextvars.Context().run(inside, "b", "trace-b")
        assert a == ("trace-a", "trace-a", True, "trace-a", "trace-a-rewritten"), a
        assert b == ("trace-b", "trace-b", True, "trace-b", "trace-b-rewritten"), b
        assert os.environ.get("_X_AMZN_TRACE_ID") is None   # writes stayed in their contexts
        os.environ["OTHER"] = "1"; assert os.environ["OTHER"] == "1"
        assert subprocess.run(["sh", "-c", "echo $OTHER"], capture_output=True, text=True).stdout == "1\\n"
        def child(env=None):
            return subprocess.run(["sh", "-c", "echo $OTHER/$_X_AMZN_TRACE_ID"], env=env,
                                  capture_output=True, text=True).stdout.strip()
        def in_invocation(rid, trace):
            REQUEST_ID.set(rid); TRACE_ID.set(trace)
            return child(), child(env={"OTHER": "explicit"})
        assert contextvars.Context().run(in_invocation, "c", "trace-c") == ("1/trace-c", "explicit/")
        assert child() == "1/"  # outside an invocation: the real environment, no trace id
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr
