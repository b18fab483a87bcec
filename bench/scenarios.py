"""The scenarios of issue 5, run A/B then B/A so that every ratio pairs two runs made
minutes apart on the same machine:

1. ``sequential_noop``: classic Lambda, one caller, a handler that does nothing;
2. ``concurrency_levels``: at each N, the ``sleep`` and ``fetch`` loads (I/O-bound), then
   memory with every slot busy and memory idle;
3. ``cpu_bound``: N callers of a handler that only computes.

Every runtime is started afresh per round against its own emulator, and every loop is
bounded by a count and a deadline.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import psutil

from lmi_gevent.emulator.api import INVOKE_PATH, Emulator, EmulatorError, RuntimeProcess

from .measure import cpu_seconds_of, process_tree, tree_cpu_seconds, tree_pss
from .percentiles import percentile
from .runtimes import AWSLAMBDARIC, SEQUENTIAL_RUNTIMES, Runtime, environment, order
from .services import PROJECT_ROOT, LoadGenerator, ServiceError, Upstream

MIB = 1024 * 1024
APP_HANDLER = "bench.app.handler"
SLEEP_SECONDS = 0.05  # what the sleep handler waits and the upstream delays, per the issue
# The function timeout the emulator enforces: far beyond any invocation here, so a
# timeout in a result means a stuck runtime, never a slow handler.
FUNCTION_TIMEOUT = 300.0
# A closed loop never has more than N calls out; the cap only bounds a runaway loop.
MAX_REQUESTS = 10_000_000
# Until the runtime settles into polling after a load, e.g. 1000 sockets closing.
SETTLE_TIMEOUT = 60.0
# Memory a big awslambdaric fork may take of what the machine has free (other tenants too).
FORK_MEMORY_SHARE = 0.75


@dataclass(frozen=True)
class Plan:
    """How much of everything to run. ``full`` for the published figures, ``quick`` to check
    in CI that the bench works (its numbers mean little)."""

    name: str
    rounds: int
    sequential_rounds: int  # cheap runs, and the noisiest figure: more of them
    warmup: float
    duration: float
    io_levels: tuple[int, ...]
    memory_levels: tuple[int, ...]
    # Levels above this run one round: starting awslambdaric there takes minutes.
    repeat_up_to: int
    cpu_level: int
    spin_seconds: float  # CPU time of one invocation of the CPU-bound handler
    hold_seconds: float  # how long each invocation holds its slot while memory is sampled
    app_level: int  # N for the app-sized handler's memory

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.io_levels) | set(self.memory_levels)))

    def rounds_at(self, level: int) -> int:
        return self.rounds if level <= self.repeat_up_to else 1


FULL = Plan("full", rounds=3, sequential_rounds=5, warmup=1.0, duration=5.0,
            io_levels=(16, 64, 256), memory_levels=(16, 64, 256, 1000), repeat_up_to=256,
            cpu_level=16, spin_seconds=0.01, hold_seconds=1.0, app_level=64)
QUICK = Plan("quick", rounds=1, sequential_rounds=1, warmup=0.3, duration=1.0,
             io_levels=(8,), memory_levels=(8,), repeat_up_to=8,
             cpu_level=4, spin_seconds=0.005, hold_seconds=0.3, app_level=8)


@dataclass
class LoadFigures:
    """One measured window of closed-loop load against one runtime."""

    scenario: str  # noop, sleep, fetch, spin
    runtime: str
    concurrency: int
    round: int
    completed: int
    errors: int
    throughput: float  # invocations per second
    limit: float | None  # N / handler wait, for the I/O-bound scenarios
    p50_ms: float  # end to end, as the load generator saw it
    p99_ms: float
    runtime_p50_ms: float  # from dispatch to answer, as the emulator saw it
    runtime_p99_ms: float
    wait_ms: float  # what the handler itself waits (subtracted to get added latency)
    max_in_flight: int  # as the emulator saw it: did the runtime really run N at once?
    cpu_us: dict[str, float]  # per invocation: runtime, emulator, load, upstream
    cores: dict[str, float]  # cores busy over the window: the same, plus machine

    @property
    def fraction_of_limit(self) -> float | None:
        return self.throughput / self.limit if self.limit else None

    @property
    def added_p50_ms(self) -> float:
        return self.p50_ms - self.wait_ms

    @property
    def added_p99_ms(self) -> float:
        return self.p99_ms - self.wait_ms

    @property
    def runtime_added_p50_ms(self) -> float:
        return self.runtime_p50_ms - self.wait_ms

    @property
    def runtime_added_p99_ms(self) -> float:
        return self.runtime_p99_ms - self.wait_ms


@dataclass
class MemoryFigures:
    runtime: str
    concurrency: int
    round: int
    processes: int
    startup_seconds: float  # from exec to N open polls
    pss_start: int  # bytes, every slot polling, before any invocation: the runtime alone
    pss_idle: int  # bytes, every slot polling, after the loads (their high-water mark stays)
    pss_busy: int  # bytes, with ``busy_slots`` invocations in flight
    busy_slots: int
    handler: str = "bench.handlers.handler"  # or the app-sized bench.app.handler


@dataclass
class Note:
    """A run that was skipped or failed, and why; it is printed in the report."""

    runtime: str
    scenario: str
    concurrency: int | None
    reason: str


@dataclass
class Results:
    plan: Plan
    loads: list[LoadFigures] = field(default_factory=list)
    memory: list[MemoryFigures] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    spin_loops: int = 0


def results_from_dict(document: dict[str, Any]) -> Results:
    """The inverse of ``dataclasses.asdict(results)`` (``--json`` output, ``--from-json``)."""
    plan = {key: tuple(value) if isinstance(value, list) else value
            for key, value in document["plan"].items()}
    return Results(
        plan=Plan(**plan),
        loads=[LoadFigures(**figures) for figures in document["loads"]],
        memory=[MemoryFigures(**figures) for figures in document["memory"]],
        notes=[Note(**note) for note in document["notes"]],
        spin_loops=document["spin_loops"])


class DeploymentError(RuntimeError):
    """The runtime did not come up (exited, or never opened its N polls in time)."""


@dataclass
class Deployment:
    """A runtime serving one function behind its own emulator."""

    runtime: Runtime
    concurrency: int | None
    emulator: Emulator
    process: RuntimeProcess
    startup_seconds: float
    pss_start: int = 0

    @property
    def slots(self) -> int:
        return self.concurrency or 1


def startup_timeout(slots: int) -> float:
    # awslambdaric imports the handler module once per forked worker, on 2 cores: about
    # 70 ms of CPU each (requests), so ~40 s at N=1000 on a quiet machine; twice that, plus
    # room for a busy one.
    return 60.0 + 0.3 * slots


def wait_until_polling(deployment: Deployment, timeout: float) -> dict[str, Any]:
    """Wait until all slots poll /next and nothing is in flight; DeploymentError if not."""
    deadline = time.monotonic() + timeout
    while True:
        stats = deployment.emulator.stats()
        if stats["open_polls"] >= deployment.slots and stats["in_flight"] == 0:
            return stats
        if deployment.process.returncode is not None:
            raise DeploymentError(f"{deployment.runtime.name} exited with "
                                  f"{deployment.process.returncode}: "
                                  f"{deployment.process.output()[-2000:]}")
        if time.monotonic() > deadline:
            raise DeploymentError(f"{deployment.runtime.name} had {stats['open_polls']} of "
                                  f"{deployment.slots} polls open after {timeout:.0f} s")
        time.sleep(0.05)


def reap(pids: list[int]) -> None:
    """Make sure every process of a stopped runtime tree is gone (SIGKILL stragglers)."""
    processes = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            processes.append(psutil.Process(pid))
    _, alive = psutil.wait_procs(processes, timeout=10)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


@contextlib.contextmanager
def deploy(runtime: Runtime, concurrency: int | None, handler: str) -> Iterator[Deployment]:
    """Start ``runtime`` with ``handler`` behind a fresh emulator; stop both afterwards."""
    slots = concurrency or 1
    emulator = Emulator(concurrency=slots, timeout=FUNCTION_TIMEOUT)
    tree: list[int] = []
    try:
        started = time.monotonic()
        process = emulator.start_runtime(runtime.argv(handler),
                                         env={**environment(concurrency), **runtime.env},
                                         cwd=PROJECT_ROOT)
        deployment = Deployment(runtime, concurrency, emulator, process, 0.0)
        wait_until_polling(deployment, startup_timeout(slots))
        deployment.startup_seconds = time.monotonic() - started
        tree = [p.pid for p in process_tree(process.pid)]
        deployment.pss_start = tree_pss(process.pid)[0]
        yield deployment
    finally:
        emulator.stop()
        reap(tree)


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot. Guest time is already inside user
    time on Linux, and steal (the hypervisor serving other VMs) counts as busy: either
    way the runtime did not get that core."""
    times = psutil.cpu_times()
    idle = sum(getattr(times, name, 0.0) for name in ("idle", "iowait", "guest", "guest_nice"))
    return sum(times) - idle


class Snapshot:
    """CPU counters of everything that takes part in a measurement, at one moment."""

    def __init__(self, deployment: Deployment, upstream: Upstream) -> None:
        self.at = time.monotonic()
        self.runtime = tree_cpu_seconds(deployment.process.pid)
        self.upstream = cpu_seconds_of(upstream.pid)
        self.machine_busy = machine_busy_seconds()


class Bench:
    """The shared helper processes and the measurements made with them."""

    def __init__(self, plan: Plan, load: LoadGenerator, upstream: Upstream,
                 log: Callable[[str], None]) -> None:
        self.plan = plan
        self.load = load
        self.upstream = upstream
        self.log = log
        self.results = Results(plan)

    # ---- one measurement -----------------------------------------------------------

    def run_load(self, deployment: Deployment, scenario: str, payload: dict[str, Any], *,
                 round_number: int, concurrency: int, wait: float, limit: float | None,
                 spread: float) -> LoadFigures:
        """Closed-loop load at ``concurrency``; CPU is read as the window opens and closes."""
        marks: dict[str, Any] = {}

        def opened() -> None:
            deployment.emulator.reset_stats()  # zeroes its counters and its CPU clock
            marks["start"] = Snapshot(deployment, self.upstream)

        def closed() -> None:
            marks["end"] = Snapshot(deployment, self.upstream)
            marks["emulator"] = deployment.emulator.stats()
            # The timeline is bounded (the emulator keeps its last events), so this is the
            # window's tail: thousands of invocations, plenty for percentiles.
            marks["events"] = deployment.emulator.events(since=marks["start"].at)

        outcome = self.load.run(self._job(deployment, payload, concurrency, self.plan.warmup,
                                          self.plan.duration, spread), opened, closed)
        figures = self._figures(scenario, deployment, round_number, concurrency, outcome,
                                marks, wait, limit)
        self.results.loads.append(figures)
        self.log(_describe(figures))
        return figures

    def _job(self, deployment: Deployment, payload: dict[str, Any], concurrency: int,
             warmup: float, duration: float, spread: float) -> dict[str, Any]:
        host, _, port = deployment.emulator.invoke_url.split("://", 1)[1].rpartition(":")
        return {"host": host, "port": int(port), "path": INVOKE_PATH, "body": json.dumps(payload),
                "concurrency": concurrency, "warmup": warmup, "duration": duration,
                "max_requests": MAX_REQUESTS, "timeout": 60.0, "spread": spread}

    def _figures(self, scenario: str, deployment: Deployment, round_number: int,
                 concurrency: int, outcome: dict[str, Any], marks: dict[str, Any],
                 wait: float, limit: float | None) -> LoadFigures:
        start, end, emulator = marks["start"], marks["end"], marks["emulator"]
        completed = outcome["completed"]
        seconds = {
            "runtime": end.runtime - start.runtime,
            "emulator": emulator["cpu_user_seconds"] + emulator["cpu_system_seconds"],
            "load": outcome["cpu_seconds"],
            "upstream": end.upstream - start.upstream,
        }
        wall = max(end.at - start.at, 1e-9)
        cores = {name: value / wall for name, value in seconds.items()}
        cores["machine"] = (end.machine_busy - start.machine_busy) / wall
        # Whatever else ran meanwhile: other tenants of a shared machine, and this process.
        cores["others"] = max(0.0, cores["machine"] - sum(cores[name] for name in seconds))
        inside = runtime_latencies(marks["events"], start.at, end.at)
        per_call = {name: value / completed * 1e6 if completed else 0.0
                    for name, value in seconds.items()}
        return LoadFigures(
            scenario=scenario, runtime=deployment.runtime.name, concurrency=concurrency,
            round=round_number, completed=completed, errors=outcome["errors"],
            throughput=outcome["throughput"], limit=limit,
            p50_ms=outcome["latency_ms"]["p50"], p99_ms=outcome["latency_ms"]["p99"],
            runtime_p50_ms=percentile(inside, 0.50) * 1000,
            runtime_p99_ms=percentile(inside, 0.99) * 1000,
            wait_ms=wait * 1000, max_in_flight=emulator["max_in_flight"],
            cpu_us=per_call, cores=cores)

    def sample_memory(self, deployment: Deployment, round_number: int,
                      handler: str = "bench.handlers.handler") -> MemoryFigures:
        """PSS with every slot busy in the fetch handler, then idle once all slots poll."""
        busy: dict[str, int] = {}
        hold = self.plan.hold_seconds
        payload = {"action": "fetch", "url": self.upstream.url(hold * 1000)}

        def opened() -> None:
            busy["slots"] = deployment.emulator.stats()["in_flight"]
            busy["pss"], busy["processes"] = tree_pss(deployment.process.pid)

        # The warm-up outlasts one invocation so that every caller is in its loop (spread
        # over one hold) before memory is read.
        self.load.run(self._job(deployment, payload, deployment.slots, warmup=1.5 * hold,
                                duration=0.5, spread=hold), opened)
        wait_until_polling(deployment, SETTLE_TIMEOUT)
        time.sleep(0.5)  # let closed sockets and finished greenlets be released
        pss_idle, processes = tree_pss(deployment.process.pid)
        figures = MemoryFigures(
            runtime=deployment.runtime.name, concurrency=deployment.slots, round=round_number,
            processes=processes, startup_seconds=deployment.startup_seconds,
            pss_start=deployment.pss_start, pss_idle=pss_idle, pss_busy=busy.get("pss", 0),
            busy_slots=busy.get("slots", 0), handler=handler)
        self.results.memory.append(figures)
        self.log(f"  memory {figures.runtime:17s} N={figures.concurrency:<5d} "
                 f"start {figures.pss_start / MIB:8.1f} MiB  idle {pss_idle / MIB:8.1f} MiB  "
                 f"busy {figures.pss_busy / MIB:8.1f} MiB "
                 f"({figures.busy_slots} in flight)  {processes} process(es)  "
                 f"startup {figures.startup_seconds:.1f} s")
        return figures

    # ---- the scenarios -----------------------------------------------------------------

    def sequential_noop(self) -> None:
        self.log("1. sequential no-op (AWS_LAMBDA_MAX_CONCURRENCY unset, one caller)")
        for round_number in range(self.plan.sequential_rounds):
            for runtime in order(round_number, SEQUENTIAL_RUNTIMES):
                with self._attempt(runtime, "noop", None), \
                        deploy(runtime, None, "bench.handlers.noop") as deployment:
                    self.run_load(deployment, "noop", {}, round_number=round_number,
                                  concurrency=1, wait=0.0, limit=None, spread=0.0)

    def concurrency_levels(self) -> None:
        self.log("2-3. I/O-bound throughput and memory at each N")
        for level in self.plan.levels:
            for round_number in range(self.plan.rounds_at(level)):
                for runtime in order(round_number):
                    reason = self.fork_problem(runtime, level)
                    if reason:
                        self._note(runtime, "memory", level, reason)
                        continue
                    with self._attempt(runtime, "concurrent", level), \
                            deploy(runtime, level, "bench.handlers.handler") as deployment:
                        if level in self.plan.io_levels:
                            self._io_loads(deployment, round_number)
                        self.sample_memory(deployment, round_number)

    def _io_loads(self, deployment: Deployment, round_number: int) -> None:
        level = deployment.slots
        loads = (
            ("sleep", {"action": "sleep", "seconds": SLEEP_SECONDS}),
            ("fetch", {"action": "fetch", "url": self.upstream.url(SLEEP_SECONDS * 1000)}),
        )
        for scenario, payload in loads:
            self.run_load(deployment, scenario, payload, round_number=round_number,
                          concurrency=level, wait=SLEEP_SECONDS, limit=level / SLEEP_SECONDS,
                          spread=SLEEP_SECONDS)

    def cpu_bound(self) -> None:
        from .handlers import spin  # imports requests; only this scenario needs it here

        level = self.plan.cpu_level
        self.results.spin_loops = loops = calibrate(spin, self.plan.spin_seconds)
        self.log(f"4. CPU-bound: {level} callers, {loops} loops (~{self.plan.spin_seconds * 1000:g}"
                 f" ms of CPU) per invocation")
        payload = {"action": "spin", "loops": loops}
        for round_number in range(self.plan.rounds):
            for runtime in order(round_number):
                with self._attempt(runtime, "spin", level), \
                        deploy(runtime, level, "bench.handlers.handler") as deployment:
                    self.run_load(deployment, "spin", payload, round_number=round_number,
                                  concurrency=level, wait=0.0, limit=None, spread=0.0)

    def app_memory(self) -> None:
        """Memory with an app-sized handler module (requests and boto3 imported at init):
        what each process pays for the function's own imports, K times or N times."""
        level = self.plan.app_level
        self.log(f"5. app-sized handler (requests + boto3) at N={level}: memory and startup")
        for round_number in range(self.plan.rounds):
            for runtime in order(round_number):
                with self._attempt(runtime, "app", level), \
                        deploy(runtime, level, APP_HANDLER) as deployment:
                    self.sample_memory(deployment, round_number, APP_HANDLER)

    # ---- guards ------------------------------------------------------------------------

    def fork_problem(self, runtime: Runtime, level: int) -> str | None:
        """Why awslambdaric should not fork ``level`` workers here, or None."""
        if runtime is not AWSLAMBDARIC:
            return None
        measured = [m.pss_busy / max(m.processes, 1) for m in self.results.memory
                    if m.runtime == runtime.name and m.processes > 1]
        if not measured:
            return None
        projected = max(measured) * (level + 1)
        available = psutil.virtual_memory().available
        if projected > FORK_MEMORY_SHARE * available:
            return (f"not run: {level} workers would need ~{projected / MIB:,.0f} MiB "
                    f"(measured {max(measured) / MIB:.1f} MiB per worker), more than "
                    f"{FORK_MEMORY_SHARE:.0%} of the {available / MIB:,.0f} MiB available")
        return None

    @contextlib.contextmanager
    def _attempt(self, runtime: Runtime, scenario: str, level: int | None) -> Iterator[None]:
        """A runtime that fails to start or stalls is noted, and the bench goes on."""
        try:
            yield
        except (DeploymentError, ServiceError, EmulatorError, TimeoutError, OSError) as problem:
            self._note(runtime, scenario, level, f"failed: {type(problem).__name__}: {problem}")

    def _note(self, runtime: Runtime, scenario: str, level: int | None, reason: str) -> None:
        self.results.notes.append(Note(runtime.name, scenario, level, reason))
        self.log(f"  {runtime.name} {scenario} N={level}: {reason}")


def runtime_latencies(events: list[dict[str, Any]], start: float, end: float) -> list[float]:
    """Seconds from dispatch (the /next answer leaves the emulator) to the runtime's answer,
    for invocations answered within [start, end], ascending."""
    dispatched: dict[str, float] = {}
    spans = []
    for event in events:
        kind = event["kind"]
        if kind == "dispatch":
            dispatched[event["request_id"]] = event["t"]
        elif kind == "answer" and start <= event["t"] <= end:
            sent = dispatched.pop(event.get("request_id", ""), None)
            if sent is not None:
                spans.append(event["t"] - sent)
    return sorted(spans)


def calibrate(spin: Callable[[dict[str, Any], Any], Any], seconds: float) -> int:
    """Loops of the spin handler that take ``seconds`` of CPU here (best of 3)."""
    probe = 20_000
    best = min(_cpu_time(spin, probe) for _ in range(3))
    return max(1000, int(probe * seconds / max(best, 1e-6)))


def _cpu_time(spin: Callable[[dict[str, Any], Any], Any], loops: int) -> float:
    started = time.process_time()
    spin({"loops": loops}, None)
    return time.process_time() - started


def _describe(f: LoadFigures) -> str:
    share = f" ({f.fraction_of_limit:.0%} of limit)" if f.limit else ""
    return (f"  {f.scenario:5s} {f.runtime:17s} N={f.concurrency:<4d} {f.throughput:8.0f}/s{share}"
            f"  p50 {f.p50_ms:7.2f} ms  p99 {f.p99_ms:7.2f} ms  (runtime {f.runtime_p50_ms:.2f} /"
            f" {f.runtime_p99_ms:.2f})  errors {f.errors}"
            f"  CPU us/inv runtime {f.cpu_us['runtime']:.0f} emulator {f.cpu_us['emulator']:.0f}"
            f" load {f.cpu_us['load']:.0f}  other tenants {f.cores['others']:.2f} cores")
