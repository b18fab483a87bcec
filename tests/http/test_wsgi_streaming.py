"""wsgi_handler(app, streaming=True): the prelude, laziness, errors before and after the first
byte, and the sources that cannot stream. The wire side (chunked post, trailers, the relay) is
covered end to end in tests/integration/test_streaming.py and tests/http/test_function_url.py."""

from __future__ import annotations

import json
import sys

from lmi_gevent.http import wsgi_handler
from lmi_gevent.streaming import HTTP_INTEGRATION_CONTENT_TYPE, PRELUDE_SEPARATOR, StreamBody, StreamingResponse
from tests.http import events


def _prelude(chunk: bytes) -> dict:
    assert chunk.endswith(PRELUDE_SEPARATOR) and chunk.count(b"\0") == 8
    return json.loads(chunk[:-8])


def test_streamed_answer_is_prelude_then_each_chunk_as_the_app_yields_it():
    produced = []
    closed = []

    def body():
        try:
            for k in range(3):
                produced.append(k)
                yield f"chunk{k}".encode()
        finally:
            closed.append(True)

    def app(environ, start_response):
        start_response("201 Created", [("Content-Type", "text/event-stream"), ("Set-Cookie", "a=1"),
                                       ("Set-Cookie", "b=2"), ("Content-Length", "18"),
                                       ("X-Many", "1"), ("X-Many", "2")])
        return body()

    response = wsgi_handler(app, streaming=True)(events.function_url("/"), None)
    assert isinstance(response, StreamingResponse)
    assert response.content_type == HTTP_INTEGRATION_CONTENT_TYPE
    stream = StreamBody(response)
    assert _prelude(next(stream)) == {"statusCode": 201, "cookies": ["a=1", "b=2"],
                                      "headers": {"Content-Type": "text/event-stream", "X-Many": "1, 2"}}
    assert next(stream) == b"chunk0"
    assert produced == [0]  # the app has not been asked for chunk 1 yet: nothing is buffered
    assert next(stream) == b"chunk1" and produced == [0, 1]
    assert list(stream) == [b"chunk2"]
    assert stream.failure is None and closed == [True]


def test_failure_before_the_first_byte_is_a_clean_500_prelude():
    def app(environ, start_response):
        raise LookupError("no route")

    stream = StreamBody(wsgi_handler(app, streaming=True)(events.http_v2("/"), None))
    prelude = _prelude(next(stream))
    assert prelude["statusCode"] == 500
    assert list(stream) == [b"Internal Server Error"] and stream.failure is None


def test_failure_after_the_first_byte_ends_the_stream_as_a_failure_and_closes_the_body():
    closed = []

    class Body:
        def __iter__(self):
            yield b"row1\n"
            raise OSError("disk gone")

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/csv")])
        return Body()

    stream = StreamBody(wsgi_handler(app, streaming=True)(events.function_url("/"), None))
    assert _prelude(next(stream))["statusCode"] == 200
    assert list(stream) == [b"row1\n"]
    assert isinstance(stream.failure, OSError) and closed == [True]
    trailers = stream.trailers(lambda exc: {"errorType": type(exc).__name__, "errorMessage": str(exc)})
    assert trailers["Lambda-Runtime-Function-Error-Type"] == "OSError"


def test_exc_info_after_the_headers_went_out_reraises_into_the_stream():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"begun"
        try:
            raise ValueError("late")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        yield b"never"

    stream = StreamBody(wsgi_handler(app, streaming=True)(events.function_url("/"), None))
    next(stream)
    assert list(stream) == [b"begun"]
    assert isinstance(stream.failure, ValueError)


def test_empty_leading_chunks_wait_for_the_first_real_bytes():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"", b"", b"x"])

    stream = StreamBody(wsgi_handler(app, streaming=True)(events.http_v2("/"), None))
    assert _prelude(next(stream))["statusCode"] == 200
    assert list(stream) == [b"x"]


def test_sources_that_cannot_stream_get_a_buffered_answer():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"a", b"b"])

    handler = wsgi_handler(app, streaming=True)
    for event in (events.alb("/"), events.lattice_v1("/"), events.lattice_v2("/")):
        answer = handler(event, None)
        assert isinstance(answer, dict) and answer["body"] == "ab"
    assert isinstance(handler(events.rest_v1("/"), None), StreamingResponse)


def test_stream_limit_ends_an_oversized_stream():
    from lmi_gevent.streaming import StreamTooLarge

    def endless():
        while True:
            yield b"x" * 1000

    stream = StreamBody(StreamingResponse(endless()), limit=2500)
    assert list(stream) == [b"x" * 1000, b"x" * 1000]
    assert isinstance(stream.failure, StreamTooLarge)
