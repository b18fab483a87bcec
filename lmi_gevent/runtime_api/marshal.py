"""Events in, responses out, with the official client's semantics.

What users rely on (docs/protocol.md): JSON events are decoded and other content types arrive as
raw bytes; a ``bytes`` return is sent raw as ``application/unknown``; everything else is encoded
exactly as the official client encodes it (simplejson: ``Decimal`` written as the number it
holds, namedtuples as objects, ``", "``/``": "`` separators, NaN and Infinity allowed), and what
it cannot encode (a cycle, a tuple key, a set, nesting past the recursion limit) is the same
``Runtime.MarshalError`` in the same words. Large plain values take a faster road (ujson) that
gives the same bytes, imported with the first of them: for a handful of values simplejson is
as quick, and a classic cold start is spared the import; events are decoded with simplejson, so the events the official client accepts and
its ``Runtime.UnmarshalError`` messages are the same byte for byte.
"""

from __future__ import annotations

import decimal
import math
import os

import simplejson

from .errors import MARSHAL_ERROR, UNMARSHAL_ERROR, RuntimeFault

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any

JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/unknown"

# The official client stops escaping non-ASCII characters on the python3.12+ managed runtimes.
_UNESCAPED_RUNTIMES = frozenset(
    f"AWS_Lambda_python3.{minor}" for minor in range(12, 16))
ENSURE_ASCII = os.environ.get("AWS_EXECUTION_ENV") not in _UNESCAPED_RUNTIMES
_SEPARATORS = (", ", ": ")


class OfficialEncoder(simplejson.JSONEncoder):
    """The official client's encoder: simplejson's defaults, Decimals written as they read."""

    def __init__(self, ensure_ascii: bool = ENSURE_ASCII) -> None:
        super().__init__(use_decimal=False, ensure_ascii=ensure_ascii, allow_nan=True)

    def default(self, o: Any) -> Any:
        if isinstance(o, decimal.Decimal):
            return math.nan if o.is_nan() else simplejson.RawJSON(str(o))
        return super().default(o)


_OFFICIAL = {True: OfficialEncoder(True), False: OfficialEncoder(False)}
# From this many values up, ujson is worth its import: 2-7x simplejson's speed (1 vs 2 us for
# {"ok": true}, 25 vs 173 us for 6 KB of records).
_UJSON_FROM = 32


def to_json(value: Any, ensure_ascii: bool = ENSURE_ASCII) -> str:
    """Encode ``value`` as the official client does (raises what its encoder raises)."""
    if _plain_size(value) >= _UJSON_FROM:
        try:
            text = _ujson_dumps(value, ensure_ascii)
        except (TypeError, OverflowError, ValueError):
            pass  # nested past ujson's depth limit, a lone surrogate...: the official road decides
        else:
            # U+007F is the one character ujson leaves raw that the official client escapes.
            if not (ensure_ascii and "\x7f" in text):
                return text
    return _OFFICIAL[ensure_ascii].encode(value)


_ujson: Any = None


def _ujson_dumps(value: Any, ensure_ascii: bool) -> str:
    global _ujson
    if _ujson is None:
        import ujson

        _ujson = ujson
    return _ujson.dumps(value, ensure_ascii=ensure_ascii, escape_forward_slashes=False,
                       separators=_SEPARATORS, reject_bytes=True)


def decode_event(body: bytes, content_type: str | None) -> Any:
    """The handler's ``event``: decoded JSON, or the raw bytes for any other content type.

    Decoded with simplejson, as the official client decodes: ujson is faster but accepts what
    simplejson refuses (``-`` as 0, ``01``, raw control characters in strings), and an event
    the official client rejects must be rejected here too, in the same words.
    """
    if content_type != JSON_CONTENT_TYPE:
        return body
    try:
        return simplejson.loads(body)
    except Exception as problem:  # noqa: BLE001 - every decode failure is the same fault
        raise RuntimeFault(UNMARSHAL_ERROR, f"Unable to unmarshal input: {problem}") from None


def encode_response(value: Any) -> tuple[bytes, str]:
    """The response body and its content type for a handler's return value."""
    if isinstance(value, bytes):
        return value, BINARY_CONTENT_TYPE
    try:
        return to_json(value).encode("utf-8"), JSON_CONTENT_TYPE
    except Exception as problem:  # noqa: BLE001 - every encode failure is the same fault
        raise RuntimeFault(MARSHAL_ERROR, f"Unable to marshal response: {problem}") from None


# --- which values ujson writes exactly as the official client would ---

# Python writes floats below 1e-4 or from 1e16 in exponent form, where ujson's spelling differs.
_PLAIN_FLOAT_LOW, _PLAIN_FLOAT_HIGH = 1e-4, 1e16


def _plain_size(value: Any) -> int:
    """How many values ``value`` holds (itself included) when it is only dicts with ``str``
    keys, lists, strings, numbers, booleans and None (exact types), with no container reached
    twice (so no cycle), and no float ujson spells differently; -1 when it is not. A linear,
    early-exit walk that records what it saw."""
    seen: set[int] = set()
    stack = [value]
    pop, extend, see = stack.pop, stack.extend, seen.add
    size = 0
    while stack:
        item = pop()
        size += 1
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        elif kind is dict or kind is list:
            count = len(seen)
            see(id(item))
            if len(seen) == count:
                return -1
            if kind is list:
                extend(item)
                continue
            for key in item:
                if type(key) is not str:
                    return -1
            extend(item.values())
        elif kind is float:
            magnitude = abs(item)
            if magnitude and (magnitude < _PLAIN_FLOAT_LOW or magnitude >= _PLAIN_FLOAT_HIGH):
                return -1
        else:
            return -1
    return size
