"""Events in, responses out, with the official client's semantics.

What users rely on (docs/protocol.md): JSON events are decoded and other content types arrive as
raw bytes; a ``bytes`` return is sent raw as ``application/unknown``; ``Decimal`` is written as
the exact number it holds; namedtuples become objects; ``", "``/``": "`` separators; NaN and
Infinity allowed. Responses are encoded with ujson (the fast path; the stdlib encoder words its
errors); events are decoded with simplejson, the official client's decoder, so the events it
accepts and the ``Runtime.UnmarshalError`` messages it gives are the same byte for byte.
"""

from __future__ import annotations

import decimal
import json
import math
import os
import re

import simplejson
import ujson

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


def to_json(value: Any) -> str:
    """Encode ``value`` like the official client's encoder (raises TypeError/ValueError)."""
    special = _replace_specials(value)
    if special is not None:
        return _encode_with_exact_numbers(*special)
    try:
        return _ujson_dumps(value)
    except (TypeError, OverflowError, ValueError):
        # The stdlib encoder gives the standard message ("Object of type set is not JSON
        # serializable") and settles the rare value ujson rejects but json accepts.
        return json.dumps(value, ensure_ascii=ENSURE_ASCII, separators=_SEPARATORS)


def _ujson_dumps(value: Any) -> str:
    return ujson.dumps(value, ensure_ascii=ENSURE_ASCII, escape_forward_slashes=False,
                       separators=_SEPARATORS, reject_bytes=False)


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


# --- Decimal and namedtuple: values ujson would write differently from the official client ---

def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_asdict")


def _needs_care(value: Any) -> bool:
    """True when ``value`` holds a Decimal or a namedtuple anywhere (a cheap, early-exit walk)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind in (str, int, float, bool) or item is None:
            continue
        elif isinstance(item, decimal.Decimal) or _is_namedtuple(item):
            return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def _replace_specials(value: Any) -> tuple[Any, list[str], str] | None:
    """None when nothing needs care; else a copy with Decimals swapped for placeholders."""
    if not _needs_care(value):
        return None
    numbers: list[str] = []
    marker = f"\x00lmi-gevent-decimal-{id(numbers)}:"

    def swap(item: Any) -> Any:
        if isinstance(item, decimal.Decimal):
            if item.is_nan():
                return math.nan
            numbers.append(str(item))
            return f"{marker}{len(numbers) - 1}"
        if _is_namedtuple(item):
            return {key: swap(field) for key, field in item._asdict().items()}
        if isinstance(item, dict):
            return {key: swap(field) for key, field in item.items()}
        if isinstance(item, (list, tuple)):
            return [swap(field) for field in item]
        return item

    return swap(value), numbers, marker


def _encode_with_exact_numbers(value: Any, numbers: list[str], marker: str) -> str:
    text = to_json(value)
    quoted_marker = json.dumps(marker)[1:-1]  # how the marker reads once JSON-escaped
    pattern = re.compile('"' + re.escape(quoted_marker) + r'(\d+)"')
    return pattern.sub(lambda match: numbers[int(match.group(1))], text)
