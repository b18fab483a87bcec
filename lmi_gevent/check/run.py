"""Step 2, the run: the real runtime on the embedded emulator, 1 warm-up invocation, 1 alone,
then N at once; what the emulator and the runtime's log saw."""

from __future__ import annotations

import os
import sys
from typing import Any

from ..shared_state import GLOBALS_ENV
from .options import Options
from .probe import INIT_TIMEOUT

PHASES = ("warm_up", "alone", "concurrent")


def runtime_environment(options: Options) -> dict[str, str]:
    """What the runtime would see on Managed Instances (as far as the handler cares)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env.update({
        "LAMBDA_TASK_ROOT": options.root, "_HANDLER": options.handler,
        "AWS_LAMBDA_MAX_CONCURRENCY": str(options.concurrency),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "lambda-managed-instances",
        "PYTHONUNBUFFERED": "1",
        GLOBALS_ENV: "1",
        # An uninstalled checkout must still find lmi_gevent in the subprocess.
        "PYTHONPATH": os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p),
    })
    return env



def run_handler(options: Options) -> dict[str, Any]:
    """Start the real runtime on the emulator and invoke: 1 warm-up, 1 alone, N at once."""
    from ..emulator.api import Emulator

    env = runtime_environment(options)
    env.update({"LMI_GEVENT_STALL_THRESHOLD": f"{options.threshold:g}",
                # Stall reports are parsed from JSON records; WARN keeps them from being
                # filtered out by a stricter level in the caller's environment.
                "AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "WARN",
                # One process: N at once must overlap by cooperation alone, not because
                # worker processes ran on other cores (the report names K separately).
                "LMI_GEVENT_WORKERS": "1"})
    argv = [sys.executable, "-m", "lmi_gevent", options.handler]
    with Emulator(concurrency=options.concurrency, timeout=options.timeout) as emulator:
        runtime = emulator.start_runtime(argv, env=env, cwd=options.root)
        if not _wait_for_polls(emulator, runtime, options.concurrency):
            runtime.stop(grace=0.5)
            return {"started": False, "exit_code": runtime.returncode,
                    "output_tail": runtime.output().splitlines()[-20:]}
        phases = {name: _invoke(emulator, options, count)
                  for name, count in zip(PHASES, (1, 1, options.concurrency), strict=True)}
        runtime.stop(grace=5.0)  # SIGTERM drains; then every record it wrote is collected
        output = runtime.output()
    return {"started": True, **_timings(phases, options.concurrency),
            "failed": [failure for phase in phases.values() for failure in phase["failed"]],
            "stalls": _stalls(output, phases), "shared_state": _shared_state(output),
            "small_pools": _small_pools(output)}


def _wait_for_polls(emulator: Any, runtime: Any, concurrency: int) -> bool:
    """True once every slot polls; False when the runtime exits (init error) or hangs."""
    import time

    deadline = time.monotonic() + INIT_TIMEOUT
    while time.monotonic() < deadline:
        stats = emulator.stats()
        if stats["open_polls"] >= concurrency:
            return True
        if runtime.returncode is not None or stats.get("init_error"):
            return False
        time.sleep(0.02)
    return False


def _invoke(emulator: Any, options: Options, count: int) -> dict[str, Any]:
    """Invoke ``count`` copies of the event at once; their emulator-side timeline."""
    since = emulator.mark(f"check: {count} invocation(s)")["t"]
    results = emulator.invoke_many([options.event] * count, parallel=count,
                                   timeout=options.timeout + 30)
    events = emulator.events(since=since)
    dispatched = {e["request_id"]: e["t"] for e in events if e["kind"] == "dispatch"}
    answered = {e["request_id"]: e["t"] for e in events if e["kind"] == "answer"}
    failed = [_failure(result) for result in results
              if result.status != 200 or result.function_error]
    return {"dispatched": dispatched, "answered": answered, "failed": failed}


def _failure(result: Any) -> dict[str, Any]:
    import json

    try:
        body = json.loads(result.body)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return {"status": result.status,
            "errorType": body.get("errorType") or result.function_error or "Unknown",
            "errorMessage": str(body.get("errorMessage") or result.body[:300].decode(
                "utf-8", "replace"))}


def _timings(phases: dict[str, dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """One invocation alone vs N at once, on the emulator's clock.

    N invocations that overlap take about as long as one; N that run one after another
    (the hub was blocked) take about N times as long. ``effective_concurrency`` is N times
    the time alone over the time together: near N when they overlapped, near 1 when not.
    """
    alone = _span(phases["alone"])
    together = _span(phases["concurrent"])
    effective = None
    if alone and together:
        effective = round(min(concurrency, concurrency * alone / together), 2)
    return {"invocations": {name: len(phase["dispatched"]) for name, phase in phases.items()},
            "alone_seconds": alone, "concurrent_seconds": together,
            "effective_concurrency": effective,
            "request_ids": {name: sorted(phase["dispatched"]) for name, phase in phases.items()}}


def _span(phase: dict[str, Any]) -> float | None:
    ends = [phase["answered"][rid] for rid in phase["dispatched"] if rid in phase["answered"]]
    if not ends or len(ends) != len(phase["dispatched"]):
        return None  # an invocation never answered (timed out): no meaningful span
    return round(max(ends) - min(phase["dispatched"].values()), 6)


def _stalls(output: str, phases: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The stall detector's records in the runtime's JSON log, with the phase they hit."""
    import json

    phase_of = {rid: name for name, phase in phases.items() for rid in phase["dispatched"]}
    stalls = []
    for line in output.splitlines():
        if not line.startswith("{") or '"stall"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        stall = record.get("stall")
        if record.get("logger") != "lmi_gevent" or not isinstance(stall, dict):
            continue
        rid = stall.get("requestId")
        stalls.append({"request_id": rid, "phase": phase_of.get(rid, "outside an invocation"),
                       "seconds": stall.get("seconds"), "site": stall.get("site"),
                       "count": stall.get("count"), "sampled": stall.get("sampled"),
                       "stack": stall.get("stack") or []})
    return stalls


def _shared_state(output: str) -> list[dict[str, str]]:
    """The process state GlobalsWatch saw invocations change, from the runtime's JSON log."""
    return [{key: str(shared[key]) for key in ("kind", "name", "module", "source", "value")
             if key in shared} for shared in _records_with(output, "sharedState")]


def _small_pools(output: str) -> list[dict[str, Any]]:
    """The pools the handler sized below the slots (lmi_gevent.pools), from the runtime's log."""
    return _records_with(output, "poolSize")


def _records_with(output: str, key: str) -> list[dict[str, Any]]:
    """The ``key`` objects of lmi-gevent's JSON log records in ``output``."""
    import json

    found = []
    for line in output.splitlines():
        if not line.startswith("{") or f'"{key}"' not in line:
            continue
        try:
            value = json.loads(line).get(key)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found
