"""Turn :class:`bench.scenarios.Results` into ``bench.md`` (tables, targets, method) and
``bench.png`` (throughput and memory against N, both runtimes).

Figures are medians over rounds; a ratio is the median of the per-round ratios, each taken
between two runs made back to back (A/B, then B/A), which cancels most of a shared
machine's drift.
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from .runtimes import AWSLAMBDARIC, LMI_GEVENT, LMI_WORKERS
from .scenarios import APP_HANDLER, MIB, SLEEP_SECONDS, LoadFigures, MemoryFigures, Results

LMI = LMI_GEVENT.name  # one process (LMI_GEVENT_WORKERS=1)
LMI_K = LMI_WORKERS.name  # one worker process per usable CPU
LMIS = (LMI, LMI_K)
AWS = AWSLAMBDARIC.name
KIB = 1024
MB = 1_000_000

SCENARIO_TITLES = {
    "noop": "no-op, sequential",
    "sleep": "time.sleep(0.05)",
    "fetch": "requests.get, 50 ms server",
    "spin": "CPU-bound",
}


def median(values: Iterable[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ---- aggregation ---------------------------------------------------------------------------


@dataclass
class LoadRow:
    """Medians over the rounds of one scenario, N and runtime."""

    scenario: str
    concurrency: int
    runtime: str
    rounds: int
    throughput: float
    fraction: float | None
    p50_ms: float
    p99_ms: float
    added_p50_ms: float
    added_p99_ms: float
    runtime_added_p50_ms: float
    runtime_added_p99_ms: float
    errors: int
    max_in_flight: int
    cpu_us: dict[str, float]
    cores: dict[str, float]


def load_rows(loads: Sequence[LoadFigures]) -> list[LoadRow]:
    groups: dict[tuple[str, int, str], list[LoadFigures]] = defaultdict(list)
    for figures in loads:
        groups[(figures.scenario, figures.concurrency, figures.runtime)].append(figures)
    rows = [_load_row(key, runs) for key, runs in groups.items()]
    order = {name: i for i, name in enumerate(SCENARIO_TITLES)}
    rows.sort(key=lambda row: (order.get(row.scenario, 99), row.concurrency, _rank(row.runtime)))
    return rows


def _load_row(key: tuple[str, int, str], runs: list[LoadFigures]) -> LoadRow:
    def mid(attribute: str) -> Any:
        return median(getattr(run, attribute) for run in runs)

    scenario, concurrency, runtime = key
    return LoadRow(
        scenario, concurrency, runtime, len(runs),
        throughput=mid("throughput"), fraction=mid("fraction_of_limit"),
        p50_ms=mid("p50_ms"), p99_ms=mid("p99_ms"),
        added_p50_ms=mid("added_p50_ms"), added_p99_ms=mid("added_p99_ms"),
        runtime_added_p50_ms=mid("runtime_added_p50_ms"),
        runtime_added_p99_ms=mid("runtime_added_p99_ms"),
        errors=sum(run.errors for run in runs),
        max_in_flight=max(run.max_in_flight for run in runs),
        cpu_us={name: median(run.cpu_us[name] for run in runs) for name in runs[0].cpu_us},
        cores={name: median(run.cores[name] for run in runs) for name in runs[0].cores})


def paired_ratio(loads: Sequence[LoadFigures], scenario: str, concurrency: int,
                 value: Callable[[LoadFigures], float], lmi: str = LMI) -> float | None:
    """Median over rounds of value(lmi) / value(awslambdaric) within each round."""
    by_round: dict[int, dict[str, LoadFigures]] = defaultdict(dict)
    for figures in loads:
        if figures.scenario == scenario and figures.concurrency == concurrency:
            by_round[figures.round][figures.runtime] = figures
    ratios = [value(pair[lmi]) / value(pair[AWS]) for pair in by_round.values()
              if lmi in pair and AWS in pair and value(pair[AWS])]
    return median(ratios)


@dataclass
class MemoryRow:
    concurrency: int
    runtime: str
    rounds: int
    processes: int
    pss_start: float
    pss_idle: float
    pss_busy: float
    busy_slots: int
    startup_seconds: float


def memory_rows(memory: Sequence[MemoryFigures], app: bool = False) -> list[MemoryRow]:
    """Rows for the bench handler, or (``app``) for the app-sized one."""
    groups: dict[tuple[int, str], list[MemoryFigures]] = defaultdict(list)
    for figures in memory:
        if (figures.handler == APP_HANDLER) is app:
            groups[(figures.concurrency, figures.runtime)].append(figures)
    rows = [MemoryRow(n, runtime, len(runs), max(r.processes for r in runs),
                      median(r.pss_start for r in runs), median(r.pss_idle for r in runs),
                      median(r.pss_busy for r in runs), min(r.busy_slots for r in runs),
                      median(r.startup_seconds for r in runs))
            for (n, runtime), runs in groups.items()]
    rows.sort(key=lambda row: (row.concurrency, _rank(row.runtime)))
    return rows


def _rank(runtime: str) -> int:
    return (LMI, LMI_K, AWS).index(runtime) if runtime in (LMI, LMI_K, AWS) else 3


def memory_of(rows: Sequence[MemoryRow], runtime: str, concurrency: int) -> MemoryRow | None:
    return next((r for r in rows if r.runtime == runtime and r.concurrency == concurrency), None)


def per_slot_slope(rows: Sequence[MemoryRow], runtime: str, attribute: str) -> float | None:
    """Least-squares bytes per extra slot of PSS against N (None with under two levels)."""
    points = [(r.concurrency, getattr(r, attribute)) for r in rows if r.runtime == runtime]
    if len(points) < 2:
        return None
    mean_n = statistics.fmean(n for n, _ in points)
    mean_b = statistics.fmean(b for _, b in points)
    spread = sum((n - mean_n) ** 2 for n, _ in points)
    return sum((n - mean_n) * (b - mean_b) for n, b in points) / spread if spread else None


# ---- targets -------------------------------------------------------------------------------


@dataclass
class Target:
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run


def targets(results: Results) -> list[Target]:
    loads, rows = results.loads, memory_rows(results.memory)
    found = []
    ratio = paired_ratio(loads, "noop", 1, lambda f: f.throughput)
    found.append(_target("sequential no-op throughput >= 1.0x awslambdaric", ratio,
                         lambda v: f"{v:.2f}x", lambda v: v >= 1.0))
    for lmi in LMIS:
        found += _concurrent_targets(results, lmi, rows)
    return found


def _concurrent_targets(results: Results, lmi: str, rows: list[MemoryRow]) -> list[Target]:
    loads, found, tag = results.loads, [], f" [{lmi}]"
    ratio = paired_ratio(loads, "spin", results.plan.cpu_level, lambda f: f.throughput, lmi)
    found.append(_target(f"CPU-bound handler >= 1.0x awslambdaric{tag}", ratio,
                         lambda v: f"{v:.2f}x", lambda v: v >= 1.0))
    sleep64 = [f.fraction_of_limit for f in loads
               if f.scenario == "sleep" and f.concurrency == 64 and f.runtime == lmi]
    found.append(_target(f"N=64 sleep handler >= 0.9 of the limit (1280/s){tag}", median(sleep64),
                         lambda v: f"{v:.2f} of the limit", lambda v: v >= 0.9))
    ratio = paired_ratio(loads, "fetch", 64, lambda f: f.throughput, lmi)
    aws_share = median(f.fraction_of_limit for f in loads
                       if f.scenario == "fetch" and f.concurrency == 64 and f.runtime == AWS)
    found.append(_target(f"N=64 requests handler >= 2x awslambdaric throughput{tag}", ratio,
                         lambda v: f"{v:.2f}x" + _ceiling(aws_share), lambda v: v >= 2.0))
    lmi64, aws64 = memory_of(rows, lmi, 64), memory_of(rows, AWS, 64)
    share = lmi64.pss_idle / aws64.pss_idle if lmi64 and aws64 else None
    found.append(_target(f"PSS at N=64 <= 1/10 of awslambdaric's (idle){tag}", share,
                         lambda v: f"1/{1 / v:.0f} ({lmi64.pss_idle / MIB:.1f} vs "
                                   f"{aws64.pss_idle / MIB:.0f} MiB)", lambda v: v <= 0.1))
    app = memory_rows(results.memory, app=True)
    level = results.plan.app_level
    lmi_app, aws_app = memory_of(app, lmi, level), memory_of(app, AWS, level)
    share = lmi_app.pss_idle / aws_app.pss_idle if lmi_app and aws_app else None
    found.append(_target(f"app-sized handler (requests + boto3): PSS at N={level} <= 1/10 of "
                         f"awslambdaric's{tag}", share,
                         lambda v: f"1/{1 / v:.0f} ({lmi_app.pss_idle / MIB:.1f} vs "
                                   f"{aws_app.pss_idle / MIB:.0f} MiB)", lambda v: v <= 0.1))
    slope = per_slot_slope(rows, lmi, "pss_idle")
    start_slope = per_slot_slope(rows, lmi, "pss_start")
    found.append(_target(f"each extra slot <= 64 KiB (slope of idle PSS after the loads){tag}",
                         slope, lambda v: f"{v / KIB:.1f} KiB" + (
                             f" ({start_slope / KIB:.1f} KiB at start)" if start_slope else ""),
                         lambda v: v <= 64 * KIB))
    lmi1000 = memory_of(rows, lmi, 1000)
    found.append(_target(f"N=1000 idle < 150 MB{tag}", lmi1000.pss_idle if lmi1000 else None,
                         lambda v: f"{v / MB:.1f} MB ({v / MIB:.1f} MiB)", lambda v: v < 150 * MB))
    return found


def _ceiling(aws_share: float | None) -> str:
    """No runtime beats the limit N / 0.05 s: when awslambdaric reaches more than half of
    it, 2x is out of reach by arithmetic, and the report says so."""
    if not aws_share:
        return ""
    return (f" (at most {1 / aws_share:.2f}x is possible: awslambdaric reached "
            f"{aws_share:.2f} of the limit)")


def _target(goal: str, value: float | None, show: Callable[[float], str],
            met: Callable[[float], bool]) -> Target:
    if value is None:
        return Target(goal, "not measured in this run", None)
    return Target(goal, show(value), met(value))


# ---- markdown ------------------------------------------------------------------------------


def _num(value: float | None, fmt: str = ".0f", unit: str = "") -> str:
    return "–" if value is None else f"{value:{fmt}}{unit}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def throughput_table(results: Results) -> list[str]:
    header = ["scenario", "N", "runtime", "inv/s", "of limit", "lmi/aws inv/s",
              "added p50 / p99 ms, end to end", "added p50 / p99 ms, in runtime",
              "runtime CPU µs/inv", "lmi/aws CPU", "emulator µs/inv", "load gen µs/inv",
              "other tenants (cores)"]
    lines = []
    for row in load_rows(results.loads):
        if row.scenario == "spin":
            continue
        is_lmi = row.runtime in LMIS
        ratio = paired_ratio(results.loads, row.scenario, row.concurrency, lambda f: f.throughput,
                             row.runtime)
        cpu = paired_ratio(results.loads, row.scenario, row.concurrency,
                           lambda f: f.cpu_us["runtime"], row.runtime)
        lines.append([
            SCENARIO_TITLES[row.scenario], str(row.concurrency), row.runtime,
            _num(row.throughput), _num(row.fraction, ".2f"),
            _num(ratio, ".2f", "x") if is_lmi else "",
            f"{_num(row.added_p50_ms, '.2f')} / {_num(row.added_p99_ms, '.2f')}",
            f"{_num(row.runtime_added_p50_ms, '.2f')} / {_num(row.runtime_added_p99_ms, '.2f')}",
            _num(row.cpu_us["runtime"]), _num(cpu, ".2f", "x") if is_lmi else "",
            _num(row.cpu_us["emulator"]), _num(row.cpu_us["load"]),
            _num(row.cores["others"], ".2f")])
    return _table(header, lines)


def memory_table(results: Results, app: bool = False) -> list[str]:
    rows = memory_rows(results.memory, app)
    header = ["N", "runtime", "processes", "PSS at start MiB", "PSS busy MiB",
              "PSS idle after loads MiB", "aws/lmi idle", "busy slots", "startup s"]
    lines = []
    for row in rows:
        other = memory_of(rows, AWS, row.concurrency)
        ratio = other.pss_idle / row.pss_idle if other and row.runtime in LMIS else None
        lines.append([
            str(row.concurrency), row.runtime, str(row.processes),
            _num(row.pss_start / MIB, ".1f"), _num(row.pss_busy / MIB, ".1f"),
            _num(row.pss_idle / MIB, ".1f"), _num(ratio, ".0f", "x"), str(row.busy_slots),
            _num(row.startup_seconds, ".1f")])
    return _table(header, lines)


def slope_lines(results: Results) -> list[str]:
    rows = memory_rows(results.memory)
    lines = []
    for runtime in (LMI, LMI_K, AWS):
        slopes = {attribute: per_slot_slope(rows, runtime, attribute)
                  for attribute in ("pss_start", "pss_busy", "pss_idle")}
        if None in slopes.values():
            continue
        start, busy, idle = (slopes[a] / KIB for a in ("pss_start", "pss_busy", "pss_idle"))
        lines.append(f"- {runtime}: each extra slot adds {start:,.1f} KiB at start, {busy:,.1f} "
                     f"KiB busy and {idle:,.1f} KiB idle after the loads (least-squares slope "
                     f"of PSS against N).")
    if lines:
        lines.append("- \"At start\" is the runtime with the handler module imported, before any "
                     "invocation. After N concurrent `requests.get` calls a process keeps their "
                     "high-water mark (freed memory stays in its allocator), so \"idle after "
                     "the loads\" is what a function that has served traffic costs.")
    return lines


def cpu_table(results: Results) -> list[str]:
    header = ["N", "runtime", "inv/s", "lmi/aws inv/s", "p50 ms", "p99 ms",
              "p50 / p99 ms in runtime", "runtime cores busy", "runtime CPU µs/inv",
              "other tenants (cores)"]
    lines = []
    for row in load_rows(results.loads):
        if row.scenario != "spin":
            continue
        ratio = paired_ratio(results.loads, "spin", row.concurrency, lambda f: f.throughput,
                             row.runtime)
        lines.append([str(row.concurrency), row.runtime, _num(row.throughput),
                      _num(ratio, ".2f", "x") if row.runtime in LMIS else "",
                      _num(row.p50_ms, ".1f"), _num(row.p99_ms, ".1f"),
                      f"{_num(row.runtime_added_p50_ms, '.1f')} / "
                      f"{_num(row.runtime_added_p99_ms, '.1f')}",
                      _num(row.cores["runtime"], ".2f"), _num(row.cpu_us["runtime"]),
                      _num(row.cores["others"], ".2f")])
    return _table(header, lines)


def markdown(results: Results, meta: dict[str, Any], png_name: str) -> str:
    plan = results.plan
    out = [
        "# Benchmarks: lmi-gevent and awslambdaric side by side",
        "",
        f"Made {meta['date']} with `{meta['command']}` (plan `{plan.name}`: {plan.rounds} "
        f"round(s), {plan.warmup:g} s warm-up + {plan.duration:g} s measured per load).",
        f"Machine: {meta['cores']} CPU cores ({meta['cpu_model']}), "
        f"{meta['memory_gib']:.0f} GiB RAM, "
        f"{meta['platform']}; Python {meta['python']}; lmi-gevent {meta['lmi_version']}, "
        f"awslambdaric {meta['aws_version']}, gevent {meta['gevent_version']}; "
        f"lmi-gevent tree at {meta['commit']}.",
        f"Load average (1 min) at start / end: {meta['load_start']:.1f} / {meta['load_end']:.1f} "
        f"— the machine is shared, which is why runs alternate and ratios are paired. "
        f"Total time {meta['elapsed'] / 60:.1f} min.",
        "",
        f"![throughput and memory against N]({png_name})",
        "",
        "## Targets",
        "",
    ]
    out += _table(["target", "measured", "met"],
                  ([t.goal, t.measured, {True: "yes", False: "**no**", None: "–"}[t.met]]
                   for t in targets(results)))
    out += ["", "## Throughput and latency", ""]
    out += throughput_table(results)
    out += ["", "## Memory (PSS summed over the runtime's process tree)", ""]
    out += memory_table(results)
    out += [""] + slope_lines(results)
    out += ["", f"## App-sized handler: requests + boto3 imported at init, N={plan.app_level}", ""]
    out += memory_table(results, app=True)
    out += ["", "Every process pays for the function's imports: awslambdaric N times, "
                "lmi-gevent once per worker process (K=auto: one per usable CPU)."]
    out += ["", f"## CPU-bound handler ({results.spin_loops} loops, about "
                f"{plan.spin_seconds * 1000:g} ms of CPU per invocation)", ""]
    out += cpu_table(results)
    out += ["", "One gevent process runs Python on one core at a time: `lmi-gevent` (one "
                "process) is capped at one core, while awslambdaric's N processes can use every "
                "core. `lmi-gevent K=auto` runs one worker process per usable CPU, each with its "
                "share of the slots, and uses every core too. Within one process, while one "
                "invocation computes, that process's other invocations wait for it (the \"in "
                "runtime\" latency)."]
    out += ["", "## How it is measured", ""]
    out += [line.replace("{hold:g}", f"{plan.hold_seconds:g}") for line in METHOD]
    if results.notes:
        out += ["", "## Skipped or failed runs", ""]
        out += [f"- {note.runtime}, {note.scenario}, N={note.concurrency}: {note.reason}"
                for note in results.notes]
    return "\n".join(out) + "\n"


METHOD = [
    "- Both runtimes serve the same module (`bench/handlers.py`, which imports `requests` "
    "like a typical function imports its SDK) behind the same emulator "
    "(`lmi_gevent.emulator`, its own process), started as `python -m <runtime> HANDLER` "
    "with the same environment; awslambdaric forks N workers when "
    "AWS_LAMBDA_MAX_CONCURRENCY=N is set; `lmi-gevent` runs N greenlets in one process "
    "(LMI_GEVENT_WORKERS=1) and `lmi-gevent K=auto` K worker processes (one per usable CPU) "
    "with N/K greenlets each. `bench/app.py` adds boto3 (and a client made at import) for the "
    "app-sized memory figures.",
    "- Load: `bench/load.py` in its own process, gevent, keep-alive HTTP/1.1, closed loop "
    "with exactly N callers (one for the sequential case); callers start spread over one "
    "handler duration so they reach the runtime as a steady stream, not in lock-step bursts.",
    f"- I/O-bound: `time.sleep({SLEEP_SECONDS})`, and `requests.get` (a new session per call) to "
    "`bench/upstream.py`, a gevent server on 127.0.0.1 in its own process that answers after "
    "50 ms. The limit is N / 0.05 s. \"Added\" latency is latency minus those 50 ms: end to "
    "end as the load generator saw it, and in the runtime from the emulator's timeline "
    "(the /next answer leaving the emulator to the runtime's answer arriving).",
    "- CPU: user + system time of the runtime's whole process tree (psutil) over the measured "
    "window, per completed invocation; the emulator's and the load generator's own CPU are "
    "shown beside it to show they are not the bottleneck. \"Other tenants\" is the rest of "
    "the machine's busy time in the window (other users of a shared machine, and the bench's "
    "own process): when it is high, absolute figures are pessimistic for both runtimes.",
    "- Memory: PSS (`memory_full_info().pss`) summed over the runtime's process tree, so pages "
    "shared by fork are split rather than counted N times. \"At start\" is read once N polls "
    "are open, before any invocation; \"busy\" while every slot waits in `requests.get` on an "
    "answer that takes {hold:g} s; \"idle\" once all N slots poll again after the loads. Startup is "
    "exec to N open polls.",
    "- Rounds alternate A/B then B/A; figures are medians over rounds, ratios are medians of "
    "the per-round ratios.",
]


# ---- plot ----------------------------------------------------------------------------------


def plot(results: Results, path: str) -> None:
    """Two panels against N: throughput (sleep, fetch, the limit) and PSS (idle, busy)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    rows = load_rows(results.loads)
    memory = memory_rows(results.memory)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = {LMI: "tab:blue", LMI_K: "tab:green", AWS: "tab:orange"}
    _plot_throughput(left, rows, colors)
    _plot_memory(right, memory, colors)
    figure.suptitle("lmi-gevent (K=1 process, K=auto processes; gevent slots) vs "
                    "awslambdaric (N processes)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_throughput(axes: Any, rows: Sequence[LoadRow], colors: dict[str, str]) -> None:
    levels = sorted({r.concurrency for r in rows if r.scenario in ("sleep", "fetch")})
    for scenario, style in (("sleep", "-o"), ("fetch", "--s")):
        for runtime in (LMI, LMI_K, AWS):
            points = sorted((r.concurrency, r.throughput) for r in rows
                            if r.scenario == scenario and r.runtime == runtime)
            if points:
                axes.plot(*zip(*points, strict=True), style, color=colors[runtime],
                          label=f"{runtime}, {SCENARIO_TITLES[scenario]}")
    if levels:
        axes.plot(levels, [n / SLEEP_SECONDS for n in levels], ":x", color="gray",
                  label="limit N / 0.05 s")
    _log_axes(axes, levels)
    axes.set_ylabel("invocations / s")
    axes.set_title("I/O-bound throughput")
    axes.legend(fontsize=8)


def _plot_memory(axes: Any, rows: Sequence[MemoryRow], colors: dict[str, str]) -> None:
    levels = sorted({r.concurrency for r in rows})
    for runtime in (LMI, LMI_K, AWS):
        for attribute, style, label in (("pss_idle", "-o", "idle"), ("pss_busy", "--^", "busy")):
            points = sorted((r.concurrency, getattr(r, attribute) / MIB) for r in rows
                            if r.runtime == runtime)
            if points:
                axes.plot(*zip(*points, strict=True), style, color=colors[runtime],
                          label=f"{runtime}, {label}")
    _log_axes(axes, levels)
    axes.set_ylabel("PSS of the process tree, MiB")
    axes.set_title("Memory")
    axes.legend(fontsize=8)


def _log_axes(axes: Any, levels: Sequence[int]) -> None:
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    axes.set_xscale("log")
    axes.set_yscale("log")
    # Label only the measured N and plain numbers on y: "2x10^2" helps nobody here.
    axes.xaxis.set_minor_formatter(NullFormatter())
    if levels:
        axes.set_xticks(levels)
        axes.set_xticklabels([str(n) for n in levels])
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(ScalarFormatter())
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("N = AWS_LAMBDA_MAX_CONCURRENCY")
    axes.grid(True, which="both", alpha=0.3)


def write(results: Results, meta: dict[str, Any], out_dir: str) -> tuple[str, str]:
    """Write bench.md and bench.png into ``out_dir``; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    png = os.path.join(out_dir, "bench.png")
    md = os.path.join(out_dir, "bench.md")
    plot(results, png)
    with open(md, "w", encoding="utf-8") as handle:
        handle.write(markdown(results, meta, "bench.png"))
    return md, png
