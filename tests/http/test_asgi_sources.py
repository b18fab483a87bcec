"""lmi_gevent.http.asgi_handler against every Lambda HTTP event source: the facts
tests/http/test_wsgi_sources.py checks for the WSGI adapter, read from the ASGI scope
(query encoding, repeated headers and cookies, base64 both ways, stage prefixes, base paths,
forwarded headers, the client address), plus the ASGI parts: receive/send, lifespan state,
an app failure, streaming.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any
from urllib.parse import parse_qs

import pytest

from lmi_gevent.http import UnsupportedEvent, asgi_handler
from lmi_gevent.http.asgi import LifespanFailure
from lmi_gevent.invocation import coroutines
from tests.http import events


class App:
    """An ASGI app that records each scope and request body and answers what the test sets."""

    def __init__(self, status: int = 200, headers: list[tuple[str, str]] | None = None,
                 body: bytes | list[bytes] = b"ok") -> None:
        self.status = status
        self.headers = headers if headers is not None else [("Content-Type", "text/plain")]
        self.body = body
        self.scopes: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send):
        assert scope["type"] == "http"
        message = await receive()
        self.scopes.append(scope)
        self.bodies.append(message["body"])
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [(k.lower().encode(), v.encode()) for k, v in self.headers]})
        parts = [self.body] if isinstance(self.body, bytes) else self.body
        for index, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part,
                        "more_body": index < len(parts) - 1})

    @property
    def scope(self) -> dict[str, Any]:
        return self.scopes[-1]

    def header(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.scope["headers"] if key == name]


def serve(event: Any, app: Any = None, context: Any = None, **options: Any) -> tuple[Any, Any]:
    app = app or App()
    options.setdefault("lifespan", "off")
    return asyncio.run(asgi_handler(app, **options)(event, context or object())), app


# --- API Gateway REST (v1) ------------------------------------------------------------------

def test_v1_multi_value_query_values_are_re_encoded():
    _, app = serve(events.rest_v1("/search", multi_query={"q": ["a b", "c&d=e"], "tag": ["x"]},
                                  query={"q": "c&d=e", "tag": "x"}))
    assert parse_qs(app.scope["query_string"].decode()) == {"q": ["a b", "c&d=e"], "tag": ["x"]}


def test_v1_multi_value_headers_are_kept_apart_and_lowercased():
    _, app = serve(events.rest_v1("/", multi_headers={
        "Accept": ["text/html", "application/json"], "Cookie": ["a=1", "b=2"],
        "Host": ["api.example.com"]}, headers={"Accept": "application/json"}))
    assert app.header(b"accept") == [b"text/html", b"application/json"]
    assert app.header(b"cookie") == [b"a=1", b"b=2"]
    assert app.scope["server"] == ("api.example.com", 443)


def test_v1_base64_body_is_decoded():
    payload = bytes(range(256))
    _, app = serve(events.rest_v1("/upload", method="POST", body=payload, binary=True,
                                  headers={"Content-Type": "application/octet-stream"}))
    assert app.bodies[-1] == payload and app.scope["method"] == "POST"


def test_v1_stage_is_the_root_path_and_the_path_keeps_it_and_the_trailing_slash():
    _, app = serve(events.rest_v1("/items/", stage_path="/prod/items/",
                                  headers={"Host": "abc.execute-api.us-east-1.amazonaws.com"}))
    assert app.scope["root_path"] == "/prod"
    assert app.scope["path"] == "/prod/items/"  # as uvicorn sends it: root_path + route path
    assert app.scope["raw_path"] == b"/prod/items/"


def test_path_is_unquoted_and_raw_path_is_not():
    _, app = serve(events.http_v2("/caf%C3%A9/a%20b/"))
    assert app.scope["path"] == "/café/a b/"
    assert app.scope["raw_path"] == b"/caf%C3%A9/a%20b/"


def test_v1_answer_uses_multi_value_headers_and_keeps_every_set_cookie():
    app = App(headers=[("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                       ("Vary", "Accept"), ("Vary", "Cookie")])
    answer, _ = serve(events.rest_v1("/"), app)
    assert answer["multiValueHeaders"]["set-cookie"] == ["a=1", "b=2"]
    assert answer["multiValueHeaders"]["vary"] == ["Accept", "Cookie"]
    assert (answer["statusCode"], answer["body"], answer["isBase64Encoded"]) == (200, "ok", False)


def test_client_scheme_and_server_come_from_the_source_and_forwarded_headers():
    _, app = serve(events.rest_v1("/", headers={"Host": "api.example.com",
                                                "X-Forwarded-Proto": "http",
                                                "X-Forwarded-Port": "8080",
                                                "X-Forwarded-For": "192.0.2.1, 10.0.0.1"}))
    scope = app.scope
    assert scope["client"] == ("198.51.100.7", 0)  # requestContext.identity.sourceIp wins
    assert (scope["scheme"], scope["server"]) == ("http", ("api.example.com", 8080))


def test_event_and_context_are_in_the_scope_under_both_names():
    event, context = events.rest_v1("/"), object()
    _, app = serve(event, context=context)
    assert app.scope["aws.event"] is event and app.scope["aws.context"] is context
    assert app.scope["lambda.event"] is event and app.scope["lambda.context"] is context
    assert app.scope["lambda.source"] == "API Gateway REST (v1)"


def test_v1_authorizer_principal_is_in_the_scope():
    event = events.rest_v1("/")
    event["requestContext"]["authorizer"] = {"principalId": "user-7"}
    _, app = serve(event)
    assert app.scope["lambda.remote_user"] == "user-7"


# --- HTTP API and Function URLs (v2) ----------------------------------------------------------

def test_v2_raw_query_string_and_cookies():
    _, app = serve(events.http_v2("/p", raw_query="a=1&a=2&b=%20", cookies=["x=1", "y=2"],
                                  headers={"cookie": "z=3"}))
    assert app.scope["query_string"] == b"a=1&a=2&b=%20"
    assert b"; ".join(app.header(b"cookie")) == b"z=3; x=1; y=2"


def test_v2_answer_puts_every_set_cookie_in_cookies_and_joins_other_repeats():
    app = App(headers=[("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                       ("Vary", "Accept"), ("Vary", "Cookie")])
    answer, _ = serve(events.http_v2("/"), app)
    assert answer["cookies"] == ["a=1", "b=2"]
    assert answer["headers"]["vary"] == "Accept, Cookie"


def test_v2_named_stage_is_the_root_path():
    _, app = serve(events.http_v2("/beta/items", stage="beta"))
    assert (app.scope["root_path"], app.scope["path"]) == ("/beta", "/beta/items")


def test_function_url_source_ip_method_and_base64_body():
    event = events.function_url("/echo", method="POST", body=b"\xff\x00", binary=True)
    _, app = serve(event)
    assert app.scope["lambda.source"] == "Function URL"
    assert app.scope["client"] == ("203.0.113.9", 0) and app.scope["method"] == "POST"
    assert app.bodies[-1] == b"\xff\x00"


@pytest.mark.parametrize("content_type, encoded", [("image/png", True), ("application/json", False),
                                                   ("text/html; charset=utf-8", False)])
def test_bodies_out_are_base64_by_the_shared_binary_rule(content_type, encoded):
    body = b"\x89PNG\r\n" if encoded else b'{"a": 1}'
    answer, _ = serve(events.http_v2("/"), App(headers=[("content-type", content_type)], body=body))
    assert answer["isBase64Encoded"] is encoded
    assert (base64.b64decode(answer["body"]) if encoded else answer["body"].encode()) == body


def test_a_body_in_several_messages_is_joined():
    answer, _ = serve(events.http_v2("/"), App(body=[b"a", b"", b"bc"]))
    assert answer["body"] == "abc"


# --- ALB and VPC Lattice ------------------------------------------------------------------------

def test_alb_query_values_arrive_encoded_and_are_not_encoded_twice():
    _, app = serve(events.alb("/", query={"q": "a%20b", "next": "%2Fhome"}))
    assert parse_qs(app.scope["query_string"].decode()) == {"q": ["a b"], "next": ["/home"]}


def test_alb_multi_value_answer_mirrors_the_request():
    app = App(headers=[("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    answer, _ = serve(events.alb("/", multi=True, multi_headers={"cookie": ["x=1", "y=2"]}), app)
    assert app.header(b"cookie") == [b"x=1", b"y=2"]
    assert answer["multiValueHeaders"]["set-cookie"] == ["a=1", "b=2"]
    assert answer["statusDescription"] == "200 OK"


def test_alb_single_value_answer_keeps_every_set_cookie_and_client_is_forwarded_for():
    app = App(status=302, headers=[("Location", "/x"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    answer, app = serve(events.alb("/", headers={"x-forwarded-for": "192.0.2.10, 10.0.0.2"}), app)
    cookies = sorted(v for k, v in answer["headers"].items() if k.lower() == "set-cookie")
    assert cookies == ["a=1", "b=2"] and answer["statusDescription"] == "302 Found"
    assert app.scope["client"] == ("192.0.2.10", 0)


def test_lattice_v1_and_v2():
    event = events.lattice_v1("/orders/", method="POST", body=b'{"n": 1}', binary=True,
                              headers={"x-forwarded-for": "10.1.2.3"}, query={"order-id": "1 2"})
    answer, app = serve(event)
    assert (app.scope["lambda.source"], app.scope["path"]) == ("VPC Lattice v1", "/orders/")
    assert parse_qs(app.scope["query_string"].decode()) == {"order-id": ["1 2"]}
    assert app.bodies[-1] == b'{"n": 1}' and answer["statusCode"] == 200
    event = events.lattice_v2("/new", headers={"accept": ["text/html", "*/*"]}, query={"id": ["1", "2"]})
    _, app = serve(event)
    assert app.header(b"accept") == [b"text/html", b"*/*"]
    assert parse_qs(app.scope["query_string"].decode()) == {"id": ["1", "2"]}


# --- base path, bad input, failures ------------------------------------------------------------

def test_a_base_path_mapping_becomes_the_root_path():
    _, app = serve(events.rest_v1("/v1/items", headers={"Host": "api.example.com"}), base_path="/v1")
    assert (app.scope["root_path"], app.scope["path"]) == ("/v1", "/v1/items")


@pytest.mark.parametrize("value", ["/v1?x=1", "/a//b"])
def test_a_bad_base_path_names_the_argument(value):
    with pytest.raises(Exception, match=r"asgi_handler\(base_path=\.\.\.\)"):
        asgi_handler(App(), base_path=value)


def test_a_bad_lifespan_mode_names_the_argument():
    with pytest.raises(ValueError, match=r"asgi_handler\(lifespan='sometimes'\)"):
        asgi_handler(App(), lifespan="sometimes")


@pytest.mark.parametrize("event", [{"hello": "world"}, [1, 2], "text"])
def test_any_other_event_is_an_error_naming_the_accepted_shapes(event):
    with pytest.raises(UnsupportedEvent, match="asgi_handler serve HTTP requests from API Gateway"):
        serve(event)


def test_an_app_exception_is_a_500_and_is_logged(caplog):
    async def app(scope, receive, send):
        raise RuntimeError("the app broke")

    with caplog.at_level(logging.ERROR, logger="lmi_gevent.http"):
        answer, _ = serve(events.http_v2("/x"), app)
    assert answer["statusCode"] == 500 and answer["body"] == "Internal Server Error"
    assert "the app broke" in caplog.text and "GET /x" in caplog.text


def test_an_app_that_never_starts_its_answer_is_a_500(caplog):
    async def app(scope, receive, send):
        await receive()

    answer, _ = serve(events.http_v2("/"), app)
    assert answer["statusCode"] == 500


def test_receive_after_the_body_waits_for_the_answer_to_end_then_says_disconnect():
    seen: list[str] = []

    async def app(scope, receive, send):
        await receive()
        listener = asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        seen.append("pending" if not listener.done() else "done")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        seen.append((await listener)["type"])

    answer, _ = serve(events.http_v2("/"), app)
    assert answer["statusCode"] == 204 and seen == ["pending", "http.disconnect"]


# --- lifespan ------------------------------------------------------------------------------------

def lifespan_app(calls: list[str], fail: str | None = None):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].split(".")[1]
                calls.append(kind)
                if kind == fail:
                    await send({"type": f"lifespan.{kind}.failed", "message": f"{kind} refused"})
                    return
                if kind == "startup":
                    scope["state"]["made"] = "at startup"
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        await receive()
        calls.append(f"request sees {scope['state'].get('made')}")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


def test_lifespan_state_reaches_requests_and_shutdown_follows():
    calls: list[str] = []
    handler = asgi_handler(lifespan_app(calls))
    loop = coroutines.SequentialLoop()
    try:
        loop.run(handler.lifespan.startup())
        answer = loop.run(handler(events.http_v2("/"), object()))
        loop.run(handler.lifespan.shutdown())
    finally:
        loop.close()
    assert answer["statusCode"] == 200
    assert calls == ["startup", "request sees at startup", "shutdown"]


def test_a_failed_startup_raises_with_the_apps_message():
    handler = asgi_handler(lifespan_app([], fail="startup"))
    with pytest.raises(LifespanFailure, match="startup refused"):
        asyncio.run(handler.lifespan.startup())


def test_an_app_without_lifespan_is_served_in_auto_mode_and_refused_in_on_mode():
    app = App()  # asserts scope["type"] == "http": the lifespan scope makes it raise
    asyncio.run(asgi_handler(app).lifespan.startup())
    with pytest.raises(LifespanFailure, match="ended without answering lifespan.startup"):
        asyncio.run(asgi_handler(app, lifespan="on").lifespan.startup())
    assert asgi_handler(app, lifespan="off").lifespan is None


# --- streaming -------------------------------------------------------------------------------------

def stream(event: Any, app: Any) -> tuple[dict[str, Any], list[bytes]]:
    """Run the handler on a process loop and read the streamed answer as the invoker does."""
    from lmi_gevent.streaming import PRELUDE_SEPARATOR, StreamBody
    import json

    loop = coroutines.SequentialLoop()
    try:
        response = loop.run(asgi_handler(app, streaming=True, lifespan="off")(event, object()))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(coroutines, "process_loop", lambda: loop)
            body = StreamBody(response)
            chunks = list(body)
            body.close()
    finally:
        loop.close()
    prelude, _, first = chunks[0].partition(PRELUDE_SEPARATOR)
    return json.loads(prelude), ([first] if first else []) + chunks[1:]


def test_a_stream_sends_each_body_message_as_a_chunk_after_the_prelude():
    app = App(headers=[("content-type", "text/event-stream"), ("set-cookie", "s=1"),
                       ("content-length", "9")], body=[b"one", b"two", b"", b"three"])
    prelude, chunks = stream(events.function_url("/"), app)
    assert prelude == {"statusCode": 200, "headers": {"content-type": "text/event-stream"},
                       "cookies": ["s=1"]}
    assert chunks == [b"one", b"two", b"three"]


def test_a_stream_whose_app_fails_before_its_answer_is_a_500():
    async def app(scope, receive, send):
        raise RuntimeError("no")

    prelude, chunks = stream(events.function_url("/"), app)
    assert prelude["statusCode"] == 500 and chunks == [b"Internal Server Error"]


def test_a_stream_whose_app_fails_midway_ends_with_the_error():
    from lmi_gevent.streaming import StreamBody

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("midway")

    loop = coroutines.SequentialLoop()
    try:
        response = loop.run(asgi_handler(app, streaming=True, lifespan="off")(
            events.function_url("/"), object()))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(coroutines, "process_loop", lambda: loop)
            body = StreamBody(response)
            chunks = list(body)
    finally:
        loop.close()
    assert chunks[-1] == b"part" and isinstance(body.failure, RuntimeError)


def test_alb_is_answered_buffered_even_when_streaming():
    answer = asyncio.run(asgi_handler(App(body=[b"a", b"b"]), streaming=True, lifespan="off")(
        events.alb("/"), object()))
    assert answer["body"] == "ab" and answer["statusCode"] == 200
