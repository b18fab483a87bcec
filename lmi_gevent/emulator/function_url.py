"""A Function URL in front of the emulated function: any HTTP request becomes a payload 2.0
event, and the function's answer becomes a real HTTP response (buffered or streamed).

The rules imitate Lambda's Function URLs: header names lower-cased and repeats comma-joined,
``Cookie`` moved to ``cookies``, ``x-forwarded-*`` added, textual bodies as is and others
base64; an answer object with ``statusCode`` is unpacked (``headers``, ``cookies``, ``body``,
``isBase64Encoded``), any other JSON answer is sent as ``200 application/json``, and a function
error is a ``502``. A streamed answer in the HTTP integration format (a JSON prelude, 8 NUL
bytes, the body) is relayed chunk by chunk. Stdlib only.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from .wire import Request

URL_ID = "localfunctionurl"
# The platform's rules, stated here again on purpose: the emulator checks the runtime, so it
# never borrows the runtime's own constants (docs/design.md, "The packages").
# A streamed HTTP answer: this content type, a JSON prelude, 8 NUL bytes, then the body.
HTTP_INTEGRATION_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
PRELUDE_SEPARATOR = bytes(8)
# Request bodies a Function URL passes as text; any other type, or any compression, is base64.
TEXTUAL_MEDIA_TYPES = frozenset({
    "application/json", "application/javascript", "application/ecmascript", "application/xml",
    "application/x-www-form-urlencoded", "application/graphql", "application/x-ndjson",
})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_FORBIDDEN_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Framing is the emulator's own business: these never pass from the function to the client.
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_FUNCTION_ERROR_BODY = b'{"Message":"Internal Server Error"}'
# The longest prelude the relay waits for before it gives up on a stream.
MAX_PRELUDE_BYTES = 1024 * 1024

Fields = list[tuple[str, str]]


class BadAnswer(ValueError):
    """The function's answer cannot be turned into an HTTP response."""


def is_textual(content_type: str, content_encoding: str) -> bool:
    """Whether the Function URL hands this request body to the function as text."""
    if content_encoding and content_encoding.strip().lower() != "identity":
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return (not media or media.startswith("text/") or media in TEXTUAL_MEDIA_TYPES
            or media.endswith(("+json", "+xml")))


def build_event(request: Request, client_ip: str, port: int) -> dict[str, Any]:
    """The Function URL (payload 2.0) event for one HTTP request."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.header_list:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
        else:
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    headers.setdefault("x-forwarded-for", client_ip)
    headers.setdefault("x-forwarded-proto", "http")
    headers.setdefault("x-forwarded-port", str(port))
    host = headers.get("host", f"127.0.0.1:{port}")
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": request.path or "/",
        "rawQueryString": request.query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": URL_ID,
            "domainName": host.rsplit(":", 1)[0] if not host.endswith("]") else host,
            "domainPrefix": URL_ID,
            "http": {"method": request.method, "path": request.path or "/", "protocol": request.version,
                     "sourceIp": client_ip, "userAgent": headers.get("user-agent", "")},
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if request.query:
        params: dict[str, str] = {}
        for key, value in parse_qsl(request.query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        event["queryStringParameters"] = params
    if request.body:
        _add_body(event, request.body, headers)
    return event


def _add_body(event: dict[str, Any], body: bytes, headers: dict[str, str]) -> None:
    textual = is_textual(headers.get("content-type", ""), headers.get("content-encoding", ""))
    if textual:
        try:
            event["body"] = body.decode("utf-8")
            return
        except UnicodeDecodeError:
            pass
    event["body"] = base64.b64encode(body).decode("ascii")
    event["isBase64Encoded"] = True


def buffered_response(content_type: str, body: bytes, function_error: bool) -> tuple[int, Fields, bytes]:
    """Status, headers and body of the HTTP response for a buffered function answer."""
    if function_error:
        return 502, [("Content-Type", "application/json")], _FUNCTION_ERROR_BODY
    try:
        document = json.loads(body) if body else None
    except ValueError:
        return 200, [("Content-Type", content_type or "application/octet-stream")], body
    if not (isinstance(document, dict) and "statusCode" in document):
        return 200, [("Content-Type", "application/json")], body
    status, headers = _status_and_headers(document)
    raw = document.get("body")
    if raw is None:
        data = b""
    elif document.get("isBase64Encoded"):
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise BadAnswer("isBase64Encoded is true but the body is not base64") from None
    else:
        data = raw.encode("utf-8") if isinstance(raw, str) else json.dumps(raw).encode()
    return status, headers, data


def _status_and_headers(document: dict[str, Any]) -> tuple[int, Fields]:
    try:
        status = int(document.get("statusCode", 200))
    except (TypeError, ValueError):
        raise BadAnswer(f"statusCode is not a number: {document.get('statusCode')!r}") from None
    if not 200 <= status <= 599:
        raise BadAnswer(f"statusCode {status} is not the status of a final HTTP response")
    headers = document.get("headers") or {}
    if not isinstance(headers, dict):
        raise BadAnswer("headers is not an object")
    fields: Fields = []
    for name, value in headers.items():
        if str(name).lower() not in _HOP_BY_HOP:
            fields.append(_field(str(name), value))
    fields.extend(_field("Set-Cookie", cookie) for cookie in document.get("cookies") or ())
    return status, fields


def _field(name: str, value: Any) -> tuple[str, str]:
    """One answer header, refused when HTTP forbids it: the emulator's own copy of the rule
    (docs/http.md, "What the adapter refuses"), so a plain handler's answer is checked too."""
    text = value if isinstance(value, str) else str(value)
    if not _TOKEN.match(name):
        raise BadAnswer(f"header name {name[:80]!r} is not an HTTP token")
    bad = _FORBIDDEN_IN_VALUE.search(text)
    if bad:
        raise BadAnswer(f"header {name} carries the control character {bad.group()!r}, which "
                        "HTTP forbids in a value")
    return name, text


def split_stream(content_type: str, chunks: Iterator[bytes]) -> tuple[int, Fields, Iterator[bytes]]:
    """Status, headers and the body chunks of a streamed answer. The HTTP integration format
    carries them in its prelude; any other stream is a ``200`` of its content type."""
    if content_type != HTTP_INTEGRATION_CONTENT_TYPE:
        return 200, [("Content-Type", content_type)], chunks
    buffered = b""
    for chunk in chunks:
        buffered += chunk
        prelude, separator, rest = buffered.partition(PRELUDE_SEPARATOR)
        if separator:
            try:
                document = json.loads(prelude)
            except ValueError:
                raise BadAnswer("the stream's prelude is not JSON") from None
            if not isinstance(document, dict):
                raise BadAnswer("the stream's prelude is not a JSON object")
            status, headers = _status_and_headers(document)
            return status, headers, _then(rest, chunks)
        if len(buffered) > MAX_PRELUDE_BYTES:
            raise BadAnswer(f"no prelude end (8 NUL bytes) in the first {MAX_PRELUDE_BYTES} bytes")
    raise BadAnswer("the stream ended before its prelude did (8 NUL bytes)")


def _then(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest
