"""Invocations that did not finish within ``--timeout``: where they were stuck, as a finding.

The emulator answers such an invocation with ``Sandbox.Timedout`` at ``--timeout``, but the
runtime keeps running it (as on Managed Instances). When it holds the event loop — a C call
that never returns — the runtime's stall detector writes a record while the block lasts,
and its stop watch writes one more when ``check`` stops the runtime by force: those records
say which invocation held the loop, for how long, and the stack. An invocation that timed
out without holding the loop was waiting on something that never answered.
"""

from __future__ import annotations

import json
from typing import Any

from .finding import Finding, stack_lines
from .options import Options

TIMEOUT_ERROR = "Sandbox.Timedout"


def is_timeout(failure: dict[str, Any]) -> bool:
    return failure.get("errorType") == TIMEOUT_ERROR


def timed_out(output: str, phases: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per invocation that hit ``--timeout``, with what the runtime said about it."""
    held = _records_by_request(output)
    found = []
    for phase_name, phase in phases.items():
        for request_id in phase.get("timed_out", []):
            record = held.get(request_id, {})
            found.append({"request_id": request_id, "phase": phase_name,
                          "held_seconds": record.get("seconds"), "site": record.get("site"),
                          "stack": record.get("stack") or [],
                          "forced_exit": bool(record.get("forced_exit"))})
        if phase.get("unanswered"):
            found.append({"request_id": None, "phase": phase_name,
                          "never_dispatched": phase["unanswered"], "held_seconds": None,
                          "site": None, "stack": [], "forced_exit": False})
    return found


def _records_by_request(output: str) -> dict[str, dict[str, Any]]:
    """The latest wedge or stop record about each request id that held the event loop."""
    latest: dict[str, dict[str, Any]] = {}
    for line in output.splitlines():
        if not line.startswith("{") or ('"wedge"' not in line and '"stop"' not in line):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("logger") != "lmi_gevent":
            continue
        wedge, stop = record.get("wedge"), record.get("stop")
        if isinstance(wedge, dict) and wedge.get("requestId"):
            seen = latest.setdefault(wedge["requestId"], {})
            seen.update({key: wedge.get(key) for key in ("seconds", "site", "stack")})
        elif isinstance(stop, dict) and stop.get("holder") and "unanswered" in stop:
            seen = latest.setdefault(stop["holder"], {})
            seen.update({key: stop.get(key) for key in ("seconds", "site", "stack")})
            seen["forced_exit"] = True
    return latest


def timeout_finding(entry: dict[str, Any], options: Options) -> Finding:
    limit = f"--timeout {options.timeout:g}s"
    if entry.get("never_dispatched"):
        return Finding(
            "blocker", "timeout",
            f"{entry['never_dispatched']} invocation(s) of the {entry['phase']} phase were "
            f"never taken by the runtime within {limit}: no slot was free to poll for them",
            "see the other timeout findings: the slots were held by invocations that never "
            "finished")
    if entry["site"]:
        ended = (" and still held it when check stopped the runtime"
                 if entry["forced_exit"] else "")
        return Finding(
            "blocker", "timeout",
            f"invocation {entry['request_id']} did not finish within {limit}: it held the "
            f"event loop for {entry['held_seconds']:.1f}s at {entry['site']}{ended}; no other "
            "invocation in the process could run, answer or time out meanwhile",
            "the call there never yields to gevent (a blocking C call, a read on a pipe or a "
            "device, a lock taken in C): use a cooperating library, give the call a timeout, "
            "or run it in gevent's threadpool (`gevent.get_hub().threadpool.apply(fn, args)`)",
            ("stack where it was stuck (most recent call last):",
             *stack_lines(entry["stack"])))
    return Finding(
        "blocker", "timeout",
        f"invocation {entry['request_id']} did not finish within {limit}, without holding "
        "the event loop: it waits on something that never answered",
        "check what the handler waits on with the sample event (--event), or pass a longer "
        "--timeout if it is just slow")
