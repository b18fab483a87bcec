"""The functions both runtimes serve, byte for byte the same module.

It imports ``requests`` at the top, as a typical function imports its SDK: the memory
figures then include what a real handler module costs per process (awslambdaric imports it
once per forked worker; lmi-gevent once). Every handler takes its knobs from the event so
one module serves every scenario.
"""

from __future__ import annotations

import time
from typing import Any

import requests


def noop(event: Any, context: Any) -> dict[str, bool]:
    """Nothing at all: what is measured is the runtime's own cost per invocation."""
    return {"ok": True}


def sleep(event: dict[str, Any], context: Any) -> dict[str, bool]:
    """Wait without using CPU, like a handler waiting on a slow dependency."""
    time.sleep(float(event.get("seconds", 0.05)))
    return {"ok": True}


def fetch(event: dict[str, Any], context: Any) -> dict[str, int]:
    """One HTTP GET with a fresh ``requests`` session, as most handlers call an API."""
    reply = requests.get(event["url"], timeout=float(event.get("timeout", 30)))
    return {"status": reply.status_code, "bytes": len(reply.content)}


def spin(event: dict[str, Any], context: Any) -> dict[str, int]:
    """Pure-Python CPU work with no I/O: ``loops`` iterations of integer arithmetic."""
    total = 0
    for number in range(int(event.get("loops", 100_000))):
        total += number * number % 7
    return {"total": total}


ACTIONS = {"noop": noop, "sleep": sleep, "fetch": fetch, "spin": spin}


def handler(event: dict[str, Any], context: Any) -> Any:
    """Pick one of the above by ``event["action"]``, so one runtime start (which costs
    seconds for awslambdaric at large N) serves every kind of load of a scenario."""
    return ACTIONS[event.get("action", "noop")](event, context)
