"""In the runtime under ``lmi-gevent check``: an invocation's own values left in process-wide
objects after it ended (``app.state.user_id = event["user"]``), which no hook can make per
invocation.

After an invocation, the objects reachable from the handler module's globals (attributes,
dict values, list entries, a few levels deep) are searched for what only that invocation
had: its request id (equal, or inside a string) and the very objects taken from its event or
its context (by identity, so a module-level setting that merely equals an event value, a
region name say, is not mistaken for one). What a cache computes from the event is a new
object and stays unreported, and so do dict keys (a cache keyed by an event value). Each
place is reported once, with list indices folded (``SEEN[]``).

The walk is bounded (:data:`MAX_DEPTH`, :data:`MAX_OBJECTS`) and yields to the other
greenlets every :data:`YIELD_EVERY` objects, so that it cannot be mistaken for a stall.
"""

from __future__ import annotations

from collections import deque
from types import FunctionType, MethodType, ModuleType
from typing import Any, Callable, Iterator, NamedTuple

MAX_DEPTH = 6  # Powertools' log keys sit 6 steps below the Logger: deep enough for those
MAX_OBJECTS = 20_000
YIELD_EVERY = 500
MIN_EVENT_TEXT = 2  # 1-character strings are shared singletons in CPython: no evidence
_SKIP = (ModuleType, FunctionType, MethodType, type, bytes, bytearray, int, float, complex,
         bool, type(None))


class LeftValue(NamedTuple):
    path: str  # where it was found, from the module global: "app.state.user_id"
    place: str  # the path with list indices folded, to report a place once
    source: str  # "the request id", "the event's user.id", "the context", "the event"
    value: str  # a short repr of what was found


def invocation_marks(event: Any, context: Any) -> tuple[str | None, dict[int, str]]:
    """(request id, {id(object): where it came from}) for one invocation."""
    marks: dict[int, str] = {}
    if context is not None:
        marks[id(context)] = "the context"
    for where, value in _event_objects(event, "", 0):
        if isinstance(value, str) and len(value) < MIN_EVENT_TEXT:
            continue
        marks.setdefault(id(value), f"the event's {where}" if where else "the event")
    request_id = getattr(context, "aws_request_id", None)
    return (request_id if isinstance(request_id, str) and request_id else None), marks


def _event_objects(value: Any, where: str, depth: int) -> Iterator[tuple[str, Any]]:
    if depth > MAX_DEPTH:
        return
    if isinstance(value, (str, dict, list)):
        yield where, value
    if isinstance(value, dict):
        for key, item in list(value.items())[:200]:
            yield from _event_objects(item, f"{where}.{key}" if where else str(key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value[:200]):
            yield from _event_objects(item, f"{where}[{index}]", depth + 1)


def find_left_values(roots: dict[str, Any], request_id: str | None, marks: dict[int, str],
                     pause: Callable[[], None] | None = None) -> list[LeftValue]:
    """Where the invocation's request id or event/context objects are reachable from ``roots``
    (name -> module-level object); the roots themselves are not judged."""
    found: list[LeftValue] = []
    seen = {id(value) for value in roots.values()}
    queue: deque[tuple[Any, str, str, int]] = deque(
        (value, name, name, 0) for name, value in roots.items())
    visited = 0
    while queue and visited < MAX_OBJECTS:
        value, path, place, depth = queue.popleft()
        visited += 1
        if pause is not None and visited % YIELD_EVERY == 0:
            pause()
        if depth >= MAX_DEPTH:
            continue
        for child, child_path, child_place in _children(value, path, place):
            source = _source(child, request_id, marks)
            if source is not None:
                found.append(LeftValue(child_path, child_place, source, _short(child)))
                continue
            if id(child) not in seen and not isinstance(child, (_SKIP, str)):
                seen.add(id(child))
                queue.append((child, child_path, child_place, depth + 1))
    return found


def _source(value: Any, request_id: str | None, marks: dict[int, str]) -> str | None:
    mark = marks.get(id(value))
    if mark is not None:
        return mark
    if request_id is not None and isinstance(value, str) and request_id in value:
        return "the request id"
    return None


def _children(value: Any, path: str, place: str) -> Iterator[tuple[Any, str, str]]:
    """(child, its path, its place) for the attributes, dict values and entries of ``value``."""
    try:
        if isinstance(value, dict):
            for key, item in list(value.items())[:500]:
                yield item, f"{path}[{key!r}]", f"{place}[{key!r}]"
        elif isinstance(value, (list, tuple, deque)):
            for index, item in enumerate(list(value)[:500]):
                yield item, f"{path}[{index}]", f"{place}[]"
        elif isinstance(value, (set, frozenset)):
            for item in list(value)[:500]:
                yield item, f"{path}{{…}}", f"{place}{{}}"
        else:
            attributes = getattr(value, "__dict__", None)
            if isinstance(attributes, dict):
                for name, item in list(attributes.items()):
                    yield item, f"{path}.{name}", f"{place}.{name}"
    except Exception:  # noqa: BLE001 - an object we cannot look inside is not evidence
        return


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."
