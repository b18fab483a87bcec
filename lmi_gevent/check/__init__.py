"""``lmi-gevent check HANDLER``: will this handler really run concurrently under lmi-gevent?

A migration doctor, in three steps:

1. **Import** the handler the way the runtime does (``gevent.monkey.patch_all()`` first, then
   the handler, then lmi-gevent's driver cooperation), in a subprocess whose working
   directory and ``LAMBDA_TASK_ROOT`` are the task root. Report the init error if any, the
   modules that were imported before patching (a ``sitecustomize``/``.pth`` did it), and the
   loaded extension modules known to block the whole process, with the fix for each.
2. **Run** the real runtime (``python -m lmi_gevent HANDLER`` with
   ``AWS_LAMBDA_MAX_CONCURRENCY=N`` and a low ``LMI_GEVENT_STALL_THRESHOLD``) against the
   embedded emulator: a warm-up invocation, a second one, one alone, then N at once twice,
   with distinct events (:mod:`.events`).
3. **Judge**: the invocations overlapped when the N together took clearly less than N times
   one alone (the emulator's ``max_in_flight`` cannot tell: invocations stuck behind a
   blocked hub still count as in flight); a stall that recurs after the warm-up is a
   blocker, one on first use only is a warm-up warning; process state rewritten by
   invocations is a blocker; a runtime that died is a crash. Exit 0 when nothing blocks, 1
   when something does, 2 for bad usage.

One module per step: :mod:`.risks` (the table of blocking libraries), :mod:`.probe` (step 1),
:mod:`.run` (step 2), :mod:`.findings` (step 3), :mod:`.report` (the text report), and
:mod:`.options` (the command line). The runtime-side watch that step 2 reads back lives in
:mod:`lmi_gevent.diagnostics.shared_state`. This package is imported by ``lmi_gevent.cli`` only for the
``check`` subcommand, and runs as ``python -m lmi_gevent.check`` for step 1, so no module in
it imports anything heavy at its top level: the probe must see the interpreter as the
runtime's bootstrap does.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .findings import Finding, import_findings, overlap_verdict, run_findings, unused_risks
from .options import PROG, Options, UsageError, ArgparseExit, parse_options
from .probe import import_handler
from .report import render_text
from .risks import MODULE_RISKS, ModuleRisk, loaded_risks
from .run import run_handler

__all__ = ["MODULE_RISKS", "PROG", "Finding", "ModuleRisk", "Options", "UsageError",
           "loaded_risks", "main", "overlap_verdict", "parse_options", "render_text",
           "run_check"]


def main(argv: list[str]) -> int:
    """``lmi-gevent check ARGS``: 0 nothing blocks, 1 a blocker was found, 2 bad usage."""
    try:
        options = parse_options(argv)
    except ArgparseExit as stop:
        return stop.code
    except UsageError as problem:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    report = run_check(options)
    if options.json:
        import json
        print(json.dumps(report, indent=2))
    else:
        print(render_text(report), end="")
    return 1 if report["blockers"] else 0


def deployed_workers(concurrency: int) -> dict[str, Any]:
    """The worker processes the runtime would start here with this environment and N."""
    from .. import config as settings
    from ..workers.supervisor import slot_shares

    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API="127.0.0.1:9001",
               AWS_LAMBDA_MAX_CONCURRENCY=str(concurrency))
    loaded, problems = settings.load(env)
    if problems:
        return {"count": None, "setting": env.get("LMI_GEVENT_WORKERS"),
                "problem": str(problems[0]), "checked_with": 1}
    count = loaded.worker_count()
    return {"count": count, "setting": str(loaded.workers),
            "slots_per_worker": slot_shares(concurrency, count),
            "checked_with": 1}  # check runs one process: no finding depends on the count


def versions() -> dict[str, str]:
    """The Python and gevent the runtime ran on (check starts it with this interpreter)."""
    import platform
    from importlib import metadata

    try:
        gevent = metadata.version("gevent")
    except metadata.PackageNotFoundError:
        gevent = "not installed"
    return {"python": platform.python_version(), "implementation":
            platform.python_implementation(), "gevent": gevent}


def run_check(options: Options) -> dict[str, Any]:
    """Steps 1-3; the report as a JSON-ready dict."""
    findings: list[Finding] = []
    imported = import_handler(options)
    run = None
    if imported.get("error") is None:
        run = run_handler(options)
        findings += run_findings(run, options)
    findings = import_findings(imported, run) + findings
    findings.sort(key=lambda finding: finding.severity != "blocker")
    blockers = sum(1 for finding in findings if finding.severity == "blocker")
    imported["unused_risks"] = unused_risks(imported, run)
    return {
        "verdict": "ready" if blockers == 0 else "not-ready",
        "handler": options.handler, "root": options.root, "event": options.event_name,
        "concurrency": options.concurrency, "stall_threshold": options.threshold,
        "versions": versions(), "workers": deployed_workers(options.concurrency),
        "ok": blockers == 0, "blockers": blockers, "warnings": len(findings) - blockers,
        "findings": [finding.as_dict() for finding in findings],
        "import": imported, "run": run,
    }
