"""lmi_gevent.http.wsgi_handler against every Lambda HTTP event source, buffered.

The facts checked here are the ones apig-wsgi's, serverless-wsgi's and Mangum's own suites
check per source (query encoding, repeated headers and cookies, base64 in both directions,
stage prefixes, forwarded headers, null fields), plus VPC Lattice v1/v2, which none of them
serve, and the cases their trackers report them getting wrong (a lost trailing slash, ALB query
values encoded twice, a lost Set-Cookie).
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from typing import Any
from urllib.parse import parse_qs

import pytest

from lmi_gevent.http import UnsupportedEvent, wsgi_handler
from tests.http import events


class App:
    """A WSGI app that records each environ and answers what the test sets."""

    def __init__(self, status: str = "200 OK", headers: list[tuple[str, str]] | None = None,
                 body: bytes | list[bytes] = b"ok") -> None:
        self.status = status
        self.headers = headers if headers is not None else [("Content-Type", "text/plain")]
        self.body = body
        self.environs: list[dict[str, Any]] = []
        self.closed = 0

    def __call__(self, environ, start_response):
        environ["test.input"] = environ["wsgi.input"].read()
        self.environs.append(environ)
        start_response(self.status, self.headers)
        return _Closing(self, [self.body] if isinstance(self.body, bytes) else self.body)

    @property
    def environ(self) -> dict[str, Any]:
        return self.environs[-1]


class _Closing(list):
    def __init__(self, app: App, items: list[bytes]) -> None:
        super().__init__(items)
        self.app = app

    def close(self) -> None:
        self.app.closed += 1


def serve(event: dict[str, Any], app: App | None = None, **options: Any) -> tuple[dict[str, Any], App]:
    app = app or App()
    return wsgi_handler(app, **options)(event, object()), app


# --- API Gateway REST (v1) ------------------------------------------------------------------

def test_v1_multi_value_query_values_are_re_encoded():
    _, app = serve(events.rest_v1("/search", multi_query={"q": ["a b", "c&d=e"], "tag": ["x"]},
                                  query={"q": "c&d=e", "tag": "x"}))
    assert parse_qs(app.environ["QUERY_STRING"]) == {"q": ["a b", "c&d=e"], "tag": ["x"]}


def test_v1_single_value_query_without_multi_value_fields():
    _, app = serve(events.rest_v1("/search", query={"q": "100% sure", "empty": ""}))
    assert parse_qs(app.environ["QUERY_STRING"], keep_blank_values=True) == {
        "q": ["100% sure"], "empty": [""]}


def test_v1_multi_value_headers_are_joined_and_cookies_joined_with_semicolons():
    _, app = serve(events.rest_v1("/", multi_headers={
        "Accept": ["text/html", "application/json"], "Cookie": ["a=1", "b=2"],
        "Host": ["api.example.com"]}, headers={"Accept": "application/json"}))
    assert app.environ["HTTP_ACCEPT"] == "text/html, application/json"
    assert app.environ["HTTP_COOKIE"] == "a=1; b=2"


def test_v1_headers_only_event_is_served():
    _, app = serve(events.rest_v1("/", headers={"Content-Type": "application/json", "X-Trace": "t1"}))
    assert app.environ["CONTENT_TYPE"] == "application/json"
    assert app.environ["HTTP_X_TRACE"] == "t1"


def test_null_headers_query_and_request_context_are_tolerated():
    event = events.rest_v1("/", headers=None, multi_headers=None)
    event["requestContext"] = None
    answer, app = serve(event)
    assert answer["statusCode"] == 200
    assert app.environ["QUERY_STRING"] == "" and "REMOTE_ADDR" not in app.environ
    v2 = events.http_v2("/")
    v2["headers"] = None
    v2["requestContext"] = None
    answer, app = serve(v2)
    assert answer["statusCode"] == 200 and app.environ["REQUEST_METHOD"] == "GET"


def test_v1_base64_body_is_decoded_and_content_length_is_its_length():
    payload = bytes(range(256))
    _, app = serve(events.rest_v1("/upload", method="POST", body=payload, binary=True,
                                  headers={"Content-Type": "application/octet-stream",
                                           "Content-Length": "999"}))
    assert app.environ["test.input"] == payload
    assert app.environ["CONTENT_LENGTH"] == "256"
    assert app.environ["REQUEST_METHOD"] == "POST"


def test_v1_text_body_is_utf8():
    _, app = serve(events.rest_v1("/", method="PUT", body='{"name": "Jürgen"}'))
    assert app.environ["test.input"] == '{"name": "Jürgen"}'.encode()
    assert app.environ["CONTENT_LENGTH"] == str(len('{"name": "Jürgen"}'.encode()))


def test_v1_stage_goes_to_script_name_and_path_info_keeps_the_trailing_slash():
    _, app = serve(events.rest_v1("/items/", stage_path="/prod/items/",
                                  headers={"Host": "abc.execute-api.us-east-1.amazonaws.com"}))
    assert app.environ["SCRIPT_NAME"] == "/prod"
    assert app.environ["PATH_INFO"] == "/items/"


def test_v1_custom_domain_without_base_path_has_empty_script_name():
    _, app = serve(events.rest_v1("/items", headers={"Host": "api.example.com"}))
    assert app.environ["SCRIPT_NAME"] == ""


def test_path_info_is_unquoted_as_latin1_bytes():
    _, app = serve(events.http_v2("/caf%C3%A9/a%20b/"))
    assert app.environ["PATH_INFO"] == "/café/a b/".encode().decode("latin-1")


def test_v1_answer_uses_multi_value_headers_and_keeps_every_set_cookie():
    app = App(headers=[("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                       ("Vary", "Accept"), ("Vary", "Cookie")])
    answer, _ = serve(events.rest_v1("/"), app)
    assert answer["multiValueHeaders"]["Set-Cookie"] == ["a=1", "b=2"]
    assert answer["multiValueHeaders"]["Vary"] == ["Accept", "Cookie"]
    assert "headers" not in answer
    assert answer == {**answer, "statusCode": 200, "body": "ok", "isBase64Encoded": False}


def test_remote_addr_scheme_host_and_port_come_from_the_source_and_forwarded_headers():
    _, app = serve(events.rest_v1("/", headers={"Host": "api.example.com",
                                                "X-Forwarded-Proto": "http",
                                                "X-Forwarded-Port": "8080",
                                                "X-Forwarded-For": "192.0.2.1, 10.0.0.1"}))
    environ = app.environ
    assert environ["REMOTE_ADDR"] == "198.51.100.7"  # requestContext.identity.sourceIp wins
    assert (environ["wsgi.url_scheme"], environ["SERVER_NAME"], environ["SERVER_PORT"]) == (
        "http", "api.example.com", "8080")
    _, app = serve(events.rest_v1("/", headers={"Host": "api.example.com"}))
    assert (app.environ["wsgi.url_scheme"], app.environ["SERVER_PORT"]) == ("https", "443")


def test_event_and_context_are_reachable_from_the_environ():
    event = events.rest_v1("/")
    context = object()
    app = App()
    wsgi_handler(app)(event, context)
    assert app.environ["lambda.event"] is event and app.environ["lambda.context"] is context
    assert app.environ["serverless.event"] is event  # serverless-wsgi's names, for migrations
    assert app.environ["lambda.source"] == "API Gateway REST (v1)"
    assert app.environ["wsgi.version"] == (1, 0) and app.environ["wsgi.input_terminated"]


# --- HTTP API (v2) and Function URLs ----------------------------------------------------------

def test_v2_raw_query_string_is_passed_verbatim():
    _, app = serve(events.http_v2("/", raw_query="a=%2F%26&b=x+y&flag&a=2"))
    assert app.environ["QUERY_STRING"] == "a=%2F%26&b=x+y&flag&a=2"


def test_v2_cookies_become_the_cookie_header():
    _, app = serve(events.http_v2("/", cookies=["session=abc", "theme=dark"]))
    assert app.environ["HTTP_COOKIE"] == "session=abc; theme=dark"


def test_v2_answer_puts_every_set_cookie_in_cookies_and_joins_other_repeats():
    app = App(headers=[("Content-Type", "text/html"), ("Set-Cookie", "a=1; Path=/"),
                       ("Set-Cookie", "b=2; HttpOnly"), ("Cache-Control", "no-cache"),
                       ("Cache-Control", "no-store")])
    answer, _ = serve(events.http_v2("/"), app)
    assert answer["cookies"] == ["a=1; Path=/", "b=2; HttpOnly"]
    assert answer["headers"] == {"Content-Type": "text/html", "Cache-Control": "no-cache, no-store"}


def test_v2_trailing_slash_comes_from_raw_path_not_http_path():
    # requestContext.http.path drops the trailing slash (a known serverless-wsgi bug source).
    _, app = serve(events.http_v2("/admin/"))
    assert app.environ["PATH_INFO"] == "/admin/"


def test_v2_named_stage_goes_to_script_name():
    _, app = serve(events.http_v2("/dev/items/3", stage="dev"))
    assert (app.environ["SCRIPT_NAME"], app.environ["PATH_INFO"]) == ("/dev", "/items/3")
    _, app = serve(events.http_v2("/devices", stage="dev"))  # only a whole segment is a stage
    assert (app.environ["SCRIPT_NAME"], app.environ["PATH_INFO"]) == ("", "/devices")


def test_v2_source_ip_and_method():
    _, app = serve(events.http_v2("/", method="DELETE"))
    assert (app.environ["REQUEST_METHOD"], app.environ["REMOTE_ADDR"]) == ("DELETE", "203.0.113.9")


def test_function_url_is_told_apart_by_its_domain():
    _, app = serve(events.function_url("/"))
    assert app.environ["lambda.source"] == "Function URL"
    assert app.environ["SERVER_NAME"] == "a1b2c3d4e5.lambda-url.us-east-1.on.aws"


def test_v2_base64_request_body():
    _, app = serve(events.function_url("/", method="POST", body=b"\x89PNG\r\n", binary=True))
    assert app.environ["test.input"] == b"\x89PNG\r\n"


# --- ALB ----------------------------------------------------------------------------------------

def test_alb_query_values_arrive_encoded_and_are_not_encoded_twice():
    _, app = serve(events.alb("/", query={"q": "a%20b", "next": "%2Fhome"}))
    assert parse_qs(app.environ["QUERY_STRING"]) == {"q": ["a b"], "next": ["/home"]}
    _, app = serve(events.alb("/", multi=True, multi_query={"q": ["a%20b", "c%26d"]}))
    assert parse_qs(app.environ["QUERY_STRING"]) == {"q": ["a b", "c&d"]}


def test_alb_multi_value_answer_mirrors_the_request():
    app = App(headers=[("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    answer, _ = serve(events.alb("/", multi=True, multi_headers={"cookie": ["x=1", "y=2"]}), app)
    assert app.environ["HTTP_COOKIE"] == "x=1; y=2"
    assert answer["multiValueHeaders"]["Set-Cookie"] == ["a=1", "b=2"]
    assert "headers" not in answer
    assert answer["statusDescription"] == "200 OK"


def test_alb_single_value_answer_keeps_every_set_cookie():
    app = App(status="302 Found", headers=[("Location", "/x"), ("Set-Cookie", "a=1"),
                                           ("Set-Cookie", "b=2"), ("Set-Cookie", "c=3")])
    answer, _ = serve(events.alb("/"), app)
    cookies = sorted(value for name, value in answer["headers"].items() if name.lower() == "set-cookie")
    assert cookies == ["a=1", "b=2", "c=3"]
    assert "multiValueHeaders" not in answer
    assert answer["statusCode"] == 302 and answer["statusDescription"] == "302 Found"


def test_alb_remote_addr_is_the_first_forwarded_for():
    _, app = serve(events.alb("/", headers={"x-forwarded-for": "192.0.2.10, 10.0.0.2",
                                            "x-forwarded-proto": "https", "host": "lb.example.com"}))
    assert app.environ["REMOTE_ADDR"] == "192.0.2.10"


def test_alb_base64_body():
    _, app = serve(events.alb("/", method="POST", body=b"\x00\x01", binary=True))
    assert app.environ["test.input"] == b"\x00\x01"


# --- VPC Lattice -------------------------------------------------------------------------------

def test_lattice_v1_request_and_answer():
    event = events.lattice_v1("/orders/", method="POST", body=b'{"n": 1}', binary=True,
                              headers={"x-forwarded-for": "10.1.2.3", "header2": "value1,value2",
                                       "host": "svc.vpc-lattice-svcs.us-east-2.on.aws"},
                              query={"order-id": "1 2"})
    app = App(headers=[("Content-Type", "application/json"), ("Set-Cookie", "a=1"),
                       ("Set-Cookie", "b=2")], body=b'{"ok": true}')
    answer, _ = serve(event, app)
    environ = app.environ
    assert environ["lambda.source"] == "VPC Lattice v1"
    assert (environ["REQUEST_METHOD"], environ["PATH_INFO"]) == ("POST", "/orders/")
    assert parse_qs(environ["QUERY_STRING"]) == {"order-id": ["1 2"]}
    assert environ["test.input"] == b'{"n": 1}' and environ["REMOTE_ADDR"] == "10.1.2.3"
    assert environ["HTTP_HEADER2"] == "value1,value2"
    assert answer["statusCode"] == 200 and answer["body"] == '{"ok": true}'
    assert sorted(v for k, v in answer["headers"].items() if k.lower() == "set-cookie") == ["a=1", "b=2"]


def test_lattice_v2_lists_of_values():
    event = events.lattice_v2("/newpath", headers={"accept": ["text/html", "*/*"],
                                                   "x-forwarded-for": ["10.9.8.7"]},
                              query={"id": ["1", "2"], "q": ["a&b"]})
    answer, app = serve(event)
    environ = app.environ
    assert environ["lambda.source"] == "VPC Lattice v2"
    assert environ["HTTP_ACCEPT"] == "text/html, */*"
    assert parse_qs(environ["QUERY_STRING"]) == {"id": ["1", "2"], "q": ["a&b"]}
    assert environ["REMOTE_ADDR"] == "10.9.8.7"
    assert answer["statusDescription"] == "200 OK" and answer["isBase64Encoded"] is False


# --- bodies out: base64 rules -----------------------------------------------------------------

@pytest.mark.parametrize("content_type, encoding, binary", [
    ("text/html; charset=utf-8", None, False),
    ("application/json", None, False),
    ("application/vnd.api+json", None, False),
    ("image/svg+xml", None, False),
    ("image/png", None, True),
    ("application/octet-stream", None, True),
    ("text/html", "gzip", True),
    ("application/json", "identity", False),
])
def test_binary_bodies_are_base64_by_content_type_and_encoding(content_type, encoding, binary):
    headers = [("Content-Type", content_type)] + ([("Content-Encoding", encoding)] if encoding else [])
    body = b"\x1f\x8b\x08binary" if binary else b"<p>text</p>"
    for event in (events.rest_v1("/"), events.http_v2("/"), events.alb("/"), events.lattice_v2("/")):
        answer, _ = serve(event, App(headers=headers, body=body))
        assert answer["isBase64Encoded"] is binary
        sent = base64.b64decode(answer["body"]) if binary else answer["body"].encode()
        assert sent == body


def test_a_text_type_whose_body_is_not_utf8_is_still_sent_base64():
    answer, _ = serve(events.http_v2("/"), App(headers=[("Content-Type", "text/plain")], body=b"\xff\xfe"))
    assert answer["isBase64Encoded"] is True and base64.b64decode(answer["body"]) == b"\xff\xfe"


def test_the_binary_rule_can_be_overridden():
    app = App(headers=[("Content-Type", "application/x-custom-text")], body=b"plain words")
    answer, _ = serve(events.http_v2("/"), app)
    assert answer["isBase64Encoded"] is True
    answer, _ = serve(events.http_v2("/"), app, binary=lambda content_type, encoding: False)
    assert answer == {**answer, "isBase64Encoded": False, "body": "plain words"}


# --- the app's side of the contract -------------------------------------------------------------

def test_iterable_close_is_called_and_chunks_are_joined():
    answer, app = serve(events.http_v2("/"), App(body=[b"a", b"", b"b"]))
    assert answer["body"] == "ab" and app.closed == 1


def test_legacy_write_callable_output_is_kept_in_order():
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"first-")
        return [b"second"]

    answer = wsgi_handler(app)(events.http_v2("/"), None)
    assert answer["body"] == "first-second"


def test_exc_info_replaces_the_status_before_anything_is_sent():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("missing")
        except KeyError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"try later"]

    answer = wsgi_handler(app)(events.http_v2("/"), None)
    assert (answer["statusCode"], answer["body"]) == (503, "try later")


def test_a_second_start_response_without_exc_info_is_a_500(caplog):
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b""]

    with caplog.at_level(logging.ERROR, logger="lmi_gevent.http"):
        answer = wsgi_handler(app)(events.http_v2("/"), None)
    assert answer["statusCode"] == 500


def test_an_app_exception_is_a_500_and_is_logged_with_its_traceback(caplog):
    closed = []

    class Body:
        def __iter__(self):
            yield b"partial"
            raise RuntimeError("database is gone")

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    with caplog.at_level(logging.ERROR, logger="lmi_gevent.http"):
        answer = wsgi_handler(app)(events.rest_v1("/boom", method="POST"), None)
    assert answer["statusCode"] == 500 and answer["body"] == "Internal Server Error"
    assert closed == [True]
    record = next(r for r in caplog.records if r.name == "lmi_gevent.http")
    assert "POST /boom" in record.getMessage()
    assert record.exc_info and record.exc_info[0] is RuntimeError


@pytest.mark.parametrize("event", [
    {"Records": [{"eventSource": "aws:s3"}]},
    {"version": "2.0", "routeKey": "$connect"},
    ["not", "an", "object"],
    "GET / HTTP/1.1",
])
def test_any_other_event_is_an_error_naming_the_accepted_shapes(event):
    with pytest.raises(UnsupportedEvent) as raised:
        wsgi_handler(App())(event, None)
    message = str(raised.value)
    for shape in ("API Gateway REST", "HTTP API", "Function URL", "ALB", "VPC Lattice"):
        assert shape in message


def test_bad_base64_body_names_the_field():
    event = events.rest_v1("/", method="POST")
    event.update(body="***", isBase64Encoded=True)
    with pytest.raises(UnsupportedEvent, match="isBase64Encoded"):
        wsgi_handler(App())(event, None)


def test_flask_app_round_trip_through_each_source():
    flask = pytest.importorskip("flask")
    app = flask.Flask("probe")

    @app.route("/hello/<name>/", methods=["GET", "POST"])
    def hello(name):
        response = flask.jsonify(name=name, args=flask.request.args.to_dict(flat=False),
                                 url=flask.request.url, cookie=flask.request.cookies.get("sid"),
                                 data=flask.request.get_data(as_text=True))
        response.set_cookie("one", "1")
        response.set_cookie("two", "2")
        return response

    handler = wsgi_handler(app)
    for event in (
        events.rest_v1("/hello/ada/", method="POST", multi_query={"x": ["1 2"]}, body="hi",
                       multi_headers={"Host": ["api.example.com"], "Cookie": ["sid=s1"]}),
        events.http_v2("/hello/ada/", method="POST", raw_query="x=1%202", cookies=["sid=s1"], body="hi"),
        events.alb("/hello/ada/", method="POST", query={"x": "1%202"}, body="hi",
                   headers={"host": "lb.example.com", "cookie": "sid=s1"}),
        events.lattice_v2("/hello/ada/", method="POST", query={"x": ["1 2"]}, body="hi",
                          headers={"host": ["svc.example.com"], "cookie": ["sid=s1"]}),
    ):
        answer = handler(event, None)
        assert answer["statusCode"] == 200, answer
        document = json.loads(answer["body"])
        assert (document["name"], document["args"], document["cookie"], document["data"]) == (
            "ada", {"x": ["1 2"]}, "s1", "hi")
        set_cookies = (answer.get("cookies") or answer.get("multiValueHeaders", {}).get("Set-Cookie")
                       or [v for k, v in answer["headers"].items() if k.lower() == "set-cookie"])
        assert sorted(c.split(";")[0] for c in set_cookies) == ["one=1", "two=2"]


@pytest.mark.parametrize("value, multithread", [(None, False), ("1", False), ("16", True)])
def test_wsgi_multithread_says_whether_invocations_share_the_process(monkeypatch, value, multithread):
    if value is None:
        monkeypatch.delenv("AWS_LAMBDA_MAX_CONCURRENCY", raising=False)
    else:
        monkeypatch.setenv("AWS_LAMBDA_MAX_CONCURRENCY", value)
    _, app = serve(events.http_v2("/"))
    assert app.environ["wsgi.multithread"] is multithread and app.environ["wsgi.multiprocess"] is False


def test_v1_plus_signs_in_decoded_query_values_are_encoded():
    # API Gateway hands over "b+c" decoded: a literal plus that must not turn into a space.
    _, app = serve(events.rest_v1("/", query={"a+b": "c+d"}))
    assert app.environ["QUERY_STRING"] == "a%2Bb=c%2Bd"
    assert parse_qs(app.environ["QUERY_STRING"]) == {"a+b": ["c+d"]}


def test_alb_keeps_plus_signs_and_encoded_values_as_sent():
    _, app = serve(events.alb("/", multi=True, multi_query={"a": ["b+c", "foo%3Dbar", "100%25"]}))
    assert app.environ["QUERY_STRING"] == "a=b+c&a=foo%3Dbar&a=100%25"


def test_alb_health_check_event_is_served():
    event = {"requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:..."}},
             "httpMethod": "GET", "path": "/", "queryStringParameters": {},
             "multiValueHeaders": {"user-agent": ["ELB-HealthChecker/2.0"]}, "body": "",
             "isBase64Encoded": False}
    answer, app = serve(event)
    assert answer["statusCode"] == 200 and "multiValueHeaders" in answer
    assert app.environ["HTTP_USER_AGENT"] == "ELB-HealthChecker/2.0"
    assert app.environ["QUERY_STRING"] == "" and "REMOTE_ADDR" not in app.environ


def test_v2_cookies_and_a_leftover_cookie_header_are_combined():
    _, app = serve(events.http_v2("/", cookies=["a=1"], headers={"cookie": "b=2"}))
    assert app.environ["HTTP_COOKIE"] == "b=2; a=1"


def test_an_encoded_slash_in_the_path_is_unquoted_like_a_server_does():
    _, app = serve(events.rest_v1("/api/path%2Finfo"))
    assert app.environ["PATH_INFO"] == "/api/path/info"


def test_v1_stage_from_an_execute_api_host_when_request_context_has_no_path():
    event = events.rest_v1("/some/path", headers={"Host": "3z6kd9fbb1.execute-api.us-east-1.amazonaws.com"})
    del event["requestContext"]["path"]
    _, app = serve(event)
    assert (app.environ["SCRIPT_NAME"], app.environ["PATH_INFO"]) == ("/prod", "/some/path")
    event["headers"]["Host"] = "custom.example.com"
    _, app = serve(event)
    assert app.environ["SCRIPT_NAME"] == ""


def test_v1_authorizer_principal_is_remote_user():
    event = events.rest_v1("/")
    event["requestContext"]["authorizer"] = {"principalId": "wile_e_coyote"}
    _, app = serve(event)
    assert app.environ["REMOTE_USER"] == "wile_e_coyote"
    _, app = serve(events.rest_v1("/"))
    assert "REMOTE_USER" not in app.environ


# --- custom domains: the base path mapping API Gateway leaves in the path -------------------
# (serverless-wsgi's API_GATEWAY_BASE_PATH and Mangum's api_gateway_base_path test the same fact)

def test_a_base_path_mapping_moves_from_path_info_to_script_name():
    # REST API on a custom domain mapped at /v1: path and requestContext.path both carry it.
    _, app = serve(events.rest_v1("/v1/orders/7"), base_path="/v1")
    assert (app.environ["SCRIPT_NAME"], app.environ["PATH_INFO"]) == ("/v1", "/orders/7")
    # The same request through the API's own execute-api URL has no base path: left alone.
    _, app = serve(events.rest_v1("/orders/7", stage_path="/prod/orders/7"), base_path="/v1")
    assert (app.environ["SCRIPT_NAME"], app.environ["PATH_INFO"]) == ("/prod", "/orders/7")


@pytest.mark.parametrize("path, script_name, path_info", [
    ("/api/v1", "/api/v1", "/"),
    ("/api/v1/", "/api/v1", "/"),
    ("/api/v1/items/", "/api/v1", "/items/"),
    ("/api/v10/items", "", "/api/v10/items"),  # a segment boundary, not a string prefix
    ("/api", "", "/api"),
])
def test_the_base_path_is_matched_by_whole_segments(path, script_name, path_info):
    _, app = serve(events.http_v2(path), base_path="api/v1/")
    assert (app.environ["SCRIPT_NAME"], app.environ["PATH_INFO"]) == (script_name, path_info)


def test_the_base_path_comes_from_the_setting_unless_the_handler_names_one(monkeypatch):
    monkeypatch.setenv("LMI_GEVENT_HTTP_BASE_PATH", "/shop")
    _, app = serve(events.alb("/shop/cart"))
    assert (app.environ["SCRIPT_NAME"], app.environ["PATH_INFO"]) == ("/shop", "/cart")
    _, app = serve(events.alb("/shop/cart"), base_path="")
    assert (app.environ["SCRIPT_NAME"], app.environ["PATH_INFO"]) == ("", "/shop/cart")


@pytest.mark.parametrize("value", ["/v1?x=1", "/a//b", "/v 1", "/caf%C3%A9"])
def test_a_bad_base_path_names_the_setting_or_the_argument(monkeypatch, value):
    monkeypatch.setenv("LMI_GEVENT_HTTP_BASE_PATH", value)
    with pytest.raises(ValueError, match="LMI_GEVENT_HTTP_BASE_PATH"):
        wsgi_handler(App())
    monkeypatch.delenv("LMI_GEVENT_HTTP_BASE_PATH")
    with pytest.raises(ValueError, match=r"base_path"):
        wsgi_handler(App(), base_path=value)


def test_wsgi_multiprocess_is_true_in_a_worker_process(monkeypatch):
    from lmi_gevent.workers import assignment as worker

    monkeypatch.setattr(worker, "_current", worker.WorkerAssignment(1, 8, 5, 8, False, 1))
    _, app = serve(events.http_v2("/"))
    assert app.environ["wsgi.multiprocess"] is True


# --- HTTP API with payload format 1.0 (Mangum serves it apart; here it is REST's shape) -------

def _http_api_v1_event(query: dict[str, list[str]] | None) -> dict[str, Any]:
    event = events.rest_v1("/test", multi_headers={"accept-encoding": ["gzip", "deflate"],
                                                   "host": ["id.execute-api.us-east-1.amazonaws.com"],
                                                   "x-forwarded-proto": ["https"]})
    event["version"] = "1.0"
    event["requestContext"].update(stage="$default", path="/test",
                                   domainName="id.execute-api.us-east-1.amazonaws.com")
    event["multiValueQueryStringParameters"] = query
    event["queryStringParameters"] = {k: v[-1] for k, v in query.items()} if query else None
    return event


def test_http_api_payload_1_0_is_served_like_rest():
    answer, app = serve(_http_api_v1_event({"hello": ["world", "life"]}),
                        App(headers=[("Content-Type", "text/plain"), ("Set-Cookie", "a=1"),
                                     ("Set-Cookie", "b=2")]))
    environ = app.environ
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("", "/test")
    assert environ["QUERY_STRING"] == "hello=world&hello=life"
    assert environ["HTTP_ACCEPT_ENCODING"] == "gzip, deflate"
    assert environ["wsgi.url_scheme"] == "https"
    assert answer["multiValueHeaders"]["Set-Cookie"] == ["a=1", "b=2"]


def test_http_api_payload_1_0_without_any_query_field_has_an_empty_query():
    event = _http_api_v1_event(None)
    del event["multiValueQueryStringParameters"], event["queryStringParameters"]
    _, app = serve(event)
    assert app.environ["QUERY_STRING"] == ""


@pytest.mark.parametrize("make", [events.rest_v1, events.alb])
def test_an_empty_path_is_the_root(make):
    _, app = serve(make(""))
    assert app.environ["PATH_INFO"] == "/"
