"""The events ``lmi-gevent check`` invokes with, and how it probes with them.

State that one invocation writes and another reads (a module global, ``os.environ``, the
working directory) only shows when the invocations see different values: replaying one event
N+2 times writes the same value each time. So check invokes with several distinct events:
those given (``--event`` repeated, or a JSON-lines file), or, from a single event, variants
of it in which each number changes (``"page": "3"`` becomes ``"4"``, ``"user-42"`` becomes
``"user-43"``, an integer ``7`` becomes ``8``). Keys, words, booleans, floats, dates, times,
versions and addresses are left alone, so the variants still parse as the original does.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

VARIANTS = 2  # derived from a single event, besides the event itself
# Strings whose digits carry a format a handler may validate: dates, times, versions, IPs.
_KEEP = re.compile(r"^\d{4}-\d{2}-\d{2}|^\d{1,2}:\d{2}|^v?\d+(\.\d+)+$|^\d+(\.\d+){3}(:\d+)?$")
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


class Probe(NamedTuple):
    events: tuple[bytes, ...]  # invocation i takes events[i % len(events)]
    how: str  # said in the report
    varied: tuple[str, ...]  # the paths changed in the derived variants
    derived: int  # how many of ``events`` were derived (the last ones)


def probe_events(given: tuple[bytes, ...], vary: bool) -> Probe:
    if len(set(given)) > 1:
        return Probe(given, f"{len(given)} events given, taken in turn", (), 0)
    if not vary:
        return Probe(given[:1], "the event, replayed as it is (--no-variants)", (), 0)
    event = json.loads(given[0])
    variants, varied = [], []
    for step in range(1, VARIANTS + 1):
        changed: list[str] = []
        variants.append(vary_event(event, step, "", changed))
        varied = changed
    if not varied:
        return Probe(given[:1], "the event, replayed as it is: it has no number "
                     "to vary, so state derived from the event looks the same in every "
                     "invocation (pass several events with --event)", (), 0)
    encoded = tuple(json.dumps(variant).encode() for variant in variants)
    return Probe((given[0], *encoded),
                 f"the event and {VARIANTS} variants of it, taken in turn (numbers "
                 f"changed at {', '.join(varied)})", tuple(varied), VARIANTS)


def vary_event(value: Any, step: int, where: str, changed: list[str]) -> Any:
    """``value`` with each number changed by ``step``; the paths changed go to ``changed``."""
    if isinstance(value, dict):
        return {key: vary_event(item, step, f"{where}.{key}" if where else str(key), changed)
                for key, item in value.items()}
    if isinstance(value, list):
        return [vary_event(item, step, f"{where}[{index}]", changed)
                for index, item in enumerate(value)]
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        changed.append(where or "the event")
        return value + step
    if isinstance(value, str) and not _KEEP.search(value):
        match = _LAST_NUMBER.search(value)
        if match:
            changed.append(where or "the event")
            digits = match.group(1)
            number = str(int(digits) + step).zfill(len(digits))
            return value[:match.start()] + number + value[match.end():]
    return value
