"""The human-readable report of ``lmi-gevent check``."""

from __future__ import annotations

from typing import Any

from .findings import overlap_verdict
from .options import PROG


def render_text(report: dict[str, Any]) -> str:
    title = (f"{PROG} {report['handler']}  (task root {report['root']}, event "
             f"{report['event']}, {report['concurrency']} at once, stall threshold "
             f"{report['stall_threshold']:g}s)")
    versions = report["versions"]
    lines = [title, f"ran on {versions['implementation']} {versions['python']}, gevent "
                    f"{versions['gevent']}", ""]
    lines += _import_summary(report["import"])
    lines += _run_summary(report["run"], report["concurrency"])
    lines += _workers_summary(report["workers"])
    lines.append("")
    for finding in report["findings"]:
        lines.append(f"{finding['severity'].upper():8} [{finding['class']}] "
                     f"{finding['message']}")
        lines += [f"         {detail}" for detail in finding["evidence"]]
        if finding["fix"]:
            lines.append(f"         fix: {finding['fix']}")
    if report["findings"]:
        lines.append("")
    verdict = ("OK: nothing blocks concurrent invocations" if report["ok"]
               else "NOT READY: fix the blockers above")
    lines.append(f"{verdict} ({report['blockers']} blocker(s), {report['warnings']} "
                 f"warning(s)).")
    return "\n".join(lines) + "\n"


def _workers_summary(workers: dict[str, Any]) -> list[str]:
    if workers["count"] is None:
        return [f"workers: {workers['problem']}"]
    count, shares = workers["count"], workers["slots_per_worker"]
    return [f"workers: here the runtime would start {count} worker process(es) x "
            f"{'/'.join(map(str, sorted(set(shares), reverse=True)))} slot(s) "
            f"(LMI_GEVENT_WORKERS={workers['setting']}); the run above used one process.",
            "  module globals, caches and clients are per worker process (as they are per "
            "process under awslambdaric): each worker imports the handler and runs its init.",
            "  none of the findings depends on the count: stalls, overlap and shared state are "
            "per process; with K > 1 a crashed worker is replaced and its invocations answered "
            "with an error, the other workers' invocations are not lost."]


def _import_summary(imported: dict[str, Any]) -> list[str]:
    if imported.get("error") is not None:
        return ["import (patched, as the runtime does): FAILED"]
    unused = imported.get("unused_risks") or []
    risky = ", ".join(risk["module"] for risk in imported.get("non_cooperative") or []
                      if risk["module"] not in unused) or "none"
    early = ", ".join(imported.get("imported_before_patching") or []) or "none"
    return [f"import (patched, as the runtime does): ok in {imported['init_seconds']:.3f}s",
            f"  imported before patching: {early}",
            f"  known non-cooperative modules loaded: {risky}",
            *([f"  loaded but never used (harmless until used): {', '.join(unused)}"]
              if unused else []),
            *_hooks_summary(imported.get("hooks"))]


HOOK_NAMES = {"powertools_isolation": ("Powertools state per invocation",
                                       "LMI_GEVENT_POWERTOOLS_ISOLATION", "powertools"),
              "pool_sizing": ("connection pools sized for the slots", "LMI_GEVENT_POOL_SIZING",
                              "pool_sizing"),
              "sentry_integration": ("Sentry's Lambda integration given a bootstrap",
                                     "LMI_GEVENT_SENTRY_INTEGRATION", "sentry")}


def _hooks_summary(hooks: dict[str, Any] | None) -> list[str]:
    """Which isolation hooks are on, and what each adapted when the handler was imported."""
    if not hooks:
        return []
    lines = ["  isolation hooks:"]
    for setting, (title, env, family) in HOOK_NAMES.items():
        if not hooks["settings"].get(setting):
            lines.append(f"    {title}: off ({env}=off)")
            continue
        adapted = [module for module, of in hooks["applied"].items() if of == family]
        lines.append(f"    {title}: on, active for {', '.join(adapted)}" if adapted else
                     f"    {title}: on (the handler imports none of its libraries)")
    return lines


def _run_summary(run: dict[str, Any] | None, concurrency: int) -> list[str]:
    if run is None:
        return ["run: skipped (init failed)"]
    if not run["started"]:
        return ["run: the runtime did not start"]
    probe = [f"  events: {run['probe']['how']}"]
    alone, together = run["alone_seconds"], run["concurrent_seconds"]
    verdict = {True: "overlapped", False: "did NOT overlap",
               None: "too quick to tell whether they overlapped"}[overlap_verdict(run, concurrency)]
    if run.get("timed_out"):
        verdict = "stopped: an invocation did not finish within --timeout"
    if run.get("crash"):
        verdict = f"stopped: the runtime process died ({run['crash']['how']})"
    timing = (f"alone {alone:.3f}s, {concurrency} at once {together:.3f}s, effective "
              f"concurrency {run['effective_concurrency']:g} of {concurrency}"
              if alone is not None and together is not None else
              "no timings (the run stopped before N ran at once)")
    return [f"run (1 warm-up, 1 second, 1 alone, {concurrency} at once, {concurrency} at once "
            f"again): {verdict}",
            *probe, f"  {timing}",
            f"  failed invocations: {len(run['failed'])}, stalls: {len(run['stalls'])}, "
            f"shared process state changed by invocations: {len(run.get('shared_state', []))}"]
