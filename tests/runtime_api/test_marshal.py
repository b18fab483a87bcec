from __future__ import annotations

import collections
import datetime
import enum
import decimal
import json
import math

import pytest

from lmi_gevent.runtime_api import errors
from lmi_gevent.runtime_api.marshal import decode_event, encode_response, to_json


def test_json_event_is_decoded() -> None:
    assert decode_event(b'{"a": [1, 2.5, "x"]}', "application/json") == {"a": [1, 2.5, "x"]}


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", None,
                                          "application/json; charset=utf-8"])
def test_other_content_types_arrive_as_raw_bytes(content_type: str | None) -> None:
    # The official client compares the content type exactly; anything else is raw bytes.
    assert decode_event(b"\x00raw", content_type) == b"\x00raw"


BROKEN_EVENTS = [b"", b"{bad", b"[1,]", b'{"a":1}x', b"\xff", b'"\xc3', b'{"a" 1}', b"[1 2]",
                 b'{"a":1,}', b"tru", b"\xef\xbb\xbf", b'"\\ud800\\x"',
                 # ujson would take these (as 0, 1, 1.0 and a tab) where the official client refuses
                 b"-", b"01", b"1.", b'"\t"']


@pytest.mark.parametrize("body", BROKEN_EVENTS)
def test_bad_json_is_an_unmarshal_error_worded_like_the_official_client(body: bytes) -> None:
    # awslambdaric decodes with simplejson: "Unable to unmarshal input: " + str(its error).
    import simplejson

    with pytest.raises(Exception) as official:
        simplejson.loads(body)
    with pytest.raises(errors.RuntimeFault) as caught:
        decode_event(body, "application/json")
    assert caught.value.error_type == "Runtime.UnmarshalError"
    assert caught.value.message == f"Unable to unmarshal input: {official.value}"


def test_bytes_return_is_sent_raw() -> None:
    assert encode_response(b"\x89PNG") == (b"\x89PNG", "application/unknown")


def test_response_uses_the_official_separators() -> None:
    assert encode_response({"a": 1, "b": [1, 2]}) == (b'{"a": 1, "b": [1, 2]}', "application/json")


def test_decimal_is_written_as_the_exact_number() -> None:
    value = {"price": decimal.Decimal("1.10"), "big": decimal.Decimal("3.14159265358979323846264338"),
             "nested": [decimal.Decimal("-0.000001"), {"n": decimal.Decimal("7")}],
             "nan": decimal.Decimal("NaN")}
    assert to_json(value) == ('{"price": 1.10, "big": 3.14159265358979323846264338, '
                              '"nested": [-0.000001, {"n": 7}], "nan": NaN}')
    assert to_json(decimal.Decimal("2.50")) == "2.50"


def test_namedtuple_becomes_an_object_like_simplejson() -> None:
    Point = collections.namedtuple("Point", "x y")
    assert to_json({"p": Point(1, decimal.Decimal("2.0"))}) == '{"p": {"x": 1, "y": 2.0}}'
    assert to_json([Point(1, 2)]) == '[{"x": 1, "y": 2}]'


def test_strings_that_look_like_the_placeholder_are_untouched() -> None:
    tricky = "\x00lmi-gevent-decimal-1:0"
    assert json.loads(to_json({"s": tricky, "d": decimal.Decimal("1")})) == {"s": tricky, "d": 1}


def test_nan_and_infinity_are_allowed_and_slashes_not_escaped() -> None:
    assert to_json([math.inf, "a/b"]) == '[Infinity, "a/b"]'


def test_non_ascii_is_escaped_by_default() -> None:
    assert to_json("é") == '"\\u00e9"'


@pytest.mark.parametrize("value, kind", [({1, 2}, "set"), (object(), "object"),
                                         ((i for i in ()), "generator")])
def test_unserialisable_return_is_a_marshal_error_naming_the_type(value: object, kind: str) -> None:
    with pytest.raises(errors.RuntimeFault) as caught:
        encode_response({"v": value})
    assert caught.value.error_type == "Runtime.MarshalError"
    assert caught.value.message == f"Unable to marshal response: Object of type {kind} is not JSON serializable"


def test_nested_bytes_are_decoded_as_utf8_text() -> None:
    assert to_json({"b": b"caf\xc3\xa9"}) == '{"b": "caf\\u00e9"}'


def test_big_integers_survive() -> None:
    assert to_json([2 ** 64, -(2 ** 70)]) == f"[{2 ** 64}, {-(2 ** 70)}]"


def _cycle() -> dict[str, object]:
    looped: dict[str, object] = {}
    looped["d"] = looped
    return looped


class _BadStr:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


HOSTILE_VALUES = {
    "cycle": _cycle, "list cycle": lambda: (lambda x: (x.append(x), x)[1])([]),
    "tuple key": lambda: {(1, 2): "x"}, "decimal key": lambda: {decimal.Decimal("1.5"): 1},
    "odd keys": lambda: {None: 1, True: 2, 1.5: 3, 7: 4, b"k": 5},
    "set": lambda: {1, 2}, "generator": lambda: (i for i in range(3)),
    "object with a raising __str__": _BadStr, "huge int": lambda: 10 ** 400,
    "nan and inf": lambda: [math.nan, -math.inf], "small float": lambda: [1e-7, 1e16],
    "deep nesting": lambda: _nested(100_000), "bad utf-8 bytes inside": lambda: [b"\xff"],
    "DEL character": lambda: "\x7f", "shared (not cyclic) list": lambda: (lambda x: [x, x])([1]),
    "enums": lambda: [_Colour.RED, _Size.BIG, {_Colour.RED: 1}],
    "subclasses": lambda: collections.defaultdict(list, a=[_Float(1.5), _Str("s")]),
    "datetime": lambda: {"at": datetime.datetime(2026, 1, 1)}, "frozenset": lambda: frozenset(),
    "bytearray": lambda: bytearray(b"ab"), "memoryview": lambda: memoryview(b"ab"),
    "range": lambda: range(3), "complex": lambda: 1j,
}


class _Colour(enum.IntEnum):
    RED = 1


class _Size(str, enum.Enum):
    BIG = "big"


class _Float(float):
    pass


class _Str(str):
    pass


def _nested(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(HOSTILE_VALUES))
def test_hostile_return_values_get_the_official_clients_answer(name: str) -> None:
    # Side by side with awslambdaric's marshaller, on the same value: the same body, or a
    # MarshalError in the same words (a cycle used to make the walk spin forever).
    marshaller = pytest.importorskip("awslambdaric.lambda_runtime_marshaller").LambdaMarshaller()
    value = HOSTILE_VALUES[name]()
    try:
        body, content_type = marshaller.marshal_response(value)
        expected: tuple[str, object] = ("ok", (body.encode("utf-8"), content_type))
    except Exception as fault:  # noqa: BLE001 - its FaultException
        expected = ("error", fault.msg)  # type: ignore[attr-defined]
    try:
        answer: tuple[str, object] = ("ok", encode_response(value))
    except errors.RuntimeFault as fault:
        assert fault.error_type == "Runtime.MarshalError"
        answer = ("error", fault.message)
    assert answer == expected


def test_a_cycle_is_the_official_marshal_error() -> None:
    with pytest.raises(errors.RuntimeFault) as caught:
        encode_response(_cycle())
    assert caught.value.message == "Unable to marshal response: Circular reference detected"
