"""``python -m bench``: lmi-gevent against awslambdaric, side by side, in one run.

    python -m bench                 # the full plan (~15 min), writes docs/bench.md and bench.png
    python -m bench --quick         # under a minute: checks that the bench works
    python -m bench --out DIR       # write the report somewhere else
    python -m bench soak            # 100,000 invocations at N=64, platform faults off and on
    python -m bench coldstart       # process start to first answer and to all N polls open

Needs the ``bench`` extra (awslambdaric, psutil, matplotlib, requests). Every process it
starts is stopped before it exits, on errors and on SIGTERM/SIGINT too.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import signal
import sys
import time
from typing import Any

from .runtimes import AWSLAMBDARIC, LMI_GEVENT
from .scenarios import FULL, QUICK, Bench, Plan
from .services import PROJECT_ROOT, LoadGenerator, Upstream

SCENARIOS = ("sequential", "concurrent", "cpu", "app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a short plan for CI smoke runs (figures are not meaningful)")
    parser.add_argument("--out", default=os.path.join(PROJECT_ROOT, "docs"),
                        help="directory for bench.md and bench.png (default: docs/)")
    parser.add_argument("--only", choices=SCENARIOS, action="append",
                        help="run only this scenario (repeatable); default: all")
    parser.add_argument("--rounds", type=int, help="override the plan's number of rounds")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures as JSON")
    parser.add_argument("--from-json", metavar="FILE",
                        help="measure nothing: rewrite the report from a --json file")
    return parser


def machine() -> dict[str, Any]:
    import gevent
    import psutil

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": psutil.virtual_memory().total / 2**30,
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "lmi_version": LMI_GEVENT.version(),
        "aws_version": AWSLAMBDARIC.version(),
        "gevent_version": gevent.__version__,
    }


def commit() -> str:
    """The checkout measured: commit, and whether the runtime had uncommitted changes."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "lmi_gevent")
    except (OSError, subprocess.SubprocessError):
        return "unknown commit"
    return f"{head}{' + uncommitted changes' if dirty else ''}" if head else "unknown commit"


def _stop_on_sigterm() -> None:
    # Turn SIGTERM into an exception so that every ``with`` and ``finally`` below runs
    # and stops the emulator, the runtimes, the load generator and the upstream server.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def log(line: str) -> None:
    print(line, flush=True)


def run(plan: Plan, only: list[str] | None) -> Bench:
    wanted = set(only or SCENARIOS)
    with LoadGenerator() as load, Upstream() as upstream:
        bench = Bench(plan, load, upstream, log)
        if "sequential" in wanted:
            bench.sequential_noop()
        if "concurrent" in wanted:
            bench.concurrency_levels()
        if "cpu" in wanted:
            bench.cpu_bound()
        if "app" in wanted:
            bench.app_memory()
    return bench


def rewrite_report(source: str, out_dir: str) -> int:
    from . import report
    from .scenarios import results_from_dict

    with open(source, encoding="utf-8") as handle:
        document = json.load(handle)
    md, png = report.write(results_from_dict(document["results"]), document["meta"], out_dir)
    log(f"wrote {md} and {png} from {source}")
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["soak"]:
        from . import soak

        return soak.main(arguments[1:])
    if arguments[:1] == ["coldstart"]:
        from . import coldstart

        return coldstart.main(arguments[1:])
    args = build_parser().parse_args(argv)
    if args.from_json:
        return rewrite_report(args.from_json, args.out)
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    _stop_on_sigterm()
    meta = machine()
    meta["command"] = "python -m bench" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))
    meta["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta["load_start"] = os.getloadavg()[0]
    meta["commit"] = commit()
    started = time.monotonic()
    log(f"bench plan {plan.name}: {meta['cores']} cores, Python {meta['python']}, "
        f"lmi-gevent {meta['lmi_version']}, awslambdaric {meta['aws_version']}")
    try:
        bench = run(plan, args.only)
    except KeyboardInterrupt as stop:
        log(f"interrupted ({stop or 'Ctrl-C'}): every process the bench started is stopped")
        return 130
    meta["elapsed"] = time.monotonic() - started
    meta["load_end"] = os.getloadavg()[0]

    from . import report  # matplotlib is imported only now

    md, png = report.write(bench.results, meta, args.out)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            document = {"meta": meta, "results": dataclasses.asdict(bench.results)}
            json.dump(document, handle, indent=1)
    for target in report.targets(bench.results):
        verdict = {True: " (met)", False: " (MISSED)", None: ""}[target.met]
        log(f"target: {target.goal}: {target.measured}{verdict}")
    log(f"wrote {md} and {png} in {meta['elapsed']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
