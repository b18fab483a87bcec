"""The HTTP event sources Lambda knows, each read into one :class:`HttpRequest` and answered in
its own shape. One class per source; :func:`detect` picks the class from the event.

What differs between sources (docs/protocol.md, "HTTP event sources"):

==================  ==================  ======================  ==========================
source              query values        repeated headers        answer headers
==================  ==================  ======================  ==========================
API Gateway REST    decoded             ``multiValueHeaders``   ``multiValueHeaders``
HTTP API, URL (v2)  ``rawQueryString``  comma-joined            comma-joined + ``cookies``
ALB                 still encoded       only when enabled       as the request came
VPC Lattice v1      decoded             comma-joined            one value per name
VPC Lattice v2      decoded, lists      lists                   one value per name
==================  ==================  ======================  ==========================
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import unquote

from ..streaming import StreamingResponse, http_stream
from .headers import ForbiddenHeader, check_fields, check_reason

log = logging.getLogger("lmi_gevent.http")

Headers = list[tuple[str, str]]
BinaryRule = Callable[[str, str], bool]
ACCEPTED_SHAPES = ("API Gateway REST (v1, with or without multiValueHeaders), HTTP API (v2), "
                   "Function URL, ALB (with or without multi-value headers), "
                   "VPC Lattice (v1 and v2)")


class UnsupportedEvent(ValueError):
    """The event is not an HTTP request from a source the adapter knows."""


@dataclass(slots=True)
class HttpRequest:
    """One HTTP request, whatever source it came from."""

    method: str
    path: str  # as received: may still be percent-encoded; trailing slash kept
    query_string: str  # ready for QUERY_STRING (percent-encoded)
    headers: Headers  # every value, names as received
    body: bytes = b""
    source_ip: str | None = None
    protocol: str = "HTTP/1.1"
    script_name: str = ""  # a stage or base path the URL carries before ``path``
    cookies: list[str] = field(default_factory=list)  # v2 sends the Cookie header here
    remote_user: str | None = None  # a Lambda authorizer's principalId


@dataclass(slots=True)
class HttpAnswer:
    """The app's answer before it is shaped for a source."""

    status: int
    reason: str
    headers: Headers
    body: bytes
    text: str | None  # the body as text, or None to send it base64-encoded


class EventSource:
    name = "http"
    streams = False  # can this source stream an answer (Function URL, API Gateway REST)?

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event

    def request(self) -> HttpRequest:
        raise NotImplementedError

    def answer(self, answer: HttpAnswer) -> dict[str, Any]:
        """The answer in this source's shape. Raises ``ForbiddenHeader`` (a ValueError) when a
        header or the reason carries what HTTP forbids (docs/http.md, "What the adapter
        refuses"): every writer checks before shaping, so no adapter can split a response."""
        raise NotImplementedError

    # --- shared pieces ------------------------------------------------------------------

    def _context(self) -> dict[str, Any]:
        return self.event.get("requestContext") or {}

    def _body(self, encoded_key: str = "isBase64Encoded") -> bytes:
        body = self.event.get("body")
        if body is None:
            return b""
        if self.event.get(encoded_key):
            try:
                return base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise UnsupportedEvent(f"{self.name} event: {encoded_key} is true but the body "
                                       "is not valid base64") from None
        return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def _pairs(mapping: Mapping[str, Any] | None) -> Headers:
    """``{name: value or [values]}`` -> ``[(name, value), ...]``; None and null values skipped."""
    pairs: Headers = []
    for name, value in (mapping or {}).items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            pairs.extend((name, str(item)) for item in value if item is not None)
        else:
            pairs.append((name, str(value)))
    return pairs


def _single_pairs(mapping: Mapping[str, Any] | None) -> Headers:
    """The fast path of :func:`_pairs` for ``{name: value}`` (the common event shape)."""
    if not mapping:
        return []
    pairs = list(mapping.items())
    for _, value in pairs:
        if type(value) is not str:
            return _pairs(mapping)
    return pairs


def _multi_pairs(mapping: Mapping[str, Any] | None) -> Headers:
    """The fast path of :func:`_pairs` for ``{name: [values]}``."""
    if not mapping:
        return []
    try:
        pairs = [(name, value) for name, values in mapping.items() for value in values]
    except TypeError:  # a null list or a bare value
        return _pairs(mapping)
    for _, value in pairs:
        if type(value) is not str:
            return _pairs(mapping)
    return pairs


def _encoded_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Decoded query values re-encoded (spaces as %20, which every parser reads back)."""
    return "&".join(f"{_quoted(key)}={_quoted(value)}" for key, value in pairs)


def _quoted(text: str) -> str:
    """Percent-encode all but RFC 3986's unreserved characters (``quote(text, safe="")``, at a
    fraction of its cost: it profiled at a quarter of an API Gateway request's adapter time)."""
    if _UNRESERVED(text):
        return text
    return "".join([_BYTE_QUOTED[byte] for byte in text.encode("utf-8")])


_UNRESERVED_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~-"
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*\Z").match
_BYTE_QUOTED = [chr(byte) if chr(byte) in _UNRESERVED_CHARS else f"%{byte:02X}" for byte in range(256)]


def _forwarded_for(headers: Headers) -> str | None:
    for name, value in headers:
        if name.lower() == "x-forwarded-for":
            return value.split(",")[0].strip() or None
    return None


def _joined(headers: Headers) -> tuple[dict[str, str], list[str]]:
    """One value per name (repeats comma-joined, as HTTP allows), and the Set-Cookie values
    apart: they cannot be comma-joined."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        if len(name) == 10 and name.lower() == "set-cookie":  # len() first: lower() is dearer
            cookies.append(value)
            continue
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined, cookies


def _grouped(headers: Headers) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name, []).append(value)
    return grouped


def _single_valued(headers: Headers) -> dict[str, str]:
    """For sources without multi-value answers: repeats comma-joined; several Set-Cookie
    headers are kept apart under differently-cased names, which HTTP treats as one name."""
    joined, cookies = _joined(headers)
    for index, cookie in enumerate(cookies):
        joined[_CASINGS[index] if index < len(_CASINGS) else _casing(index)] = cookie
    return joined


def _casing(index: int) -> str:
    """The index-th spelling of 'set-cookie' by letter case (512 spellings)."""
    letters = "set-cookie"
    spelled, bit = [], 0
    for char in letters:
        if char.isalpha():
            spelled.append(char.upper() if index >> bit & 1 else char)
            bit += 1
        else:
            spelled.append(char)
    if index >= 1 << bit:
        raise ValueError("more than 512 Set-Cookie headers cannot be sent without multi-value headers")
    return "".join(spelled)


_CASINGS = [_casing(index) for index in range(16)]


def _body_fields(answer: HttpAnswer) -> dict[str, Any]:
    if answer.text is None:
        return {"body": base64.b64encode(answer.body).decode("ascii"), "isBase64Encoded": True}
    return {"body": answer.text, "isBase64Encoded": False}


# --- the sources --------------------------------------------------------------------------

class ApiGatewayV1(EventSource):
    """API Gateway REST API, proxy integration (payload 1.0)."""

    name = "API Gateway REST (v1)"
    streams = True

    def request(self) -> HttpRequest:
        event = self.event
        multi = event.get("multiValueHeaders")
        headers = _multi_pairs(multi) if multi else _single_pairs(event.get("headers"))
        multi_query = event.get("multiValueQueryStringParameters")
        query = _multi_pairs(multi_query) if multi_query else _single_pairs(event.get("queryStringParameters"))
        path = event.get("path") or "/"
        context = self._context()
        return HttpRequest(
            method=str(event.get("httpMethod") or "GET").upper(),
            path=path,
            query_string=_encoded_query(query),
            headers=headers,
            body=self._body(),
            source_ip=(context.get("identity") or {}).get("sourceIp") or _forwarded_for(headers),
            protocol=context.get("protocol") or "HTTP/1.1",
            script_name=_stage_prefix(context.get("path"), path, context.get("stage"), headers),
            remote_user=(context.get("authorizer") or {}).get("principalId"),
        )

    def answer(self, answer: HttpAnswer) -> dict[str, Any]:
        check_fields(answer.headers)
        # REST APIs take multiValueHeaders in any answer, whatever the request carried.
        return {"statusCode": answer.status, "multiValueHeaders": _grouped(answer.headers),
                **_body_fields(answer)}


def _stage_prefix(context_path: str | None, path: str, stage: str | None, headers: Headers) -> str:
    """``/prod`` when the URL was ``/prod/items`` and ``path`` is ``/items``: REST APIs drop
    the stage (or a custom domain's base path) from ``path`` but keep it in
    ``requestContext.path``. Without that field, the stage on an ``execute-api`` host."""
    if not context_path:
        host = next((value for name, value in headers if name.lower() == "host"), "")
        return f"/{stage}" if stage and ".execute-api." in host else ""
    if context_path == path:
        return ""
    full, tail = unquote(context_path), unquote(path)
    if tail != "/" and full.endswith(tail):
        return full[:-len(tail)].rstrip("/")
    if tail == "/" and len(full) > 1:
        return full.rstrip("/")
    return ""


class HttpApiV2(EventSource):
    """HTTP API (payload 2.0) and Function URLs, which send the same shape."""

    name = "HTTP API (v2)"
    streams = True

    def request(self) -> HttpRequest:
        event = self.event
        context = self._context()
        http = context.get("http") or {}
        headers = _single_pairs(event.get("headers"))
        raw_path = event.get("rawPath") or http.get("path") or "/"
        stage = context.get("stage")
        script_name = ""
        if stage and stage != "$default":
            prefix = "/" + stage
            if raw_path == prefix or raw_path.startswith(prefix + "/"):
                script_name, raw_path = prefix, raw_path[len(prefix):] or "/"
        return HttpRequest(
            method=str(http.get("method") or "GET").upper(),
            path=raw_path,
            query_string=event.get("rawQueryString") or "",
            headers=headers,
            body=self._body(),
            source_ip=http.get("sourceIp") or _forwarded_for(headers),
            protocol=http.get("protocol") or "HTTP/1.1",
            script_name=script_name,
            cookies=event.get("cookies") or [],
        )

    def answer(self, answer: HttpAnswer) -> dict[str, Any]:
        check_fields(answer.headers)
        headers, cookies = _joined(answer.headers)
        shaped: dict[str, Any] = {"statusCode": answer.status, "headers": headers}
        if cookies:
            shaped["cookies"] = cookies
        shaped.update(_body_fields(answer))
        return shaped


class FunctionUrl(HttpApiV2):
    name = "Function URL"


class Alb(EventSource):
    """Application Load Balancer; multi-value headers only when the target group enables them."""

    name = "ALB"

    @property
    def multi_value(self) -> bool:
        return "multiValueHeaders" in self.event and self.event["multiValueHeaders"] is not None

    def request(self) -> HttpRequest:
        event = self.event
        if self.multi_value:
            headers = _multi_pairs(event.get("multiValueHeaders"))
            query = _multi_pairs(event.get("multiValueQueryStringParameters"))
        else:
            headers = _single_pairs(event.get("headers"))
            query = _single_pairs(event.get("queryStringParameters"))
        return HttpRequest(
            method=str(event.get("httpMethod") or "GET").upper(),
            path=event.get("path") or "/",
            # The load balancer hands over query keys and values still percent-encoded.
            query_string="&".join(f"{key}={value}" if value != "" else key
                                  for key, value in query),
            headers=headers,
            body=self._body(),
            source_ip=_forwarded_for(headers),
        )

    def answer(self, answer: HttpAnswer) -> dict[str, Any]:
        check_fields(answer.headers)
        check_reason(answer.reason)
        shaped: dict[str, Any] = {"statusCode": answer.status,
                                  "statusDescription": f"{answer.status} {answer.reason}".strip()}
        if self.multi_value:
            shaped["multiValueHeaders"] = _grouped(answer.headers)
        else:
            shaped["headers"] = _single_valued(answer.headers)
        shaped.update(_body_fields(answer))
        return shaped


class LatticeV1(EventSource):
    """VPC Lattice, event format v1 (snake_case keys)."""

    name = "VPC Lattice v1"

    def request(self) -> HttpRequest:
        event = self.event
        headers = _single_pairs(event.get("headers"))
        path, _, inline_query = (event.get("raw_path") or "/").partition("?")
        params = event.get("query_string_parameters")
        return HttpRequest(
            method=str(event.get("method") or "GET").upper(),
            path=path or "/",
            query_string=_encoded_query(_single_pairs(params)) if params else inline_query,
            headers=headers,
            body=self._body("is_base64_encoded"),
            source_ip=_forwarded_for(headers),
        )

    def answer(self, answer: HttpAnswer) -> dict[str, Any]:
        check_fields(answer.headers)
        check_reason(answer.reason)
        return {"statusCode": answer.status, "statusDescription": f"{answer.status} {answer.reason}",
                "headers": _single_valued(answer.headers), **_body_fields(answer)}


class LatticeV2(LatticeV1):
    """VPC Lattice, event format v2: header and query values come as lists."""

    name = "VPC Lattice v2"

    def request(self) -> HttpRequest:
        event = self.event
        headers = _pairs(event.get("headers"))
        params = event.get("queryStringParameters", event.get("query_string_parameters"))
        path, _, inline_query = (event.get("path") or "/").partition("?")
        identity = self._context().get("identity") or {}
        return HttpRequest(
            method=str(event.get("method") or "GET").upper(),
            path=path or "/",
            query_string=_encoded_query(_pairs(params)) if params else inline_query,
            headers=headers,
            body=self._body(),
            source_ip=_forwarded_for(headers) or identity.get("sourceIp"),
        )


def detect(event: Any) -> EventSource:
    """The source that sent ``event``; raises UnsupportedEvent naming the accepted shapes."""
    if isinstance(event, dict):
        context = event.get("requestContext") or {}
        if not isinstance(context, dict):
            context = {}
        if "elb" in context:
            return Alb(event)
        if event.get("version") == "2.0" and "rawPath" not in event and "method" in event:
            return LatticeV2(event)
        if event.get("version") == "2.0" and ("rawPath" in event or "http" in context):
            domain = str(context.get("domainName") or "")
            return FunctionUrl(event) if ".lambda-url." in domain else HttpApiV2(event)
        if "raw_path" in event and "method" in event:
            return LatticeV1(event)
        if "httpMethod" in event:
            return ApiGatewayV1(event)
        keys = ", ".join(sorted(map(str, event))[:12]) or "none"
        found = f"an object with the keys: {keys}"
    else:
        found = f"a {type(event).__name__}"
    raise UnsupportedEvent(f"lmi_gevent.http.wsgi_handler and asgi_handler serve HTTP requests "
                           f"from {ACCEPTED_SHAPES}; this event is {found}.")


# --- shared by the adapters (wsgi.py, asgi.py): what an event means and how answers go -------

# Media types sent as text; everything else, and anything with a Content-Encoding, is base64.
TEXT_TYPES = frozenset({
    "application/json", "application/javascript", "application/ecmascript", "application/xml",
    "application/x-www-form-urlencoded", "application/graphql", "application/x-ndjson",
    "image/svg+xml",
})
ERROR_BODY = b"Internal Server Error"


def default_binary_rule(content_type: str, content_encoding: str) -> bool:
    """True when a body with these headers must be sent base64-encoded.

    Text (``text/*``, JSON, XML, JavaScript, ``+json``/``+xml`` types, forms) goes as is unless
    it is compressed (any ``Content-Encoding`` but ``identity``).
    """
    if content_encoding and content_encoding.strip().lower() != "identity":
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    if not media:
        return False
    return not (media.startswith("text/") or media in TEXT_TYPES
                or media.endswith("+json") or media.endswith("+xml"))


def as_text(headers: Headers, body: bytes, binary: BinaryRule) -> str | None:
    """The body as text to send as is, or None when it must go base64-encoded."""
    content_type = content_encoding = ""
    for name, value in headers:
        size = len(name)  # compared first: lower() on every name costs more
        if size == 12 and name.lower() == "content-type":
            content_type = value
        elif size == 16 and name.lower() == "content-encoding":
            content_encoding = value
    if binary(content_type, content_encoding):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None  # never corrupt a body that is not text after all


def error_answer() -> HttpAnswer:
    """The 500 an adapter answers when the app failed before its answer began."""
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(ERROR_BODY)))]
    return HttpAnswer(500, "Internal Server Error", headers, ERROR_BODY, ERROR_BODY.decode())


def refused_answer(request_line: str, refused: ForbiddenHeader) -> HttpAnswer:
    """What replaces an answer carrying a header HTTP forbids, as a WSGI server refuses it:
    the log names the header (under the invocation's request id), the caller gets a 500."""
    log.error("The app's answer to %s was refused: %s; answering 500.", request_line, refused)
    return error_answer()


def answer_or_refuse(source: EventSource, answer: HttpAnswer, request_line: str) -> Any:
    """The source's answer to ``answer``, or its 500 when a header of it is forbidden."""
    with malformed(source, "answering", (TypeError, AttributeError, KeyError, IndexError)):
        try:
            return source.answer(answer)
        except ForbiddenHeader as refused:
            return source.answer(refused_answer(request_line, refused))


@contextlib.contextmanager
def malformed(source: EventSource, doing: str,
              faults: tuple[type[Exception], ...] = (TypeError, AttributeError, KeyError,
                                                     IndexError, ValueError)) -> Iterator[None]:
    """A field of the wrong type in an event of a known shape (a broken or hostile caller) is
    an UnsupportedEvent naming the source and the problem, not a TypeError of the adapter."""
    try:
        yield
    except UnsupportedEvent:
        raise
    except faults as problem:
        raise UnsupportedEvent(f"malformed {source.name} event ({doing} it failed with "
                               f"{type(problem).__name__}: {problem})") from None


def move_base_path(request: HttpRequest, base: str) -> None:
    """``/v1/items`` with base path ``/v1``: the script name (the ASGI root path) gains
    ``/v1``, the path is ``/items``. A path without it (the API's own ``execute-api`` URL) is
    left alone."""
    path = request.path
    if path == base or path.startswith(base + "/"):
        request.script_name += base
        request.path = path[len(base):] or "/"


def server_of(headers: Headers) -> tuple[str, str, str]:
    """(scheme, server name, server port) as the caller addressed the API: from
    ``X-Forwarded-Proto``, ``Host`` and ``X-Forwarded-Port``, https on 443 by default."""
    proto = host = forwarded_port = ""
    for name, value in headers:
        lowered = name.lower()
        if lowered == "host" and not host:
            host = value
        elif lowered == "x-forwarded-proto" and not proto:
            proto = value
        elif lowered == "x-forwarded-port" and not forwarded_port:
            forwarded_port = value
    scheme = _first(proto).lower() if proto else "https"
    server, port = host, ""
    if ":" in host:
        if host.startswith("["):  # an IPv6 literal
            end = host.find("]")
            server, port = host[:end + 1], host[end + 2:]
        else:
            server, _, port = host.rpartition(":")
    port = (_first(forwarded_port) if forwarded_port else port) or ("443" if scheme == "https" else "80")
    return scheme, server or "localhost", port


def _first(value: str) -> str:
    """The first of comma-joined values (a proxy chain appends its own)."""
    return value.partition(",")[0].strip()


def streamed(answer: HttpAnswer) -> StreamingResponse:
    """A whole answer (a 500, a refusal) sent on a streaming source as one chunk."""
    headers, cookies = prelude_headers(answer.headers)
    return http_stream(iter([answer.body]), answer.status, headers, cookies)


def prelude_headers(headers: Headers) -> tuple[dict[str, str], list[str]]:
    """A streamed answer's prelude: one value per name, the Set-Cookie values apart, and no
    length: a streamed body's length is the platform's business (it may chunk it)."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        if name.lower() == "set-cookie":
            cookies.append(value)
        elif name.lower() not in ("content-length", "transfer-encoding"):
            joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined, cookies
