"""``lmi-gevent check HANDLER``: will this handler really run concurrently under lmi-gevent?

A migration doctor, in three steps:

1. **Import** the handler the way the runtime does (``gevent.monkey.patch_all()`` first, then
   the handler, then lmi-gevent's driver cooperation), in a subprocess whose working
   directory and ``LAMBDA_TASK_ROOT`` are the task root. Report the init error if any, the
   modules that were imported before patching (a ``sitecustomize``/``.pth`` did it), and the
   loaded extension modules known to block the whole process, with the fix for each.
2. **Run** the real runtime (``python -m lmi_gevent HANDLER`` with
   ``AWS_LAMBDA_MAX_CONCURRENCY=N`` and a low ``LMI_GEVENT_STALL_THRESHOLD``) against the
   embedded emulator: one warm-up invocation, one alone, then N at once, all with the
   sample event.
3. **Judge**: the invocations overlapped when the N together took clearly less than N times
   one alone (the emulator's ``max_in_flight`` cannot tell: invocations stuck behind a
   blocked hub still count as in flight); every stall the detector logged is named with
   its stack. Exit 0 when nothing blocks, 1 when something does, 2 for bad usage.

This module is imported by ``lmi_gevent.cli`` only for the ``check`` subcommand, and runs as
``python -m lmi_gevent.check`` for step 1, so its top level imports nothing heavy: the
probe must see the interpreter as the runtime's bootstrap does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

PROG = "lmi-gevent check"
DEFAULT_CONCURRENCY = 4
DEFAULT_THRESHOLD = 0.05  # low, to catch blocks that would add up under real load
DEFAULT_TIMEOUT = 30.0
INIT_TIMEOUT = 130.0  # the platform's init timeout on Managed Instances (at least)
# Below this, one invocation is too short for timing to show whether N of them overlapped.
MIN_MEASURABLE_SECONDS = 0.02
PROBE_FLAG = "--probe-import"  # internal: step 1, run in a subprocess


class UsageError(Exception):
    """Bad command line; the message names the flag or the handler at fault (exit 2)."""


# --- what we know about libraries that block the hub ---------------------------------------

class ModuleRisk(NamedTuple):
    module: str  # the name in sys.modules that gives the library away
    library: str
    why: str
    fix: str
    # Given the loaded module, False when it has been made cooperative; None: always a risk.
    still_blocks: Callable[[Any], bool] | None = None


def _psycopg2_without_wait_callback(module: Any) -> bool:
    extensions = getattr(module, "extensions", None)
    return extensions is None or extensions.get_wait_callback() is None


def _grpc_without_gevent(module: Any) -> bool:
    cygrpc = sys.modules.get("grpc._cython.cygrpc")
    return not getattr(cygrpc, "g_gevent_activated", False)


def _zmq_not_green(module: Any) -> bool:
    return "zmq.green" not in sys.modules


def _oracledb_thick(module: Any) -> bool:
    is_thin = getattr(module, "is_thin_mode", None)
    return is_thin is not None and not is_thin()


MODULE_RISKS: tuple[ModuleRisk, ...] = (
    ModuleRisk("MySQLdb", "mysqlclient (MySQLdb)",
               "libmysqlclient waits for the server inside C, so every query freezes all "
               "invocations in the process",
               "use PyMySQL, which cooperates: `pip install PyMySQL` and call "
               "`pymysql.install_as_MySQLdb()` before anything imports MySQLdb"),
    ModuleRisk("psycopg2", "psycopg2 without a wait callback",
               "libpq waits for the server inside C unless a wait callback is registered",
               "leave LMI_GEVENT_PSYCOPG2_WAIT_CALLBACK on (the default registers one), or "
               "move to psycopg 3", _psycopg2_without_wait_callback),
    ModuleRisk("_mysql_connector", "mysql-connector-python's C extension",
               "the C extension waits for the server inside C",
               "connect with `use_pure=True` (the pure-Python protocol cooperates)"),
    ModuleRisk("pymssql", "pymssql",
               "FreeTDS waits for the server inside C",
               "use python-tds (`pytds`), or run queries in gevent's threadpool "
               "(`gevent.get_hub().threadpool.apply(fn, args)`)"),
    ModuleRisk("cx_Oracle", "cx_Oracle",
               "Oracle's client library waits for the server inside C",
               "use python-oracledb in thin mode (its default)"),
    ModuleRisk("oracledb", "python-oracledb in thick mode",
               "thick mode waits inside Oracle's client library",
               "do not call `oracledb.init_oracle_client()`: thin mode cooperates",
               _oracledb_thick),
    ModuleRisk("pyodbc", "pyodbc",
               "ODBC drivers wait for the server inside C",
               "run queries in gevent's threadpool (`gevent.get_hub().threadpool.apply`)"),
    ModuleRisk("ibm_db", "ibm_db", "the Db2 client waits inside C",
               "run queries in gevent's threadpool (`gevent.get_hub().threadpool.apply`)"),
    ModuleRisk("cassandra.io.libevreactor", "cassandra-driver's libev reactor",
               "its event loop runs in C threads that the gevent hub cannot wait on",
               "pass `connection_class=cassandra.io.geventreactor.GeventConnection` "
               "to `Cluster`"),
    ModuleRisk("grpc", "grpcio without gevent mode",
               "gRPC's C core waits in its own threads; calls block the hub unless gRPC "
               "was told about gevent",
               "leave LMI_GEVENT_GRPC_GEVENT on (the default calls "
               "`grpc.experimental.gevent.init_gevent()` when grpc is imported)",
               _grpc_without_gevent),
    ModuleRisk("confluent_kafka", "confluent-kafka (librdkafka)",
               "produce/poll/flush/consume wait inside librdkafka",
               "call them with timeout=0 in a loop around `gevent.sleep()`, or in gevent's "
               "threadpool"),
    ModuleRisk("pylibmc", "pylibmc (libmemcached)",
               "libmemcached waits for the server inside C",
               "use pymemcache, which cooperates"),
    ModuleRisk("_ldap", "python-ldap", "libldap waits for the server inside C",
               "use ldap3, which cooperates"),
    ModuleRisk("pycurl", "pycurl", "libcurl's easy interface waits inside C",
               "use requests or urllib3, which cooperate"),
    ModuleRisk("zmq", "pyzmq without zmq.green",
               "libzmq sockets wait inside C", "`import zmq.green as zmq`", _zmq_not_green),
    ModuleRisk("_sqlite3", "sqlite3",
               "each call runs to completion in C (disk I/O, waiting on a database lock)",
               "keep statements short, or run long ones in gevent's threadpool"),
)


def loaded_risks(modules: dict[str, Any]) -> list[dict[str, str]]:
    """The libraries of :data:`MODULE_RISKS` that are loaded and still block."""
    found = []
    for risk in MODULE_RISKS:
        module = modules.get(risk.module)
        if module is None:
            continue
        try:
            blocks = risk.still_blocks is None or risk.still_blocks(module)
        except Exception:  # noqa: BLE001 - a library we cannot inspect counts as blocking
            blocks = True
        if blocks:
            found.append({"module": risk.module, "library": risk.library, "why": risk.why,
                          "fix": risk.fix})
    return found


# --- in the runtime under check: module globals that invocations rebind ----------------------

GLOBALS_ENV = "LMI_GEVENT_CHECK_GLOBALS"  # internal: set by check for the runtime it starts


class GlobalsWatch:
    """Process state that invocations change, which one process shares between them: the
    globals of the handler's module that invocations rebind (``global x; x = ...``), the
    working directory and environment variables.

    Under the official client each slot is a process with its own copy of all three; in
    concurrent mode the invocations running beside each other overwrite them. After each
    invocation the state is compared with its state after the one before: what is set once
    and then left alone (lazy initialisation, done by check's warm-up invocation) is not
    reported, nor is a shared object changed in place (a cache).
    """

    def __init__(self, module: Any) -> None:
        self.module = module
        self.previous: dict[tuple[str, str], Any] | None = None
        self.reported: set[tuple[str, str]] = set()

    def wrap(self, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def watched(event: Any, context: Any) -> Any:
            try:
                return handler(event, context)
            finally:
                self.after_invocation()

        return watched

    def snapshot(self) -> dict[tuple[str, str], Any]:
        state: dict[tuple[str, str], Any] = {
            ("global", name): id(value) for name, value in vars(self.module).items()
            if not name.startswith("__")}
        try:
            state[("cwd", "")] = os.getcwd()
        except OSError:  # removed under us
            state[("cwd", "")] = None
        state.update({("env", key): value for key, value in os.environ.items()
                      if key != "_X_AMZN_TRACE_ID"})  # per invocation by design
        return state

    def after_invocation(self) -> None:
        import logging

        now = self.snapshot()
        previous, self.previous = self.previous, now
        if previous is None:
            return
        for key in sorted(now.keys() | previous.keys()):
            if key in self.reported or previous.get(key) == now.get(key):
                continue
            self.reported.add(key)
            kind, name = key
            message = {
                "global": f"Invocations rebind the module global {name!r} of "
                          f"{self.module.__name__}",
                "cwd": "Invocations change the working directory (os.chdir)",
                "env": f"Invocations set os.environ[{name!r}]",
            }[kind]
            logging.getLogger("lmi_gevent").warning(
                "%s; in concurrent mode every invocation shares it.", message,
                extra={"sharedState": {"kind": kind, "name": name,
                                       "module": self.module.__name__}})


def watch_globals(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``handler``, reporting the process state that its invocations change (GlobalsWatch)."""
    module = sys.modules.get(getattr(handler, "__module__", None) or "")
    return handler if module is None else GlobalsWatch(module).wrap(handler)


# --- step 1: the import probe (runs in the subprocess) ---------------------------------------

def probe_import(out_path: str, handler: str) -> int:
    """Import ``handler`` as the runtime's bootstrap would; write what we saw as JSON."""
    from . import config as settings

    config, problems = settings.load()
    # The probe has no Runtime API; any other bad setting fails init, as in the runtime.
    problems = [p for p in problems if p.env != "AWS_LAMBDA_RUNTIME_API"]
    early: list[str] = []
    if not problems:
        from .cooperation import install
        from .patching import patch_all
        early = patch_all()
        install(psycopg2=config.psycopg2_wait_callback, grpc=config.grpc_gevent)  # as the runtime
    import json
    import time

    started = time.perf_counter()
    error = _config_error(problems) if problems else _load(handler, config.task_root)
    seconds = time.perf_counter() - started
    result = {"init_seconds": round(seconds, 6), "error": error,
              "imported_before_patching": early, "non_cooperative": loaded_risks(sys.modules)}
    with open(out_path, "w", encoding="utf-8") as out:
        json.dump(result, out)
    return 0


def _load(handler: str, task_root: str | None) -> dict[str, Any] | None:
    """Load the handler like the runtime; its init error body (trimmed), or None."""
    from .errors import describe_exception
    from .loader import load_handler

    sys.path.insert(0, task_root or os.getcwd())
    try:
        load_handler(handler)
    except BaseException as problem:  # noqa: BLE001 - SystemExit at import is an init error
        body, _ = describe_exception(problem)
        return {key: body.get(key) for key in ("errorType", "errorMessage", "stackTrace")}
    return None


def _config_error(problems: list[Any]) -> dict[str, Any]:
    from .errors import CONFIGURATION_ERROR

    return {"errorType": CONFIGURATION_ERROR, "stackTrace": [],
            "errorMessage": "; ".join(str(problem) for problem in problems)}


# --- the command line -------------------------------------------------------------------------

class Options(NamedTuple):
    handler: str
    root: str
    event: bytes
    event_name: str
    concurrency: int
    threshold: float
    timeout: float
    json: bool


class _ArgparseExit(Exception):
    """argparse has printed its own message (or --help); exit with ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _parser() -> Any:
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check that a Lambda handler's libraries cooperate with gevent: import it "
                    "as lmi-gevent would, run a sample event N times at once on the real "
                    "runtime, and report what blocks. Exit status: 0 fine, 1 a blocker "
                    "was found, 2 bad usage.")
    parser.add_argument("handler", nargs="?", default=os.environ.get("_HANDLER"),
                        metavar="HANDLER", help="module.function (default: $_HANDLER)")
    parser.add_argument("--event", metavar="FILE",
                        help="JSON file with the sample event (default: {})")
    parser.add_argument("--concurrency", metavar="N", type=int, default=DEFAULT_CONCURRENCY,
                        help=f"invocations at once (2-1600, default {DEFAULT_CONCURRENCY})")
    parser.add_argument("--root", metavar="DIR", default=os.environ.get("LAMBDA_TASK_ROOT", "."),
                        help="the task root holding the handler's module (default: "
                             "$LAMBDA_TASK_ROOT or the current directory)")
    parser.add_argument("--threshold", metavar="SECONDS", type=float, default=DEFAULT_THRESHOLD,
                        help="report blocks of the event loop longer than this "
                             f"(default {DEFAULT_THRESHOLD:g})")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=DEFAULT_TIMEOUT,
                        help=f"function timeout per invocation (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (for CI)")
    return parser


def parse_options(argv: list[str]) -> Options:
    """Parse and validate ``argv``; raises UsageError naming what is wrong."""
    from .config import MAX_CONCURRENCY_LIMIT

    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse printed its message (or --help)
        raise _ArgparseExit(int(stop.code or 0)) from None
    if not args.handler:
        raise UsageError("HANDLER is missing: pass one (e.g. `lmi-gevent check app.handler`) "
                         "or set _HANDLER")
    _check_handler_name(args.handler)
    if not 2 <= args.concurrency <= MAX_CONCURRENCY_LIMIT:
        raise UsageError(f"--concurrency must be from 2 to {MAX_CONCURRENCY_LIMIT} (concurrent "
                         f"mode), got {args.concurrency}")
    for flag, value in (("--threshold", args.threshold), ("--timeout", args.timeout)):
        if not 0 < value < float("inf"):
            raise UsageError(f"{flag} must be a number of seconds above 0, got {value:g}")
    if not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root}: not a directory (it must hold the handler's "
                         "module)")
    event, event_name = _read_event(args.event)
    return Options(args.handler, os.path.abspath(args.root), event, event_name,
                   args.concurrency, args.threshold, args.timeout, args.json)


def _check_handler_name(handler: str) -> None:
    from .errors import RuntimeFault
    from .loader import split_handler

    try:
        split_handler(handler)
    except RuntimeFault as fault:
        raise UsageError(f"HANDLER: {fault.message}") from None


def _read_event(path: str | None) -> tuple[bytes, str]:
    import json

    if path is None:
        return b"{}", "{}"
    try:
        with open(path, "rb") as source:
            data = source.read()
    except OSError as problem:
        raise UsageError(f"--event {path}: cannot read it ({problem.strerror or problem})") \
            from None
    try:
        json.loads(data)
    except ValueError as problem:
        raise UsageError(f"--event {path}: not a JSON document ({problem})") from None
    return data, path


# --- a finding, and the whole report -------------------------------------------------------------

class Finding(NamedTuple):
    severity: str  # "blocker" or "warning"
    kind: str  # init-error, stall, no-overlap, failed-invocation, early-import, non-cooperative,
    #            shared-global, shared-cwd, shared-env
    message: str
    fix: str = ""
    details: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "kind": self.kind, "message": self.message,
                "fix": self.fix, "details": list(self.details)}


def main(argv: list[str]) -> int:
    """``lmi-gevent check ARGS``: 0 nothing blocks, 1 a blocker was found, 2 bad usage."""
    try:
        options = parse_options(argv)
    except _ArgparseExit as stop:
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


def run_check(options: Options) -> dict[str, Any]:
    """Steps 1-3; the report as a JSON-ready dict."""
    findings: list[Finding] = []
    imported = import_handler(options)
    findings += import_findings(imported)
    run = None
    if imported.get("error") is None:
        run = run_handler(options)
        findings += run_findings(run, options)
    findings.sort(key=lambda finding: finding.severity != "blocker")
    blockers = sum(1 for finding in findings if finding.severity == "blocker")
    return {
        "handler": options.handler, "root": options.root, "event": options.event_name,
        "concurrency": options.concurrency, "stall_threshold": options.threshold,
        "ok": blockers == 0, "blockers": blockers, "warnings": len(findings) - blockers,
        "findings": [finding.as_dict() for finding in findings],
        "import": imported, "run": run,
    }


def _runtime_environment(options: Options) -> dict[str, str]:
    """What the runtime would see on Managed Instances (as far as the handler cares)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env.update({
        "LAMBDA_TASK_ROOT": options.root, "_HANDLER": options.handler,
        "AWS_LAMBDA_MAX_CONCURRENCY": str(options.concurrency),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "lambda-managed-instances",
        "PYTHONUNBUFFERED": "1",
        GLOBALS_ENV: "1",
        # An uninstalled checkout must still find lmi_gevent in the subprocess.
        "PYTHONPATH": os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p),
    })
    return env


# --- step 1: import ----------------------------------------------------------------------------

def import_handler(options: Options) -> dict[str, Any]:
    """Run the import probe in a fresh interpreter; what it saw, or why it could not say."""
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lmi-gevent-check-") as scratch:
        out_path = os.path.join(scratch, "import.json")
        argv = [sys.executable, "-m", "lmi_gevent.check", PROBE_FLAG, out_path, options.handler]
        try:
            done = subprocess.run(argv, cwd=options.root, env=_runtime_environment(options),
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=INIT_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return _probe_failed(f"importing the handler took over {INIT_TIMEOUT:g}s "
                                 "(the platform's init timeout)", "Runtime.InitTimeout")
        if done.returncode != 0 or not os.path.exists(out_path):
            output = (done.stdout + done.stderr).decode("utf-8", "replace")
            return _probe_failed(f"the import probe exited with status {done.returncode}",
                                 "Runtime.ExitError", output.splitlines()[-20:])
        with open(out_path, encoding="utf-8") as result:
            return json.load(result)


def _probe_failed(message: str, error_type: str, lines: list[str] | None = None
                  ) -> dict[str, Any]:
    return {"init_seconds": None, "imported_before_patching": [], "non_cooperative": [],
            "error": {"errorType": error_type, "errorMessage": message,
                      "stackTrace": lines or []}}


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


# --- step 2: run --------------------------------------------------------------------------------

PHASES = ("warm_up", "alone", "concurrent")


def run_handler(options: Options) -> dict[str, Any]:
    """Start the real runtime on the emulator and invoke: 1 warm-up, 1 alone, N at once."""
    from .emulator.api import Emulator

    env = _runtime_environment(options)
    env.update({"LMI_GEVENT_STALL_THRESHOLD": f"{options.threshold:g}",
                # Stall reports are parsed from JSON records; WARN keeps them from being
                # filtered out by a stricter level in the caller's environment.
                "AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "WARN"})
    argv = [sys.executable, "-m", "lmi_gevent", options.handler]
    with Emulator(concurrency=options.concurrency, timeout=options.timeout) as emulator:
        runtime = emulator.start_runtime(argv, env=env, cwd=options.root)
        if not _wait_for_polls(emulator, runtime, options.concurrency):
            runtime.stop(grace=0.5)
            return {"started": False, "exit_code": runtime.returncode,
                    "output_tail": runtime.output().splitlines()[-20:]}
        phases = {name: _invoke(emulator, options, count)
                  for name, count in zip(PHASES, (1, 1, options.concurrency), strict=True)}
        runtime.stop(grace=5.0)  # SIGTERM drains; then every record it wrote is collected
        output = runtime.output()
    return {"started": True, **_timings(phases, options.concurrency),
            "failed": [failure for phase in phases.values() for failure in phase["failed"]],
            "stalls": _stalls(output, phases), "shared_state": _shared_state(output)}


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


def _invoke(emulator: Any, options: Options, count: int) -> dict[str, Any]:
    """Invoke ``count`` copies of the event at once; their emulator-side timeline."""
    since = emulator.mark(f"check: {count} invocation(s)")["t"]
    results = emulator.invoke_many([options.event] * count, parallel=count,
                                   timeout=options.timeout + 30)
    events = emulator.events(since=since)
    dispatched = {e["request_id"]: e["t"] for e in events if e["kind"] == "dispatch"}
    answered = {e["request_id"]: e["t"] for e in events if e["kind"] == "answer"}
    failed = [_failure(result) for result in results
              if result.status != 200 or result.function_error]
    return {"dispatched": dispatched, "answered": answered, "failed": failed}


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
    """
    alone = _span(phases["alone"])
    together = _span(phases["concurrent"])
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
    import json

    found = []
    for line in output.splitlines():
        if not line.startswith("{") or '"sharedState"' not in line:
            continue
        try:
            shared = json.loads(line).get("sharedState")
        except ValueError:
            continue
        if isinstance(shared, dict):
            found.append({key: str(shared.get(key)) for key in ("kind", "name", "module")})
    return found


# --- step 3: judge -----------------------------------------------------------------------------

def run_findings(run: dict[str, Any], options: Options) -> list[Finding]:
    if not run["started"]:
        return [Finding("blocker", "init-error",
                        f"the runtime exited with status {run['exit_code']} before serving "
                        "(it imported fine on its own: check the environment it needs)",
                        "see the runtime's last lines below", tuple(run["output_tail"]))]
    total = sum(run["invocations"].values())
    findings = [_failed_finding(failure, count, total)
                for failure, count in _grouped(run["failed"])]
    overlapped = overlap_verdict(run, options.concurrency)
    findings += [_stall_finding(stall, options, overlapped) for stall in run["stalls"]]
    if overlapped is False:
        findings.append(_no_overlap_finding(run, options.concurrency))
    findings += [_shared_state_finding(shared) for shared in run.get("shared_state", [])]
    return findings


def _shared_state_finding(shared: dict[str, str]) -> Finding:
    what = {"global": f"rebind the module global `{shared['name']}` of {shared['module']}",
            "cwd": "change the working directory (os.chdir)",
            "env": f"set the environment variable `{shared['name']}`"}.get(shared["kind"],
                                                                         shared["name"])
    return Finding(
        "warning", f"shared-{shared['kind']}",
        f"invocations {what}: in concurrent mode every invocation shares it, so the "
        "invocations running beside one another overwrite each other's value (under the "
        "official client each slot was a process with its own copy)",
        "keep per-invocation values in local variables, the event or `contextvars`; pass "
        "paths and settings explicitly instead of through the working directory or the "
        "environment; a module-level cache or client shared on purpose is fine")


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
        (f"stack {where} (most recent call last):", *_stack_lines(stall["stack"])))


def _stack_lines(stack: list[str]) -> list[str]:
    """``file:line in function`` entries, each followed by its source line when readable."""
    import linecache

    lines = []
    for entry in stack:
        lines.append(f"  {entry}")
        place, _, _ = entry.rpartition(" in ")
        filename, _, lineno = place.rpartition(":")
        source = linecache.getline(filename, int(lineno)).strip() if lineno.isdigit() else ""
        if source:
            lines.append(f"      {source}")
    return lines


def _no_overlap_finding(run: dict[str, Any], concurrency: int) -> Finding:
    return Finding(
        "blocker", "no-overlap",
        f"the {concurrency} invocations did not overlap: together they took "
        f"{run['concurrent_seconds']:.3f}s, {run['concurrent_seconds'] / run['alone_seconds']:.1f}"
        f" times one alone ({run['alone_seconds']:.3f}s); effective concurrency "
        f"{run['effective_concurrency']:g} of {concurrency}",
        "something holds the event loop for most of each invocation: see the stalls and the "
        "non-cooperative modules reported here")


# --- the human-readable report -------------------------------------------------------------

def render_text(report: dict[str, Any]) -> str:
    title = (f"{PROG} {report['handler']}  (task root {report['root']}, event "
             f"{report['event']}, {report['concurrency']} at once, stall threshold "
             f"{report['stall_threshold']:g}s)")
    lines = [title, ""]
    lines += _import_summary(report["import"])
    lines += _run_summary(report["run"], report["concurrency"])
    lines.append("")
    for finding in report["findings"]:
        lines.append(f"{finding['severity'].upper():8} {finding['message']}")
        lines += [f"         {detail}" for detail in finding["details"]]
        if finding["fix"]:
            lines.append(f"         fix: {finding['fix']}")
    if report["findings"]:
        lines.append("")
    verdict = ("OK: nothing blocks concurrent invocations" if report["ok"]
               else "NOT READY: fix the blockers above")
    lines.append(f"{verdict} ({report['blockers']} blocker(s), {report['warnings']} "
                 f"warning(s)).")
    return "\n".join(lines) + "\n"


def _import_summary(imported: dict[str, Any]) -> list[str]:
    if imported.get("error") is not None:
        return ["import (patched, as the runtime does): FAILED"]
    risky = ", ".join(risk["module"] for risk in imported.get("non_cooperative") or []) or "none"
    early = ", ".join(imported.get("imported_before_patching") or []) or "none"
    return [f"import (patched, as the runtime does): ok in {imported['init_seconds']:.3f}s",
            f"  imported before patching: {early}",
            f"  known non-cooperative modules loaded: {risky}"]


def _run_summary(run: dict[str, Any] | None, concurrency: int) -> list[str]:
    if run is None:
        return ["run: skipped (init failed)"]
    if not run["started"]:
        return ["run: the runtime did not start"]
    alone, together = run["alone_seconds"], run["concurrent_seconds"]
    verdict = {True: "overlapped", False: "did NOT overlap",
               None: "too quick to tell whether they overlapped"}[overlap_verdict(run, concurrency)]
    timing = (f"alone {alone:.3f}s, {concurrency} at once {together:.3f}s, effective "
              f"concurrency {run['effective_concurrency']:g} of {concurrency}"
              if alone is not None and together is not None else "no timings (timed out)")
    return [f"run (1 warm-up, 1 alone, {concurrency} at once): {verdict}",
            f"  {timing}",
            f"  failed invocations: {len(run['failed'])}, stalls: {len(run['stalls'])}, "
            f"shared process state changed by invocations: {len(run.get('shared_state', []))}"]


if __name__ == "__main__":
    # Only the probe runs this way: `python -m lmi_gevent.check --probe-import OUT HANDLER`.
    if len(sys.argv) != 4 or sys.argv[1] != PROBE_FLAG:
        sys.exit(f"usage: python -m lmi_gevent.check {PROBE_FLAG} OUT HANDLER "
                 f"(internal; run `{PROG} --help`)")
    sys.exit(probe_import(sys.argv[2], sys.argv[3]))
