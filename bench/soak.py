"""``python -m bench soak``: lmi-gevent serving a long run of invocations, with the platform's
faults off and then on, counting what became of every invocation and sampling memory.

    python -m bench soak                          # 100,000 invocations at N=64, faults off then on
    python -m bench soak --invocations 5000       # a short one
    python -m bench soak --rate 0.05 --out DIR    # 5 % of every kind of call fails

Each run starts the runtime afresh against its own emulator; the load generator keeps N
callers busy (closed loop) until the count is reached. Counted: answered (the caller got the
handler's answer), lost (the caller got a timeout or no answer, or the emulator timed the
invocation out), duplicated (a second, different answer posted for one invocation) and
repeated (the same answer posted again after a lost connection: refused with 400, harmless).
RSS of the runtime's process tree (with ``LMI_GEVENT_WORKERS=auto``: the supervisor and its
workers) is sampled every few seconds. Writes ``soak.md`` (and ``--json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from lmi_gevent.emulator.api import INVOKE_PATH, PLATFORM_FAULTS, Emulator

from .measure import process_tree
from .runtimes import LMI_GEVENT, environment
from .services import PROJECT_ROOT, LoadGenerator

MIB = 1024 * 1024
# A lost answer shows as the emulator's timeout; long enough that a slow machine never
# produces one by itself.
FUNCTION_TIMEOUT = 30.0
SAMPLE_SECONDS = 2.0
FAULT_SEED = 12
HANDLER = "bench.handlers.handler"


@dataclass
class SoakRun:
    faults: str  # "off", or the rate per kind of call
    invocations: int
    concurrency: int
    seconds: float = 0.0
    answered: int = 0
    lost: int = 0
    duplicated: int = 0
    repeated: int = 0
    faults_applied: int = 0
    caller_errors: int = 0
    runtime_alive: bool = True
    processes: int = 0  # the runtime's process tree: 1, or the supervisor + K workers
    rss_mib: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MiB)

    @property
    def rss_start(self) -> float:
        return self.rss_mib[0][1] if self.rss_mib else 0.0

    @property
    def rss_end(self) -> float:
        return self.rss_mib[-1][1] if self.rss_mib else 0.0


class RssSampler(threading.Thread):
    """Samples one process's RSS every ``SAMPLE_SECONDS`` until stopped."""

    def __init__(self, pid: int, samples: list[tuple[float, float]]) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.samples = samples
        self.processes = 0
        self.done = threading.Event()
        self.started_at = time.monotonic()

    def run(self) -> None:
        while True:
            self.sample()
            if self.done.wait(SAMPLE_SECONDS):
                return

    def sample(self) -> None:
        """The RSS of the runtime's process tree (the supervisor and its K workers)."""
        rss = 0
        tree = process_tree(self.pid)
        for process in tree:
            try:
                rss += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        if not tree:
            return
        self.processes = len(tree)
        self.samples.append((round(time.monotonic() - self.started_at, 1), round(rss / MIB, 2)))

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=5)
        self.sample()


def soak(load: LoadGenerator, invocations: int, concurrency: int, rate: float | None,
         workers: str = "auto") -> SoakRun:
    run = SoakRun("off" if rate is None else f"{rate:g} per kind", invocations, concurrency)
    env = dict(environment(concurrency), LMI_GEVENT_WORKERS=workers)
    with Emulator(concurrency=concurrency, timeout=FUNCTION_TIMEOUT, max_answers=10,
                  max_events=1000) as emulator:
        runtime = emulator.start_runtime(LMI_GEVENT.argv(HANDLER), env=env, cwd=PROJECT_ROOT)
        emulator.wait_for(lambda stats: stats["open_polls"] >= concurrency, timeout=60)
        if rate is not None:
            emulator.inject_platform_faults(rate=rate, seed=FAULT_SEED)
        sampler = RssSampler(runtime.pid, run.rss_mib)
        sampler.start()
        started = time.monotonic()
        host, _, port = emulator.invoke_url.split("://", 1)[1].rpartition(":")
        result = load.run({"host": host, "port": int(port), "path": INVOKE_PATH,
                           "body": json.dumps({"action": "noop"}), "concurrency": concurrency,
                           "warmup": 0.0, "duration": 3600.0, "max_requests": invocations,
                           "timeout": FUNCTION_TIMEOUT + 10, "spread": 0.0})
        run.seconds = time.monotonic() - started
        sampler.stop()
        run.processes = sampler.processes
        emulator.clear_faults()
        stats = emulator.stats()
        run.answered = result["completed"]
        run.caller_errors = result["errors"]
        run.lost = max(stats["timed_out"] + stats["in_flight"], invocations - run.answered)
        run.duplicated = stats["repeated_answers_different"]
        run.repeated = stats["repeated_answers"]
        run.faults_applied = stats["faults_applied"]
        run.runtime_alive = runtime.returncode is None
    return run


def report(runs: list[SoakRun], meta: dict[str, Any]) -> str:
    lines = [
        "# Soak: lmi-gevent through long runs, platform faults off and on",
        "",
        f"`{meta['command']}` on {meta['date']} (commit {meta['commit']}): {meta['cores']} cores, Python {meta['python']}, "
        f"load average {meta['load_start']:.1f} at the start. Faults, when on: "
        + ", ".join(_fault_name(f) for f in PLATFORM_FAULTS) + ", each at the rate shown.",
        "",
        "| faults | N | processes | invocations | answered | lost | duplicated "
        "| repeated (400, harmless) | faults applied | seconds | RSS start → end (max) MiB "
        "| runtime alive |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        peak = max((mib for _, mib in run.rss_mib), default=0.0)
        lines.append(
            f"| {run.faults} | {run.concurrency} | {run.processes} | {run.invocations:,} | {run.answered:,} | "
            f"{run.lost} | {run.duplicated} | {run.repeated} | {run.faults_applied:,} | "
            f"{run.seconds:.0f} | {run.rss_start:.1f} → {run.rss_end:.1f} ({peak:.1f}) | "
            f"{'yes' if run.runtime_alive else 'NO'} |")
    lines += ["", "RSS over time (seconds: MiB), one sample every ~"
              f"{SAMPLE_SECONDS:g} s, thinned to 12 points:", ""]
    for run in runs:
        last = len(run.rss_mib) - 1
        points = [run.rss_mib[i] for i in sorted({round(n * last / 11) for n in range(12)})] if last >= 0 else []
        lines.append(f"- faults {run.faults}: " + ", ".join(f"{t:g}s {m:.1f}" for t, m in points))
    return "\n".join(lines) + "\n"


def _fault_name(fault: dict[str, Any]) -> str:
    what = ("reset" if fault.get("reset") else "close" if fault.get("close")
            else str(fault.get("status")))
    when = " after the answer was taken" if fault.get("accepted") else ""
    return f"{fault['endpoint']} {what}{when}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.split("\n")[0])
    parser.add_argument("--invocations", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=0.02,
                        help="probability that each kind of fault hits a call (default 0.02)")
    parser.add_argument("--faults", choices=("off", "on", "both"), default="both")
    parser.add_argument("--workers", default="auto",
                        help="LMI_GEVENT_WORKERS for the runtime (default auto)")
    parser.add_argument("--out", default=os.path.join(PROJECT_ROOT, "docs"),
                        help="directory for soak.md (default: docs/)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures as JSON")
    return parser


def commit() -> str:
    from .__main__ import commit as measured_commit

    return measured_commit()


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    rates = {"off": [None], "on": [args.rate], "both": [None, args.rate]}[args.faults]
    meta = {"command": "python -m bench soak" + "".join(f" {a}" for a in argv),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cores": os.cpu_count(), "python": sys.version.split()[0],
            "load_start": os.getloadavg()[0], "commit": commit()}
    runs = []
    with LoadGenerator() as load:
        for rate in rates:
            run = soak(load, args.invocations, args.concurrency, rate, args.workers)
            print(f"soak faults={run.faults}: {run.answered} answered, {run.lost} lost, "
                  f"{run.duplicated} duplicated, {run.repeated} repeated, "
                  f"{run.faults_applied} faults, {run.seconds:.0f}s, RSS {run.rss_start:.1f} -> "
                  f"{run.rss_end:.1f} MiB", flush=True)
            runs.append(run)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "soak.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(report(runs, meta))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"meta": meta, "runs": [asdict(run) for run in runs]}, handle, indent=1)
    print(f"wrote {path}", flush=True)
    clean = all(run.lost == 0 and run.duplicated == 0 and run.runtime_alive for run in runs)
    return 0 if clean else 1
