"""Step 3, the judgement: what the import and the run saw, as findings (blockers, warnings),
each with its fix."""

from __future__ import annotations

from typing import Any

from .finding import Finding, stack_lines
from .options import Options
from .timeouts import timeout_finding

# Below this, one invocation is too short for timing to show whether N of them overlapped.
MIN_MEASURABLE_SECONDS = 0.02



def import_findings(imported: dict[str, Any], run: dict[str, Any] | None = None
                    ) -> list[Finding]:
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
    uses = {use.get("module"): use for use in (run or {}).get("library_uses", [])}
    for risk in imported.get("non_cooperative") or []:
        use = uses.get(risk["module"])
        if risk.get("on_use") and use is None and not risk.get("used_at_import"):
            continue  # imported (a tracer patching it), never used: no risk
        used = f" and used (at {use['site']})" if use else ""
        findings.append(Finding("warning", "non-cooperative",
                                f"{risk['library']} is loaded{used}: {risk['why']}",
                                risk["fix"], site=use["site"] if use else ""))
    return findings


def unused_risks(imported: dict[str, Any], run: dict[str, Any] | None) -> list[str]:
    """Modules of libraries that block only when used, loaded but never used."""
    used = {use.get("module") for use in (run or {}).get("library_uses", [])}
    return [risk["module"] for risk in imported.get("non_cooperative") or []
            if risk.get("on_use") and not risk.get("used_at_import")
            and risk["module"] not in used]


def run_findings(run: dict[str, Any], options: Options) -> list[Finding]:
    if not run["started"]:
        return [Finding("blocker", "init-error",
                        f"the runtime exited with status {run['exit_code']} before serving "
                        "(it imported fine on its own: check the environment it needs)",
                        "see the runtime's last lines below", tuple(run["output_tail"]))]
    findings = [crash_finding(run["crash"])] if run.get("crash") else []
    total = sum(run["invocations"].values())
    findings += [_failed_finding(failure, count, total)
                 for failure, count in _grouped(run["failed"])]
    findings += [timeout_finding(entry, options) for entry in run.get("timed_out", [])]
    overlapped = overlap_verdict(run, options.concurrency)
    findings += [_stall_finding(site, stalls, options)
                 for site, stalls in _stalls_by_site(run["stalls"]).items()]
    if overlapped is False:
        findings.append(_no_overlap_finding(run, options.concurrency))
    findings += [_shared_state_finding(shared) for shared in run.get("shared_state", [])]
    findings += [_small_pool_finding(pool) for pool in run.get("small_pools", [])]
    return findings


def crash_finding(crash: dict[str, Any]) -> Finding:
    who = (f"invocation(s) {', '.join(crash['request_ids'])}" if crash["request_ids"]
           else "no invocation in flight")
    return Finding(
        "blocker", "crash",
        f"the runtime process died during the {crash['phase']} phase ({crash['how']}) "
        f"while running {who}: on Managed Instances every invocation in that process fails "
        "with it, not only the one that crashed",
        "find what ended the process in the runtime's last lines (a segfault in a C "
        "extension, os._exit, sys.exit from a thread); raise an exception instead of exiting",
        ("the runtime's last lines:", *(crash["output_tail"] or ["(none: it wrote nothing)"])),
        site=crash.get("site", ""))


def _stalls_by_site(stalls: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_site: dict[str, list[dict[str, Any]]] = {}
    for stall in stalls:
        by_site.setdefault(str(stall.get("site")), []).append(stall)
    return by_site


def _stall_finding(site: str, stalls: list[dict[str, Any]], options: Options) -> Finding:
    """A blocker when the site blocks in steady state; a warm-up warning when only the first
    invocation blocked there (a client made, a module imported, a model loaded)."""
    from .run import STEADY_PHASES

    steady = [stall for stall in stalls if stall["phase"] in STEADY_PHASES]
    first = stalls[0]
    sampled = next((stall for stall in stalls if stall.get("sampled")), None)
    shown = sampled or first
    evidence = (_where(shown), *stack_lines(shown["stack"]))
    if not steady:
        seconds = sum(stall["seconds"] for stall in stalls)
        return Finding(
            "warning", "warm-up",
            f"invocation {first['request_id']} blocked the event loop for {seconds:.3f}s "
            f"at {site} on first use only (the later invocations did not block there): a "
            "one-time cost in each process, paid by the invocations running beside it",
            "create the client (or do the import, load the model) at module level, so that "
            "init pays it before any invocation runs; or accept the one-time stall",
            evidence, site=site)
    longest = max(stall["seconds"] for stall in steady)
    return Finding(
        "blocker", "stall",
        f"invocation {steady[0]['request_id']} blocked the event loop for {longest:.3f}s at "
        f"{site}, and it blocks there again after warm-up ({len(steady)} time(s) after the "
        "first invocation): every other invocation in the process waits each time",
        ("use a library that cooperates with gevent, or run the call in gevent's threadpool "
         "(`gevent.get_hub().threadpool.apply(fn, args)`)" if sampled else
         "see the stack: the time was spent in the code the invocation ran before that "
         "line, since it last yielded; make it yield, or run it in gevent's threadpool")
        + f"; stalls under --threshold {options.threshold:g}s are not reported",
        evidence, site=site)


def _where(stall: dict[str, Any]) -> str:
    if stall.get("sampled"):
        return "stack where it blocked (most recent call last):"
    return ("stack where it next yielded, after the block (most recent call last); the "
            "time went to what ran before this line:")


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
    if shared["kind"] == "container":
        return Finding(
            "blocker", "shared-container",
            f"the module-level `{shared['name']}` of {shared['module']} grows with "
            f"invocations that replay events it has seen ({shared.get('value')}): it "
            "accumulates per-invocation data that every invocation of the process shares "
            "(and reads), and it grows without bound",
            "keep per-invocation data in local variables or a `contextvars.ContextVar`; a "
            "cache should be keyed by what it caches, and bounded")
    what = {"global": f"rebind the module global `{shared['name']}` of {shared['module']}"
                      + (f" (at {shared['site']})" if shared.get("site") else ""),
            "cwd": "change the working directory (os.chdir)",
            "env": f"set the environment variable `{shared['name']}`"}.get(shared["kind"],
                                                                         shared["name"])
    seen = f" ({shared['value']})" if shared.get("value") else ""
    return Finding(
        "blocker", f"shared-{shared['kind']}",
        f"invocations {what}{seen}: in concurrent mode every invocation of a worker process "
        "shares it, so the invocations running beside one another overwrite each other's "
        "value and answer with another's (under the official client each slot was a "
        "process with its own copy)",
        "keep per-invocation values in local variables, the event or `contextvars`; pass "
        "paths and settings explicitly instead of through the working directory or the "
        "environment; a module-level cache or client shared on purpose is fine",
        site=shared.get("site", "").split(", ")[0])


def _left_value_finding(shared: dict[str, str]) -> Finding:
    return Finding(
        "blocker", "shared-value",
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
    counts: dict[tuple[str, str, bool], list[Any]] = {}
    for failure in failures:
        derived = bool(failure.get("derived_event"))  # each variant fails its own way
        key = (failure["errorType"], "" if derived else failure["errorMessage"], derived)
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
    if failure.get("derived_event"):
        return Finding("warning", "variant-failed",
                       f"{count} of {total} invocations with a variant check derived from the "
                       f"event failed, as: {failure['errorType']}: {failure['errorMessage']}",
                       "the handler rejects the changed numbers: pass several real events "
                       "with --event (or --no-variants, which cannot see state derived from "
                       "the event)")
    return Finding("blocker", "failed-invocation",
                   f"{count} of {total} invocations failed: {failure['errorType']}: "
                   f"{failure['errorMessage']}",
                   "the sample event must succeed for the check to mean anything; pass a "
                   "realistic one with --event")


def _no_overlap_finding(run: dict[str, Any], concurrency: int) -> Finding:
    return Finding(
        "blocker", "no-overlap",
        f"the {concurrency} invocations did not overlap: together they took "
        f"{run['concurrent_seconds']:.3f}s, {run['concurrent_seconds'] / run['alone_seconds']:.1f}"
        f" times one alone ({run['alone_seconds']:.3f}s); effective concurrency "
        f"{run['effective_concurrency']:g} of {concurrency}",
        "something holds the event loop for most of each invocation: see the stalls and the "
        "non-cooperative modules reported here")
