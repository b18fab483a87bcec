"""Step 3, the judgement: what the import and the run saw, as findings (blockers, warnings),
each with its fix."""

from __future__ import annotations

from typing import Any

from .finding import Finding, stack_lines
from .options import Options
from .timeouts import timeout_finding

# Below this, one invocation is too short for timing to show whether N of them overlapped.
MIN_MEASURABLE_SECONDS = 0.02



def import_findings(imported: dict[str, Any]) -> list[Finding]:
    findings = []
    error = imported.get("error")
    if error is not None:
        findings.append(Finding(
            "blocker", "init-error",
            f"the handler failed to initialise: {error['errorType']}: {error['errorMessage']}",
            ("fix the setting named above" if error["errorType"] == "Runtime.ConfigurationError"
             else "fix the error above: Lambda would report it as an init error and run "
                  "no invocation"),
            tuple(line.rstrip() for entry in error.get("stackTrace") or []
                  for line in str(entry).splitlines())))
    early = imported.get("imported_before_patching") or []
    if early:
        findings.append(Finding(
            "warning", "early-import",
            f"imported before gevent could patch them: {', '.join(early)}; they may block "
            "every invocation at once",
            "remove them from sitecustomize, .pth files and PYTHONSTARTUP; import them in "
            "the handler module instead"))
    for risk in imported.get("non_cooperative") or []:
        findings.append(Finding("warning", "non-cooperative",
                                f"{risk['library']} is loaded: {risk['why']}", risk["fix"]))
    return findings



def run_findings(run: dict[str, Any], options: Options) -> list[Finding]:
    if not run["started"]:
        return [Finding("blocker", "init-error",
                        f"the runtime exited with status {run['exit_code']} before serving "
                        "(it imported fine on its own: check the environment it needs)",
                        "see the runtime's last lines below", tuple(run["output_tail"]))]
    total = sum(run["invocations"].values())
    findings = [_failed_finding(failure, count, total)
                for failure, count in _grouped(run["failed"])]
    findings += [timeout_finding(entry, options) for entry in run.get("timed_out", [])]
    overlapped = overlap_verdict(run, options.concurrency)
    findings += [_stall_finding(stall, options, overlapped) for stall in run["stalls"]]
    if overlapped is False:
        findings.append(_no_overlap_finding(run, options.concurrency))
    findings += [_shared_state_finding(shared) for shared in run.get("shared_state", [])]
    findings += [_small_pool_finding(pool) for pool in run.get("small_pools", [])]
    return findings


def _small_pool_finding(pool: dict[str, Any]) -> Finding:
    return Finding(
        "warning", "small-pool",
        f"the handler sets {pool.get('library')} {pool.get('setting')}={pool.get('size')}, "
        f"below the {pool.get('slots')} invocations one process serves at once: a client "
        "shared by every invocation then opens a connection for each invocation past the "
        "pool and discards it afterwards (\"Connection pool is full\"), a new TLS handshake "
        "each time against a real endpoint",
        f"leave {pool.get('setting')} unset (lmi-gevent sizes it to the slots, "
        "LMI_GEVENT_POOL_SIZING) or make it at least the slots")


def _shared_state_finding(shared: dict[str, str]) -> Finding:
    if shared["kind"] == "value":
        return _left_value_finding(shared)
    what = {"global": f"rebind the module global `{shared['name']}` of {shared['module']}",
            "cwd": "change the working directory (os.chdir)",
            "env": f"set the environment variable `{shared['name']}`"}.get(shared["kind"],
                                                                         shared["name"])
    return Finding(
        "warning", f"shared-{shared['kind']}",
        f"invocations {what}: in concurrent mode every invocation of a worker process "
        "shares it, so the invocations running beside one another overwrite each other's "
        "value (under the official client each slot was a process with its own copy)",
        "keep per-invocation values in local variables, the event or `contextvars`; pass "
        "paths and settings explicitly instead of through the working directory or the "
        "environment; a module-level cache or client shared on purpose is fine")


def _left_value_finding(shared: dict[str, str]) -> Finding:
    return Finding(
        "warning", "shared-value",
        f"invocations leave {shared.get('source', 'their own values')} in "
        f"`{shared['name']}` (found {shared.get('value', '?')} there after one ended): that "
        f"object, reachable from {shared['module']}'s globals, is shared by every invocation "
        "in concurrent mode, so the invocations running at once read and overwrite each "
        "other's (under the official client each slot was a process with its own copy)",
        "pass per-invocation values along as arguments or keep them in local variables; "
        "where a framework object must hold them, keep them in a `contextvars.ContextVar` "
        "(each invocation has its own context); a cache of values computed for any "
        "invocation is fine")


def _grouped(failures: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Identical failures once each, with how many times they happened, in order."""
    counts: dict[tuple[str, str], list[Any]] = {}
    for failure in failures:
        key = (failure["errorType"], failure["errorMessage"])
        counts.setdefault(key, [failure, 0])[1] += 1
    return [(failure, count) for failure, count in counts.values()]


def overlap_verdict(run: dict[str, Any], concurrency: int) -> bool | None:
    """True/False: did N invocations overlap? None: cannot tell (too quick, or no timings).

    The line is half-way between perfect overlap (N together take as long as one) and none
    (N times as long): together < (N + 1) / 2 times alone.
    """
    alone, together = run.get("alone_seconds"), run.get("concurrent_seconds")
    if alone is None or together is None or alone < MIN_MEASURABLE_SECONDS:
        return None
    return together < alone * (concurrency + 1) / 2


def _failed_finding(failure: dict[str, Any], count: int, total: int) -> Finding:
    return Finding("blocker", "failed-invocation",
                   f"{count} of {total} invocations failed: {failure['errorType']}: "
                   f"{failure['errorMessage']}",
                   "the sample event must succeed for the check to mean anything; pass a "
                   "realistic one with --event")


def _stall_finding(stall: dict[str, Any], options: Options, overlapped: bool | None
                   ) -> Finding:
    where = "where it blocked" if stall.get("sampled") else "where it next yielded"
    first = ""
    if stall["phase"] == "warm_up":
        # The detector logs a call site once, so repeats stay invisible here; only the
        # overlap of the later invocations says whether it happens every time.
        first = (" during the warm-up invocation only, as the later ones overlapped (a "
                 "one-time set-up? do it at module level, during init)"
                 if overlapped else " (first seen in the warm-up invocation; the detector "
                 "logs each call site once)")
    return Finding(
        "blocker", "stall",
        f"invocation {stall['request_id']} blocked the event loop for {stall['seconds']:.3f}s "
        f"at {stall['site']}{first}: every other invocation in the process waited",
        "use a library that cooperates with gevent, or run the call in gevent's threadpool "
        "(`gevent.get_hub().threadpool.apply(fn, args)`); stalls under "
        f"--threshold {options.threshold:g}s are not reported",
        (f"stack {where} (most recent call last):", *stack_lines(stall["stack"])))


def _no_overlap_finding(run: dict[str, Any], concurrency: int) -> Finding:
    return Finding(
        "blocker", "no-overlap",
        f"the {concurrency} invocations did not overlap: together they took "
        f"{run['concurrent_seconds']:.3f}s, {run['concurrent_seconds'] / run['alone_seconds']:.1f}"
        f" times one alone ({run['alone_seconds']:.3f}s); effective concurrency "
        f"{run['effective_concurrency']:g} of {concurrency}",
        "something holds the event loop for most of each invocation: see the stalls and the "
        "non-cooperative modules reported here")
