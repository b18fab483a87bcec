"""Property: whatever bytes a broken platform sends back to ``GET /next`` — odd status lines,
header lines in any encoding, wrong or missing framing — the client returns an Invocation or
raises one of the errors the serving loops handle (RuntimeApiError, InvalidInvocation), never
anything that would end the sequential loop or cost a slot."""

from __future__ import annotations

from hypothesis import given, strategies as st

from lmi_gevent.runtime_api.client import InvalidInvocation, Invocation, RuntimeApiClient, RuntimeApiError
from tests.runtime_api.test_connection import ScriptedServer

NAMES = [b"Lambda-Runtime-Aws-Request-Id", b"Lambda-Runtime-Deadline-Ms", b"Content-Type",
         b"Lambda-Runtime-Client-Context", b"Lambda-Runtime-Cognito-Identity",
         b"Lambda-Runtime-Trace-Id", b"Lambda-Runtime-Aws-Tenant-Id", b"Connection",
         b"Transfer-Encoding", b"Content-Length"]
header_name = st.sampled_from(NAMES) | st.binary(min_size=1, max_size=20).filter(
    lambda name: b"\r" not in name and b"\n" not in name and b":" not in name)
header_value = st.binary(max_size=40).map(lambda v: v.replace(b"\r", b"").replace(b"\n", b"")) | \
    st.sampled_from([b"8f2c-11", b"application/json", b"chunked", b"close", b"-1", b"", b"{}"])
status_line = st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.1 500 Oops", b"HTTP/1.0 200 OK",
                               b"HTTP/1.1 2x0 OK", b"HTTP/2 200", b"garbage", b"HTTP/1.1 200"]) | \
    st.binary(max_size=30).map(lambda v: v.replace(b"\n", b""))
framing = st.sampled_from(["length", "wrong-length", "none", "chunked", "bad-chunk"])


def render(status: bytes, headers: list[tuple[bytes, bytes]], body: bytes, how: str) -> bytes:
    lines = [status] + [name + b": " + value for name, value in headers]
    if how == "length":
        lines.append(b"Content-Length: %d" % len(body))
    elif how == "wrong-length":
        lines.append(b"Content-Length: %d" % (len(body) + 5))
    elif how in ("chunked", "bad-chunk"):
        lines.append(b"Transfer-Encoding: chunked")
        size = b"%x" % len(body) if how == "chunked" else b"zz"
        body = (size + b"\r\n" + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@given(status=status_line, headers=st.lists(st.tuples(header_name, header_value), max_size=8),
       body=st.binary(max_size=64), how=framing)
def test_any_next_reply_is_an_invocation_or_a_handled_error(
        status: bytes, headers: list[tuple[bytes, bytes]], body: bytes, how: str) -> None:
    reply = render(status, headers, body, how)
    # Twice: a reply the client takes for a stale keep-alive connection is asked for again.
    server = ScriptedServer([reply, reply], close_after_each=True)
    client = RuntimeApiClient(f"127.0.0.1:{server.port}")
    try:
        invocation = client.next_invocation()
    except (RuntimeApiError, InvalidInvocation):
        return
    finally:
        client.close()
        server.close()
    assert isinstance(invocation, Invocation) and invocation.request_id
