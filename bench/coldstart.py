"""``python -m bench coldstart``: process start to first answer, lmi-gevent beside awslambdaric.

    python -m bench coldstart              # 5 rounds (21 sequential), writes docs/bench-coldstart.md
    python -m bench coldstart --quick      # one round at N=4: checks that the scenario works

Each round starts every runtime afresh (A/B, then B/A) with one invocation already waiting
in the emulator, so the first poll takes it: "first answer" is the emulator's answer stamp
minus the moment the process was started, and "all polls open" is the first moment N polls
waited at once (from the emulator's timeline, on the same monotonic clock). Cases: classic
Lambda (sequential) and Managed Instances at N=16 and N=64, each with a no-op handler module
(nothing imported) and the app-sized one (boto3 + requests at import, ``bench.app``).
The ratios compare medians from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from lmi_gevent.emulator.api import Emulator

from .runtimes import AWSLAMBDARIC, LMI_WORKERS, Runtime, environment
from .services import PROJECT_ROOT

HANDLERS = {"no-op": "bench.noop.handler", "app-sized": "bench.app.handler"}
START_TIMEOUT = 180.0  # awslambdaric imports the app once per slot: tens of seconds at N=64


@dataclass
class Case:
    mode: str  # "sequential" or "N=16"
    concurrency: int | None
    handler: str  # a key of HANDLERS


@dataclass
class Start:
    """One runtime started once: seconds from the process start."""

    case: str
    runtime: str
    round: int
    first_answer: float
    all_polls: float  # N polls open at once (1 in sequential mode)


def cases(levels: tuple[int, ...]) -> list[Case]:
    found = [Case("sequential", None, name) for name in HANDLERS]
    found += [Case(f"N={n}", n, name) for n in levels for name in HANDLERS]
    return found


def label(case: Case) -> str:
    return f"{case.mode}, {case.handler}"


def start_once(case: Case, runtime: Runtime, round_number: int) -> Start:
    slots = case.concurrency or 1
    with Emulator(concurrency=slots, timeout=START_TIMEOUT) as emulator:
        answers: list[Any] = []
        caller = threading.Thread(target=lambda: answers.append(
            emulator.invoke({"action": "noop"}, timeout=START_TIMEOUT)), daemon=True)
        caller.start()
        emulator.wait_for(lambda stats: stats["queued"] >= 1, timeout=10)
        started = time.monotonic()
        emulator.start_runtime(runtime.argv(HANDLERS[case.handler]),
                               env={**environment(case.concurrency), **runtime.env},
                               cwd=PROJECT_ROOT)
        caller.join(START_TIMEOUT)
        if not answers or answers[0].status != 200:
            raise RuntimeError(f"{runtime.name} gave no answer for {label(case)}: {answers}")
        emulator.wait_for(lambda stats: stats["open_polls"] >= slots, timeout=START_TIMEOUT)
        events = emulator.events()
    answer_t = min(e["t"] for e in events if e["kind"] == "answer")
    return Start(label(case), runtime.name, round_number, answer_t - started,
                 all_polls_open_at(events, slots) - started)


def all_polls_open_at(events: list[dict[str, Any]], slots: int) -> float:
    """The first moment ``slots`` polls waited at once, replayed from the timeline."""
    open_polls = 0
    for event in sorted(events, key=lambda e: e["t"]):
        if event["kind"] == "poll_open":
            open_polls += 1
        elif event["kind"] in ("dispatch", "poll_close"):
            open_polls -= 1
        if open_polls >= slots:
            return float(event["t"])
    raise RuntimeError(f"the timeline never shows {slots} polls open at once")


def compile_bytecode() -> None:
    """Both runtimes start from bytecode, as pip leaves an installed package: an editable
    checkout under PYTHONDONTWRITEBYTECODE would otherwise compile lmi-gevent at every start."""
    import compileall

    import lmi_gevent

    for package in (os.path.dirname(lmi_gevent.__file__), os.path.join(PROJECT_ROOT, "bench")):
        compileall.compile_dir(package, quiet=1)


def measure(levels: tuple[int, ...], rounds: int, sequential_rounds: int,
            log: Any = print) -> list[Start]:
    """Every case ``rounds`` times; the sequential ones, which take a fraction of a second and
    are the noisiest on a shared machine, ``sequential_rounds`` times."""
    runtimes = (LMI_WORKERS, AWSLAMBDARIC)
    starts: list[Start] = []
    total = max(rounds, sequential_rounds)
    for round_number in range(total):
        for case in cases(levels):
            if round_number >= (rounds if case.concurrency else sequential_rounds):
                continue
            for runtime in runtimes if round_number % 2 == 0 else runtimes[::-1]:
                start = start_once(case, runtime, round_number)
                log(f"round {round_number + 1}/{total} {start.case:>24} {runtime.name:>16}: "
                    f"first answer {start.first_answer * 1000:7.0f} ms, "
                    f"all polls {start.all_polls * 1000:7.0f} ms")
                starts.append(start)
    return starts


def table(starts: list[Start]) -> list[str]:
    """Medians per case, and lmi-gevent's over awslambdaric's (below 1: faster)."""
    lines = ["| case | lmi-gevent first answer | awslambdaric first answer | ratio "
             "| lmi-gevent all polls open | awslambdaric all polls open | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for case in dict.fromkeys(start.case for start in starts):
        row = [case]
        for figure in ("first_answer", "all_polls"):
            ours, theirs = (statistics.median(getattr(s, figure) for s in starts
                                              if s.case == case and s.runtime == name)
                            for name in (LMI_WORKERS.name, AWSLAMBDARIC.name))
            row += [f"{ours * 1000:.0f} ms", f"{theirs * 1000:.0f} ms", f"{ours / theirs:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def write_page(starts: list[Start], meta: dict[str, Any], out_dir: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "bench-coldstart.md")
    rounds = {case: 1 + max(s.round for s in starts if s.case == case)
              for case in dict.fromkeys(start.case for start in starts)}
    sequential = max((n for case, n in rounds.items() if case.startswith("sequential")), default=0)
    concurrent = max((n for case, n in rounds.items() if not case.startswith("sequential")), default=0)
    counts = f"{sequential} times per sequential case" + (
        f" (cheap, and the noisiest) and {concurrent} times per concurrent one" if concurrent else "")
    text = [
        "# Cold start",
        "",
        "<!-- written by `python -m bench coldstart`; edit bench/coldstart.py, not this page -->",
        "",
        f"`{meta['command']}` on {meta['cores']} cores, Python {meta['python']}, {meta['date']}: "
        f"lmi-gevent {meta['lmi_version']} (`LMI_GEVENT_WORKERS=auto`, the default) and "
        f"awslambdaric {meta['aws_version']}, both started {counts}, alternating which goes "
        "first, both from bytecode. Medians; a ratio below 1 means lmi-gevent is faster.",
        "",
        "- *first answer*: from starting the process to the answer of an invocation that was "
        "already waiting;",
        "- *all polls open*: until N `/next` polls waited at once (1 in sequential mode): the "
        "moment the platform sees all N slots free.",
        "",
        *table(starts),
        "",
        f"Load average {meta['load_start']:.1f} at the start, {meta['load_end']:.1f} at the end.",
        "",
    ]
    with open(path, "w", encoding="utf-8") as page:
        page.write("\n".join(text))
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench coldstart", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round at N=4 (figures mean little)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sequential-rounds", type=int, default=21)
    parser.add_argument("--levels", default="16,64",
                        help="the concurrency levels, comma-separated; empty: sequential only")
    parser.add_argument("--out", default=os.path.join(PROJECT_ROOT, "docs"))
    parser.add_argument("--json", metavar="FILE", help="also write every start as JSON")
    args = parser.parse_args(argv)
    levels = tuple(int(n) for n in args.levels.split(",") if n)
    rounds, sequential_rounds = args.rounds, args.sequential_rounds
    if args.quick:
        levels, rounds, sequential_rounds = (4,), 1, 1
    import datetime
    import platform

    chosen = [f"--{name.replace('_', '-')} {value}" for name, value in
              (("rounds", args.rounds), ("sequential_rounds", args.sequential_rounds))
              if value != parser.get_default(name)]
    chosen += ["--quick"] if args.quick else []
    chosen += [f"--levels '{args.levels}'"] if args.levels != parser.get_default("levels") else []
    meta = {"command": " ".join(["python -m bench coldstart", *chosen]),  # no paths of this machine
            "cores": os.cpu_count(), "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "lmi_version": LMI_WORKERS.version(), "aws_version": AWSLAMBDARIC.version(),
            "load_start": os.getloadavg()[0]}
    compile_bytecode()
    starts = measure(levels, rounds, sequential_rounds)
    meta["load_end"] = os.getloadavg()[0]
    for line in table(starts):
        print(line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"meta": meta, "starts": [asdict(s) for s in starts]}, handle, indent=1)
    print(f"wrote {write_page(starts, meta, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
