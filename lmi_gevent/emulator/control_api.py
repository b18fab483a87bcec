"""``/_lmi/...`` on the Invoke API's port: what tests and benchmarks read and steer."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from . import wire
from ._sandbox import Fault, Sandbox
from .connection import Connection

CONTROL_PREFIX = "/_lmi/"
FAULT_ENDPOINTS = ("next", "response", "error", "init_error", "invoke")
POST_ENDPOINTS = ("response", "error", "init_error")


class ControlApi:
    """``/_lmi/...``: what tests and benchmarks read and steer. JSON in, JSON out."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.record = sandbox.record

    def route(self, request: wire.Request, conn: Connection) -> bool:
        name = request.path[len(CONTROL_PREFIX):].strip("/")
        query = {key: values[-1] for key, values in parse_qs(request.query).items()}
        handler = {
            ("GET", "stats"): lambda: self.sandbox.stats(),
            ("GET", "events"): lambda: self._events(query),
            ("GET", "answers"): lambda: list(self.record.answers)[-int(query.get("last", 10)):],
            ("GET", "faults"): lambda: self.sandbox.pending_faults(),
            ("POST", "mark"): lambda: self.sandbox.mark(str(_json_body(request).get("name", ""))),
            ("POST", "faults"): lambda: self._add_fault(_json_body(request)),
            ("DELETE", "faults"): self._clear_faults,
            ("POST", "reset-stats"): self._reset_stats,
        }.get((request.method, name))
        if handler is None:
            return self._answer(conn, 404, {"errorType": "NotFound", "errorMessage": f"no control call {name!r}"})
        try:
            return self._answer(conn, 200, handler())
        except (ValueError, KeyError, TypeError) as exc:
            return self._answer(conn, 400, {"errorType": "BadControlRequest", "errorMessage": str(exc)})

    def _answer(self, conn: Connection, status: int, document: Any) -> bool:
        self.record.status("control", status)
        conn.send_json(status, document)
        return True

    def _clear_faults(self) -> dict[str, Any]:
        self.sandbox.clear_faults()
        return {}

    def _reset_stats(self) -> dict[str, Any]:
        self.record.reset()
        return {}

    def _events(self, query: dict[str, str]) -> list[dict[str, Any]]:
        since = float(query.get("since", "-inf"))
        kind = query.get("kind")
        return [e for e in self.record.events if e["t"] > since and (kind is None or e["kind"] == kind)]

    def _add_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        endpoint = spec.get("endpoint")
        if endpoint not in FAULT_ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(FAULT_ENDPOINTS)}; got {endpoint!r}")
        actions = [name for name in ("reset", "close") if spec.get(name)]
        status = spec.get("status")
        if status is not None:
            if not (isinstance(status, int) and 100 <= status <= 599):
                raise ValueError(f"status must be an HTTP status (100-599); got {status!r}")
            actions.append("status")
        if len(actions) != 1:
            raise ValueError("a fault needs exactly one of an HTTP status (100-599), reset: true "
                             "or close: true")
        accepted = bool(spec.get("accepted", False))
        if accepted and (endpoint not in POST_ENDPOINTS or actions[0] == "status"):
            raise ValueError(f"accepted: true needs reset or close on one of {', '.join(POST_ENDPOINTS)}")
        rate = spec.get("rate")
        if rate is not None and not (isinstance(rate, (int, float)) and 0 < rate <= 1):
            raise ValueError(f"rate must be a probability in (0, 1]; got {rate!r}")
        count = spec.get("count", 1 if rate is None else None)
        if count is not None and int(count) < 1:
            raise ValueError("count must be at least 1 (or null: no limit)")
        if "seed" in spec:
            self.sandbox.seed_faults(int(spec["seed"]))
        self.sandbox.add_fault(endpoint, Fault(actions[0], status, None if count is None else int(count),
                                               None if rate is None else float(rate), accepted))
        return self.sandbox.pending_faults()


def _json_body(request: wire.Request) -> dict[str, Any]:
    document = json.loads(request.body or b"{}")
    if not isinstance(document, dict):
        raise ValueError("the body must be a JSON object")
    return document
