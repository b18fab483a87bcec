"""Step 2, the run: the real runtime on the embedded emulator: 1 warm-up invocation, a second
one, 1 alone (timed), N at once, then N at once again (a second invocation for every slot);
what the emulator and the runtime's log saw. What happens only on first use (a client made,
a module imported, a model loaded) shows in the warm-up only; what recurs is steady state."""

from __future__ import annotations

import os
import sys
from typing import Any

from .environment import INIT_TIMEOUT, runtime_environment
from .events import Probe, probe_events
from .options import Options
from .timeouts import is_timeout, timed_out

PHASES = ("warm_up", "second", "alone", "concurrent", "steady")
# The phases after the first invocation: what blocks here blocks in steady state.
STEADY_PHASES = PHASES[1:]
LOG_TAIL = 20  # lines of the runtime's output kept for a crash or a failed start
# The runtime's drain when check stops it: invocations are over by then, unless one holds the
# event loop; then the runtime's stop watch ends it after this plus ~2 s, naming that
# invocation and its stack. STOP_GRACE leaves time for that record before SIGKILL.
DRAIN_TIMEOUT = 1.0
STOP_GRACE = DRAIN_TIMEOUT + 5.0
# Past --timeout, how long the client waits for the emulator's Sandbox.Timedout answer.
ANSWER_SLACK = 10.0


def run_handler(options: Options) -> dict[str, Any]:
    """Start the real runtime on the emulator and run the phases (:data:`PHASES`)."""
    from ..emulator.api import Emulator

    env = runtime_environment(options)
    env.update({"LMI_GEVENT_STALL_THRESHOLD": f"{options.threshold:g}",
                "LMI_GEVENT_DRAIN_TIMEOUT": f"{DRAIN_TIMEOUT:g}",
                # Stall reports are parsed from JSON records; WARN keeps them from being
                # filtered out by a stricter level in the caller's environment.
                "AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "WARN",
                # A process killed by a signal (a segfault in C) writes its Python stack.
                "PYTHONFAULTHANDLER": "1",
                # One process: N at once must overlap by cooperation alone, not because
                # worker processes ran on other cores (the report names K separately).
                "LMI_GEVENT_WORKERS": "1"})
    argv = [sys.executable, "-m", "lmi_gevent", options.handler]
    probe = probe_events(options.events, options.vary)
    with Emulator(concurrency=options.concurrency, timeout=options.timeout) as emulator:
        runtime = emulator.start_runtime(argv, env=env, cwd=options.root)
        try:
            if not _wait_for_polls(emulator, runtime, options.concurrency):
                runtime.stop(grace=0.5)
                return {"started": False, "exit_code": runtime.returncode,
                        "output_tail": runtime.output().splitlines()[-LOG_TAIL:]}
            phases = _run_phases(emulator, runtime, options, probe)
            # SIGTERM drains (or the stop watch ends a held loop); then every record it wrote
            # is collected, and its process group, with whatever it forked, is killed.
            runtime.stop(grace=STOP_GRACE)
            output = runtime.output()
        finally:
            runtime.kill()  # every process of the run, whatever happened above
    all_phases = {name: phases.get(name, _NOT_RUN) for name in PHASES}
    return {"started": True, **_timings(all_phases, options.concurrency),
            "probe": {"how": probe.how, "events": len(probe.events), "derived": probe.derived,
                      "varied": list(probe.varied)},
            "crash": _crash(runtime, phases, output, options.root),
            "failed": [failure for phase in phases.values() for failure in phase["failed"]
                       if not is_timeout(failure)],
            "timed_out": timed_out(output, phases) if not _crashed(phases) else [],
            "stalls": _stalls(output, phases), "shared_state": _shared_state(output),
            "small_pools": _small_pools(output),
            "library_uses": _records_with(output, "libraryUse")}


_NOT_RUN: dict[str, Any] = {"dispatched": {}, "answered": {}, "failed": [], "timed_out": []}


def _run_phases(emulator: Any, runtime: Any, options: Options, probe: Probe
                ) -> dict[str, dict[str, Any]]:
    """1 warm-up, 1 second, 1 alone, N at once, N again; stop after a phase with a timed-out
    invocation (its slot stays taken, so later phases would only measure the wait for it)
    or when the runtime died."""
    phases: dict[str, dict[str, Any]] = {}
    counts = (1, 1, 1, options.concurrency, options.concurrency)
    first = 0  # invocation i takes probe.events[i % len(probe.events)]
    for name, count in zip(PHASES, counts, strict=True):
        picks = [(first + offset) % len(probe.events) for offset in range(count)]
        first += count
        phases[name] = phase = _invoke(emulator, runtime, options, probe, picks)
        if phase["timed_out"] or phase["unanswered"] or phase["crashed"]:
            break
    return phases


def _crashed(phases: dict[str, dict[str, Any]]) -> bool:
    return any(phase.get("crashed") for phase in phases.values())


def _crash(runtime: Any, phases: dict[str, dict[str, Any]], output: str, root: str
           ) -> dict[str, Any] | None:
    """The runtime process died while invocations ran: which ones, how, its last lines, and
    the handler's line where it died when faulthandler wrote the crashing thread's stack."""
    import re
    import signal

    for name, phase in phases.items():
        if not phase.get("crashed"):
            continue
        code = runtime.returncode
        how = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
               and -code in signal.valid_signals() else f"exited with status {code}")
        # faulthandler's Python stack of the crashing thread; 3.14 writes the C stack after it
        # under a heading that also starts "Current thread", so take the last one with frames.
        stacks = [block for block in output.split("Current thread") if 'File "' in block]
        sites = [f"{path}:{line}" for path, line in
                 re.findall(r'File "([^"]+)", line (\d+)', stacks[-1] if stacks else "")
                 if path.startswith(root + os.sep)]
        return {"phase": name, "exit_code": code, "how": how,
                "site": sites[0] if sites else "",
                "request_ids": sorted(rid for rid in phase["dispatched"]
                                      if rid not in phase["answered"]),
                "output_tail": output.splitlines()[-LOG_TAIL:]}
    return None


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


def _invoke(emulator: Any, runtime: Any, options: Options, probe: Probe, picks: list[int]
            ) -> dict[str, Any]:
    """Invoke the events ``picks`` (indices into ``probe.events``) at once; their
    emulator-side timeline."""
    since = emulator.mark(f"check: {len(picks)} invocation(s)")["t"]
    payloads = [probe.events[pick] for pick in picks]
    results, crashed = _invoke_together(emulator, runtime, payloads,
                                        options.timeout + ANSWER_SLACK)
    events = emulator.events(since=since)
    dispatched = {e["request_id"]: e["t"] for e in events if e["kind"] == "dispatch"}
    answered = {e["request_id"]: e["t"] for e in events if e["kind"] == "answer"}
    derived_from = len(probe.events) - probe.derived
    failed = [{**_failure(result), "derived_event": pick >= derived_from}
              for pick, result in zip(picks, results, strict=True)
              if result is not None and (result.status != 200 or result.function_error)]
    return {"dispatched": dispatched, "answered": answered, "failed": failed,
            "timed_out": sorted(e["request_id"] for e in events if e["kind"] == "timeout"),
            "unanswered": 0 if crashed else sum(1 for result in results if result is None),
            "crashed": crashed}


def _invoke_together(emulator: Any, runtime: Any, payloads: list[bytes], timeout: float
                     ) -> tuple[list[Any], bool]:
    """One Invoke API call per payload, all at once; None for a call that got no answer in
    time (an invocation no slot ever polled for: the runtime's loop was held). True with
    them when the runtime died meanwhile: check stops waiting at once (the calls still
    waiting end when the emulator stops)."""
    import threading

    results: list[Any] = [None] * len(payloads)

    def one(index: int) -> None:
        try:
            results[index] = emulator.invoke(payloads[index], timeout=timeout)
        except OSError:  # TimeoutError included
            results[index] = None

    calls = [threading.Thread(target=one, args=(index,), daemon=True)
             for index in range(len(payloads))]
    for call in calls:
        call.start()
    for call in calls:
        while call.is_alive():
            call.join(0.05)
            if runtime.returncode is not None:
                return list(results), True
    return results, False


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
    "Together" is the second round of N (steady state), or the first when it did not run.
    """
    alone = _span(phases["alone"])
    together = _span(phases["steady"]) or _span(phases["concurrent"])
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
    return [{key: str(shared[key]) for key in ("kind", "name", "module", "source", "value",
                                               "site") if key in shared}
            for shared in _records_with(output, "sharedState")]


def _small_pools(output: str) -> list[dict[str, Any]]:
    """The pools the handler sized below the slots (lmi_gevent.integrations.pools), from the runtime's log."""
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
