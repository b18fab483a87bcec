"""What the adapters refuse: header names that are not tokens and values with CR, LF, NUL or
another control character become a 500 logged under the request id, for every event source,
buffered and streamed, through wsgi_handler and asgi_handler alike; plain handlers'
http_stream() refuses them too. A Hypothesis property
feeds arbitrary names and values and checks no answer ever carries a forbidden byte."""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmi_gevent.http import asgi_handler, wsgi_handler
from lmi_gevent.http.headers import ForbiddenHeader, check_field
from lmi_gevent.streaming import PRELUDE_SEPARATOR, StreamingResponse, http_stream
from lmi_gevent.invocation import coroutines
from tests.http import events

SOURCES: dict[str, Callable[[], dict[str, Any]]] = {
    "rest_v1": lambda: events.rest_v1("/redirect"),
    "http_v2": lambda: events.http_v2("/redirect"),
    "function_url": lambda: events.function_url("/redirect"),
    "alb": lambda: events.alb("/redirect"),
    "alb_multi": lambda: events.alb("/redirect", multi=True, multi_headers={"host": ["a"]}),
    "lattice_v1": lambda: events.lattice_v1("/redirect"),
    "lattice_v2": lambda: events.lattice_v2("/redirect"),
}
STREAMING_SOURCES = ("rest_v1", "http_v2", "function_url")

HOSTILE = [
    ("Location", "/x\r\nSet-Cookie: evil=1"),  # the response splitting of issue 19
    ("Location", "/x\nSet-Cookie: evil=1"),
    ("Location", "/x\rSet-Cookie: evil=1"),
    ("X-Null", "a\x00b"),
    ("X-Bell", "a\x07b"),
    ("X-Del", "a\x7fb"),
    ("Set-Cookie", "a=1\r\nSet-Cookie: evil=1"),
    ("X-Bad Name", "1"),
    ("X-Bad:Name", "1"),
    ("X-Bad\r\nName", "1"),
    ("", "empty name"),
    ("X-Tab\tName", "1"),
]
# What HTTP forbids anywhere in an answer's header fields.
FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


def echoing_app(name: str, value: str, status: str = "302 Found"):
    def app(environ, start_response):
        start_response(status, [("Content-Type", "text/plain"), (name, value)])
        return [b"moved"]
    return app


def _fields(answer: dict[str, Any]) -> list[tuple[str, str]]:
    """Every header name and value of a buffered answer, whatever its source's shape."""
    found = [(name, value) for name, value in (answer.get("headers") or {}).items()]
    found += [(name, value) for name, values in (answer.get("multiValueHeaders") or {}).items()
              for value in values]
    found += [("Set-Cookie", cookie) for cookie in answer.get("cookies") or ()]
    return found


def _prelude(response: StreamingResponse) -> tuple[dict[str, Any], bytes]:
    chunks = list(response.chunks)
    first = chunks[0]
    assert first.endswith(PRELUDE_SEPARATOR)
    return json.loads(first[:-8]), b"".join(chunks[1:])


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name,value", HOSTILE, ids=[repr(pair)[:40] for pair in HOSTILE])
def test_a_buffered_answer_with_a_forbidden_header_becomes_a_500(source, name, value, caplog):
    with caplog.at_level(logging.ERROR, logger="lmi_gevent.http"):
        answer = wsgi_handler(echoing_app(name, value))(SOURCES[source](), None)
    assert answer["statusCode"] == 500 and answer["body"] == "Internal Server Error"
    assert all(field_value != value for _, field_value in _fields(answer))
    assert not any(FORBIDDEN.search(n + v) for n, v in _fields(answer))
    logged = [record.getMessage() for record in caplog.records]
    assert any("was refused" in line and "GET /redirect" in line and repr(name)[1:-1][:5] in line
               for line in logged), logged


@pytest.mark.parametrize("source", STREAMING_SOURCES)
@pytest.mark.parametrize("name,value", HOSTILE[:8], ids=[repr(pair)[:40] for pair in HOSTILE[:8]])
def test_a_streamed_answer_with_a_forbidden_header_sends_none_of_the_app_bytes(source, name, value,
                                                                               caplog):
    produced = []

    def app(environ, start_response):
        start_response("302 Found", [(name, value)])

        def body():
            produced.append("first")
            yield b"secret-first-chunk"
            produced.append("second")
            yield b"more"
        return body()

    with caplog.at_level(logging.ERROR, logger="lmi_gevent.http"):
        response = wsgi_handler(app, streaming=True)(SOURCES[source](), None)
    prelude, body = _prelude(response)
    assert prelude["statusCode"] == 500 and body == b"Internal Server Error"
    assert b"secret" not in body and produced == ["first"]  # pulled for the prelude, never sent
    assert any("was refused" in record.getMessage() for record in caplog.records)


def test_a_status_reason_with_crlf_is_refused_where_the_source_sends_the_reason():
    app = echoing_app("X-Fine", "1", status="200 OK\r\nSet-Cookie: evil=1")
    for source in ("alb", "lattice_v1", "lattice_v2"):
        answer = wsgi_handler(app)(SOURCES[source](), None)
        assert answer["statusCode"] == 500, source
        assert "evil" not in json.dumps(answer)


@pytest.mark.parametrize("status", ["2000 OK", " 200 OK", "2_0 OK", "abc", "099 Low"])
def test_a_status_without_a_three_digit_code_is_a_500(status):
    answer = wsgi_handler(echoing_app("X-Fine", "1", status=status))(SOURCES["http_v2"](), None)
    assert answer["statusCode"] == 500


def test_clean_headers_pass_unchanged_including_text_beyond_ascii():
    answer = wsgi_handler(echoing_app("X-Name", "caf\u00e9 \t tab"))(SOURCES["http_v2"](), None)
    assert answer["statusCode"] == 302 and answer["headers"]["X-Name"] == "caf\u00e9 \t tab"


def test_a_non_str_header_value_is_refused_naming_the_header():
    answer = wsgi_handler(echoing_app("X-Count", 3))(SOURCES["rest_v1"](), None)  # type: ignore[arg-type]
    assert answer["statusCode"] == 500
    with pytest.raises(ForbiddenHeader, match="X-Count has a int value"):
        check_field("X-Count", 3)


@pytest.mark.parametrize("headers,cookies,named", [
    ({"Location": "/x\r\nSet-Cookie: evil=1"}, (), "Location"),
    ({"Bad Name": "1"}, (), "'Bad Name'"),
    ({}, ["a=1\r\nX: y"], "Set-Cookie"),
])
def test_http_stream_of_a_plain_handler_refuses_forbidden_headers(headers, cookies, named):
    with pytest.raises(ForbiddenHeader, match=re.escape(named)):
        http_stream(iter([b"x"]), 200, headers, cookies)


def test_http_stream_keeps_non_str_values_it_always_accepted():
    prelude, _ = _prelude(http_stream(iter([b"x"]), 200, {"X-Count": 3}))  # type: ignore[dict-item]
    assert prelude["headers"] == {"X-Count": 3}


# --- the property --------------------------------------------------------------------------

names = st.one_of(st.text(max_size=12), st.from_regex(TOKEN, fullmatch=True).filter(lambda n: len(n) < 20))
values = st.text(alphabet=st.characters(max_codepoint=0x2FF), max_size=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(sorted(SOURCES)), name=names, value=values, streaming=st.booleans())
def test_no_answer_ever_carries_a_forbidden_byte(source, name, value, streaming):
    handler = wsgi_handler(echoing_app(name, value), streaming=streaming)
    answer = handler(SOURCES[source](), None)
    if isinstance(answer, StreamingResponse):
        prelude, _ = _prelude(answer)
        fields = _fields(prelude)
        status = prelude["statusCode"]
    else:
        fields = _fields(answer)
        status = answer["statusCode"]
    for field_name, field_value in fields:
        assert TOKEN.match(field_name), field_name
        assert not FORBIDDEN.search(field_value), field_value
    allowed = bool(TOKEN.match(name)) and not FORBIDDEN.search(value)
    # A clean field is never refused, and reaches the answer under its name.
    assert status == (302 if allowed else 500)
    if allowed and name.lower() not in ("content-type", "content-length", "transfer-encoding"):
        assert any(field_name == name or field_name.lower() == name.lower() for field_name, _ in fields)


# --- the ASGI adapter: the same refusal through the same answer writers -----------------------

def echoing_asgi_app(name: str, value: str, produced: list[str] | None = None):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 302,
                    "headers": [(name.encode("latin-1"), value.encode("latin-1"))]})
        if produced is not None:
            produced.append("first")
        await send({"type": "http.response.body", "body": b"secret-first-chunk",
                    "more_body": True})
        await send({"type": "http.response.body", "body": b"more"})
    return app


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name,value", HOSTILE[:8], ids=[repr(pair)[:40] for pair in HOSTILE[:8]])
def test_an_asgi_buffered_answer_with_a_forbidden_header_becomes_a_500(source, name, value,
                                                                        caplog):
    handler = asgi_handler(echoing_asgi_app(name, value), lifespan="off")
    with caplog.at_level(logging.ERROR, logger="lmi_gevent.http"):
        answer = coroutines.SequentialLoop().run(handler(SOURCES[source](), object()))
    assert answer["statusCode"] == 500 and answer["body"] == "Internal Server Error"
    assert not any(FORBIDDEN.search(n + v) for n, v in _fields(answer))
    assert any("was refused" in record.getMessage() and "GET /redirect" in record.getMessage()
               for record in caplog.records)


@pytest.mark.parametrize("source", STREAMING_SOURCES)
@pytest.mark.parametrize("name,value", HOSTILE[:3], ids=[repr(pair)[:40] for pair in HOSTILE[:3]])
def test_an_asgi_streamed_answer_with_a_forbidden_header_sends_none_of_the_app_bytes(
        source, name, value, caplog):
    handler = asgi_handler(echoing_asgi_app(name, value), streaming=True, lifespan="off")
    with caplog.at_level(logging.ERROR, logger="lmi_gevent.http"):
        response = coroutines.SequentialLoop().run(handler(SOURCES[source](), object()))
    prelude, body = _prelude(response)
    assert prelude["statusCode"] == 500 and body == b"Internal Server Error"
    assert not any(FORBIDDEN.search(n + str(v)) for n, v in prelude["headers"].items())
    assert any("was refused" in record.getMessage() for record in caplog.records)
