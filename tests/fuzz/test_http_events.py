"""Property: the HTTP adapter's event parsing (lmi_gevent.http) given a broken event — any
field of a real API Gateway, Function URL, ALB or VPC Lattice event replaced by any JSON
value, or removed — answers with an HTTP answer or refuses with UnsupportedEvent naming what
is wrong; it never fails with a TypeError/AttributeError/KeyError of its own."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, strategies as st

from lmi_gevent.http import UnsupportedEvent, wsgi_handler
from tests.http import events

FACTORIES = [
    lambda: events.rest_v1("/a/b", method="POST", headers={"Content-Type": "text/plain"},
                           multi_headers={"X-A": ["1", "2"]}, query={"q": "1"},
                           multi_query={"q": ["1", "2"]}, body="hi"),
    lambda: events.http_v2("/a", method="PUT", headers={"content-type": "application/json"},
                           raw_query="x=1&y=2", cookies=["a=1"], body=b"\x00\x01", binary=True),
    lambda: events.function_url("/f", headers={"cookie": "c=1"}),
    lambda: events.alb("/alb", headers={"host": "example.com"}, body="x"),
    lambda: events.lattice_v1("/l", method="DELETE"),
    lambda: events.lattice_v2("/l2", headers={"x": ["1"]}),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)
REMOVE = object()


class Context:
    aws_request_id = "fuzz-request"
    function_name = "function"
    invoked_function_arn = "arn:aws:lambda:us-east-1:012345678912:function:function"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    seen = {key: environ[key] for key in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING")}
    seen["headers"] = sorted(key for key in environ if key.startswith("HTTP_"))
    start_response("200 OK", [("Content-Type", "application/json"), ("Set-Cookie", "s=1")])
    return [json.dumps(seen).encode(), body]


HANDLER = wsgi_handler(app)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into ``value`` (dict keys and list indexes)."""
    found = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found.append(prefix + (key,))
        found.extend(paths(child, prefix + (key,)))
    return found


def mutate(event: dict[str, Any], path: tuple[Any, ...], replacement: Any) -> None:
    parent: Any = event
    for key in path[:-1]:
        parent = parent[key]
    if replacement is REMOVE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement


@given(data=st.data(), factory=st.sampled_from(FACTORIES))
def test_a_broken_http_event_gets_an_answer_or_a_clear_refusal(data: st.DataObject, factory: Any) -> None:
    event = factory()
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        candidates = paths(event)
        if not candidates:
            break
        path = data.draw(st.sampled_from(candidates), label="path")
        mutate(event, path, data.draw(json_values | st.just(REMOVE), label="value"))
    try:
        answer = HANDLER(event, Context())
    except UnsupportedEvent as refused:
        assert str(refused)  # names what is wrong
        return
    assert isinstance(answer, dict) and isinstance(answer["statusCode"], int), answer
    json.dumps(answer)  # the runtime must be able to marshal it
