"""Property: whatever a handler returns, the answer is the official client's answer for the same
value — the same bytes, or a ``Runtime.MarshalError`` with the same message — and it comes
promptly (a cycle, an odd key or deep nesting never makes the encoder spin).

awslambdaric's marshaller is called in-process on each generated value, in both of its
modes (non-ASCII escaped, and left as is on the python3.12+ managed runtimes)."""

from __future__ import annotations

import collections
import contextlib
import decimal
import math
from typing import Any, Iterator

import pytest
from hypothesis import given, strategies as st

from lmi_gevent.runtime_api import errors, marshal
from lmi_gevent.runtime_api.marshal import encode_response, to_json

awslambdaric_marshaller = pytest.importorskip("awslambdaric.lambda_runtime_marshaller")

Point = collections.namedtuple("Point", "x y")

floats = st.floats() | st.sampled_from([1e-4, 9.999e-5, 1e16, 9.999999999999998e15, 1e-7, 5e-324,
                                        -0.0, math.nan, math.inf, -math.inf, 1.7976931348623157e308])
decimals = st.decimals(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [decimal.Decimal("1.10"), decimal.Decimal("1E+5"), decimal.Decimal("-0"), decimal.Decimal("sNaN")])
text = st.text(max_size=12) | st.sampled_from(["\x7f", "a\u2028b", "\ud800", "é/\\\"", "\x00"])
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2 ** 63, max_value=2 ** 200)
           | floats | text | decimals
           | st.binary(max_size=6))
# keys the official encoder accepts (str, int, float, bool, None) and ones it refuses
keys = (text | st.integers() | floats | st.booleans() | st.none() | st.binary(max_size=4)
        | st.tuples(st.integers(), st.integers()) | st.decimals(allow_nan=False))


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (st.lists(inner, max_size=4) | st.tuples(inner, inner)
            | st.dictionaries(keys, inner, max_size=4)
            | st.builds(Point, inner, inner)
            | st.frozensets(st.integers(), max_size=2)
            | st.builds(collections.OrderedDict, st.dictionaries(text, inner, max_size=3)))


values = st.recursive(scalars, containers, max_leaves=20)


def official(value: Any, ensure_ascii: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    """How awslambdaric answers ``value``: ("ok", (body bytes, content type)), ("error", its
    MarshalError message), or ("unsendable", None) for a body that is not UTF-8 encodable."""
    if ensure_ascii:
        monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
    else:
        monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.13")
    marshaller = awslambdaric_marshaller.LambdaMarshaller()
    try:
        body, content_type = marshaller.marshal_response(value)
    except Exception as fault:  # noqa: BLE001 - its FaultException
        return "error", fault.msg  # type: ignore[attr-defined]
    if isinstance(body, str):
        try:
            body = body.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate left unescaped: it cannot post this
            return "unsendable", None
    return "ok", (body, content_type)


def ours(value: Any, ensure_ascii: bool) -> tuple[str, Any]:
    try:
        if isinstance(value, bytes):
            return "ok", encode_response(value)
        return "ok", (to_json(value, ensure_ascii).encode("utf-8"), "application/json")
    except Exception as problem:  # noqa: BLE001 - encode_response turns this into the fault
        return "error", f"Unable to marshal response: {problem}"


# Both roads of ours: simplejson for small plain values (and every other value), and ujson
# from marshal._UJSON_FROM values up, which the generated values seldom reach, so it is also
# taken for every plain value.
ROADS = {"as shipped": marshal._UJSON_FROM, "ujson for every plain value": 0}


@contextlib.contextmanager
def ujson_from(size: int) -> Iterator[None]:
    shipped = marshal._UJSON_FROM
    marshal._UJSON_FROM = size
    try:
        yield
    finally:
        marshal._UJSON_FROM = shipped


def assert_same_answer(value: Any, ensure_ascii: bool, road: str = "as shipped") -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = official(value, ensure_ascii, monkeypatch)
    with ujson_from(ROADS[road]):
        answer = ours(value, ensure_ascii)
    if expected[0] == "unsendable":  # ours refuses it up front, as a MarshalError
        assert answer[0] == "error" and "surrogates not allowed" in answer[1]
    else:
        assert answer == expected


def add_cycle(value: Any) -> Any:
    """``value`` with a reference to itself inside its first dict or list, when it has one."""
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) is dict:
            item["self"] = value
            return value
        if type(item) is list:
            item.append(value)
            return value
        if isinstance(item, (list, tuple)):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
    return value


@pytest.mark.parametrize("road", ROADS)
@given(value=values, ensure_ascii=st.booleans())
def test_every_value_is_answered_as_the_official_client_answers_it(
        road: str, value: Any, ensure_ascii: bool) -> None:
    assert_same_answer(value, ensure_ascii, road)


@pytest.mark.parametrize("road", ROADS)
@given(value=values.map(add_cycle), ensure_ascii=st.booleans())
def test_values_with_cycles_are_answered_as_the_official_client_answers_them(
        road: str, value: Any, ensure_ascii: bool) -> None:
    assert_same_answer(value, ensure_ascii, road)


@given(depth=st.integers(0, 60) | st.integers(2_000, 20_000),
       wrap=st.sampled_from(["list", "dict", "tuple"]))
def test_nesting_of_any_depth_is_answered_as_the_official_client_answers_it(
        depth: int, wrap: str) -> None:
    value: Any = 1
    for _ in range(depth):
        value = [value] if wrap == "list" else {"k": value} if wrap == "dict" else (value,)
    with pytest.MonkeyPatch.context() as monkeypatch:
        kind, expected = official(value, True, monkeypatch)
    if kind == "ok":
        assert ours(value, True) == (kind, expected)
        return
    # Past the recursion limit both refuse; how deep each got depends on its own call stack.
    with pytest.raises(errors.RuntimeFault) as caught:
        encode_response(value)
    assert caught.value.error_type == errors.MARSHAL_ERROR
    assert caught.value.message == expected
