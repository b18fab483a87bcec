"""Every setting lmi-gevent reads, declared once: environment key, parser, default and doc.

The README's settings table is checked against :data:`SETTINGS` by the test suite, so a
setting cannot exist without documentation. This module imports only the stdlib pieces
that are safe before ``gevent.monkey.patch_all()`` (no threading, no ssl).
"""

from __future__ import annotations

import os

from .records import Record
from .runtime_api.address import runtime_api_address

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping

    from .runtime_api.delivery import RetryPolicy

MAX_CONCURRENCY_LIMIT = 1600  # the platform's upper bound for AWS_LAMBDA_MAX_CONCURRENCY
# Internal, never set by users: a supervisor's assignment to the worker it starts fresh
# (lmi_gevent/workers/assignment.py); here so that a classic start checks it without
# importing the workers package.
ASSIGNMENT_ENV = "_LMI_GEVENT_WORKER"


class ConfigError(ValueError):
    """A setting has a value lmi-gevent cannot use; ``env`` names the variable at fault."""

    def __init__(self, env: str, message: str) -> None:
        super().__init__(f"{env}: {message}")
        self.env = env


class Setting(Record):
    name: str
    env: str
    parse: Callable[[str, str], Any]  # (env key, raw text) -> value; raises ConfigError
    default: Any
    doc: str


def _optional_text(env: str, raw: str) -> str | None:
    return raw or None


def _runtime_api(env: str, raw: str) -> str:
    if runtime_api_address(raw) is None:
        raise ConfigError(env, f"expected host:port of the Runtime API (no scheme, no path), "
                               f"got {raw!r}")
    return raw


def _max_concurrency(env: str, raw: str) -> int:
    text = raw.strip()
    if text == "":
        return 1
    try:
        value = int(text, 10)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= MAX_CONCURRENCY_LIMIT:
        raise ConfigError(
            env,
            f"must be a whole number from 1 to {MAX_CONCURRENCY_LIMIT} "
            f"(unset or 1 = sequential), got {raw!r}",
        )
    return value


def _workers(env: str, raw: str) -> str | int:
    text = raw.strip().lower()
    if text in ("", "auto"):
        return "auto"
    try:
        value = int(text, 10)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_CONCURRENCY_LIMIT:
        raise ConfigError(env, f"expected `auto` or a whole number from 1 to "
                               f"{MAX_CONCURRENCY_LIMIT} (1 = one process), got {raw!r}")
    return value


def _log_format(env: str, raw: str) -> str:
    # The official client treats anything but JSON (any case) as text, without failing init.
    return "JSON" if raw.upper() == "JSON" else "Text"


_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}
LOG_LEVELS = ("NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(env: str, raw: str) -> str | None:
    """The level name as the official client reads it: ``TRACE`` (that spelling) is DEBUG,
    others in any case; an unknown name is kept, and ignored by the log, as it ignores it."""
    if not raw:
        return None
    text = "DEBUG" if raw == "TRACE" else raw.upper()
    return _LEVEL_ALIASES.get(text, text)


def _fd(env: str, raw: str) -> int | None:
    if not raw:
        return None
    try:
        value = int(raw, 10)  # as the official client reads it: spaces and a + sign allowed
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(env, f"expected a file descriptor number, got {raw!r}")
    return value


def _seconds(env: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(env, f"expected a number of seconds >= 0, got {raw!r}")
    return value


def _count(env: str, raw: str) -> int:
    text = raw.strip()
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(env, f"expected a whole number >= 1, got {raw!r}")
    return int(text)


def _on_off(env: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("", "1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(env, f"expected on/off (1/0, true/false, yes/no), got {raw!r}")


def _multiple(env: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 1 <= value < float("inf"):
        raise ConfigError(env, f"expected a number >= 1 (a multiple of "
                               f"LMI_GEVENT_STALL_THRESHOLD), got {raw!r}")
    return value


def _seconds_or_off(env: str, raw: str) -> float | None:
    if raw.strip().lower() in ("off", "false", "no", "none", "-1"):
        return None
    return _seconds(env, raw)


def parse_base_path(env: str, raw: str) -> str | None:
    """``/v1`` from ``v1``, ``/v1/`` or ``/v1``; None for an empty path or ``/``."""
    segments = raw.strip().strip("/")
    if not segments:
        return None
    if "//" in segments or any(c in "?#%" or c.isspace() for c in segments):
        raise ConfigError(env, f"expected a URL path such as /v1 or /api/orders (no query, "
                               f"fragment, percent escape, space or empty segment), got {raw!r}")
    return "/" + segments


SETTINGS: tuple[Setting, ...] = (
    Setting("runtime_api", "AWS_LAMBDA_RUNTIME_API", _runtime_api, None,
            "host:port of the Runtime API (`host` alone means port 80, `[::1]:9001` an IPv6 "
            "address; a scheme or a path is an error). Set by Lambda; required."),
    Setting("handler", "_HANDLER", _optional_text, None,
            "The handler (`module.function`) when none is given on the command line. Set by Lambda."),
    Setting("task_root", "LAMBDA_TASK_ROOT", _optional_text, None,
            "Directory put first on `sys.path` before the handler is imported "
            "(the current directory when unset)."),
    Setting("max_concurrency", "AWS_LAMBDA_MAX_CONCURRENCY", _max_concurrency, 1,
            "Invocations served at once. Unset, empty or 1: the classic sequential loop, no "
            f"gevent. 2-{MAX_CONCURRENCY_LIMIT}: concurrent mode. Set by Lambda Managed Instances."),
    Setting("workers", "LMI_GEVENT_WORKERS", _workers, "auto",
            "Concurrent mode: worker processes sharing the N slots. `auto`: the CPUs this "
            "process may use (affinity and cgroup CPU quota); a number: that many; `1`: one "
            "process, no supervisor. Never more than AWS_LAMBDA_MAX_CONCURRENCY."),
    Setting("worker_restart_initial", "LMI_GEVENT_WORKER_RESTART_INITIAL", _seconds, 0.1,
            "Seconds before a worker process that died is replaced; the delay doubles while "
            "replacements keep dying (crash-loop back-off)."),
    Setting("worker_restart_max", "LMI_GEVENT_WORKER_RESTART_MAX", _seconds, 10.0,
            "Cap, in seconds, on the delay before replacing a dead worker; a worker that "
            "lived longer than this resets the back-off."),
    Setting("worker_restart_limit", "LMI_GEVENT_WORKER_RESTART_LIMIT", _count, 10,
            "Replacements of one worker that died young (before it served, or sooner than "
            "LMI_GEVENT_WORKER_RESTART_MAX) in a row before the runtime gives up and exits 1, "
            "so the platform replaces the execution environment."),
    Setting("worker_fork", "LMI_GEVENT_WORKER_FORK", _on_off, True,
            "Concurrent mode with workers: fork the first workers from the starting process, "
            "before it imports more than its settings (each goes on with gevent's patching, "
            "no second interpreter start: a faster cold start); `off` starts each as a fresh "
            "`python -m lmi_gevent`, as replacements always are. Forking is skipped when a "
            "thread already runs then (started by a `sitecustomize` or `.pth` file)."),
    Setting("worker_heartbeat", "LMI_GEVENT_WORKER_HEARTBEAT", _seconds, 0.5,
            "Seconds between a worker's event-loop heartbeats in the shared status the "
            "supervisor reads (0 turns them off)."),
    Setting("log_format", "AWS_LAMBDA_LOG_FORMAT", _log_format, "Text",
            "`JSON` or `Text` log records. Set by Lambda (always JSON on Managed Instances)."),
    Setting("log_level", "AWS_LAMBDA_LOG_LEVEL", _log_level, None,
            "Root logger level: TRACE, DEBUG, INFO, WARN, ERROR or FATAL (any case but TRACE, "
            "as the official client reads it). Unset: Python's default (WARNING); an unknown "
            "name is ignored with a warning, as the official client ignores it."),
    Setting("telemetry_fd", "_LAMBDA_TELEMETRY_LOG_FD", _fd, None,
            "File descriptor for framed log records (classic Lambda). Removed from the "
            "environment once read."),
    Setting("log_socket", "_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET", _optional_text, None,
            "Unix socket that stdout and stderr are connected to (Managed Instances)."),
    Setting("drain_timeout", "LMI_GEVENT_DRAIN_TIMEOUT", _seconds, 10.0,
            "Seconds that in-flight invocations get to finish after SIGTERM/SIGINT before "
            "they are cut (and answered with an error). A second signal exits at once."),
    Setting("retry_initial", "LMI_GEVENT_RETRY_INITIAL", _seconds, 0.1,
            "First back-off delay, in seconds, after a failed `/next`; it doubles per failure."),
    Setting("retry_max", "LMI_GEVENT_RETRY_MAX", _seconds, 5.0,
            "Cap, in seconds, on the back-off delay between `/next` retries (jittered)."),
    Setting("answer_retry_initial", "LMI_GEVENT_ANSWER_RETRY_INITIAL", _seconds, 0.05,
            "Delay, in seconds, before the second retry of an answer (response, error, init "
            "error) whose post was lost; it doubles per failure (jittered). The first retry "
            "is immediate."),
    Setting("answer_retry_max", "LMI_GEVENT_ANSWER_RETRY_MAX", _seconds, 1.0,
            "Cap, in seconds, on the delay between attempts to post an answer. Answers are "
            "retried until the invocation's deadline has passed."),
    Setting("answer_retry_budget", "LMI_GEVENT_ANSWER_RETRY_BUDGET", _seconds, 30.0,
            "Seconds an answer is retried when there is no deadline to go by: the init error, "
            "or an invocation whose `Lambda-Runtime-Deadline-Ms` was unusable."),
    Setting("stall_threshold", "LMI_GEVENT_STALL_THRESHOLD", _seconds_or_off, 0.1,
            "Concurrent mode: warn when a handler blocks the event loop longer than this many "
            "seconds (`off` disables the stall detector)."),
    Setting("wedge_after", "LMI_GEVENT_WEDGE_AFTER", _multiple, 20.0,
            "Concurrent mode: once the event loop has not run for this many times "
            "LMI_GEVENT_STALL_THRESHOLD (2 s by default), the stall detector reports the block "
            "while it lasts (the invocation, how long so far, the stack), again at twice that "
            "time, four times, and so on."),
    Setting("wedge_timeout", "LMI_GEVENT_WEDGE_TIMEOUT", _seconds_or_off, 10.0,
            "Concurrent mode: once the event loop has not run for this many seconds, a native "
            "thread answers the invocation holding it and those handed to its open polls with "
            "`Runtime.WorkerWedged`, and the process exits (a supervisor replaces it; `off`: "
            "wait for the deadline + LMI_GEVENT_DEADLINE_GRACE instead)."),
    Setting("deadline_grace", "LMI_GEVENT_DEADLINE_GRACE", _seconds_or_off, 1.0,
            "Concurrent mode: seconds past an invocation's deadline after which its greenlet is "
            "killed, the invocation answered with a timeout error and its slot reused "
            "(`off` keeps running it, like the platform does)."),
    Setting("psycopg2_wait_callback", "LMI_GEVENT_PSYCOPG2_WAIT_CALLBACK", _on_off, True,
            "Concurrent mode: register a gevent wait callback with psycopg2 so its queries let "
            "other invocations run (`off` if the handler needs COPY or large objects, which "
            "psycopg2 refuses with a wait callback)."),
    Setting("grpc_gevent", "LMI_GEVENT_GRPC_GEVENT", _on_off, True,
            "Concurrent mode: call `grpc.experimental.gevent.init_gevent()` as soon as the "
            "handler imports grpc, so gRPC calls (Google Cloud clients) let other invocations "
            "run (`off` leaves gRPC alone: each call then blocks every invocation)."),
    Setting("powertools_isolation", "LMI_GEVENT_POWERTOOLS_ISOLATION", _on_off, True,
            "Concurrent mode: when the handler imports Powertools for AWS Lambda, keep its "
            "per-invocation state per invocation (Logger keys, Metrics sets, the event "
            "handler's `current_event`/`context`), as a process per slot would (`off` leaves "
            "Powertools alone: concurrent invocations then share that state)."),
    Setting("pool_sizing", "LMI_GEVENT_POOL_SIZING", _on_off, True,
            "Concurrent mode: where the handler leaves them at their defaults, size botocore's "
            "`max_pool_connections`, `requests`' `HTTPAdapter(pool_maxsize)` and urllib3's "
            "`PoolManager(maxsize)` to the slots of this process, so a client shared by every "
            "invocation reuses its connections instead of opening and discarding them "
            "(`off` keeps the libraries' sizes: 10, 10 and 1)."),
    Setting("sentry_integration", "LMI_GEVENT_SENTRY_INTEGRATION", _on_off, True,
            "Both modes: when the handler imports Sentry's `AwsLambdaIntegration`, give it the "
            "stand-in for awslambdaric's `bootstrap` module it patches, so it wraps the "
            "handler (an isolation scope per invocation, exceptions captured); `off` leaves "
            "it without one (it then does nothing)."),
    Setting("http_base_path", "LMI_GEVENT_HTTP_BASE_PATH", parse_base_path, None,
            "`lmi_gevent.http`: the base path mapping of an API Gateway custom domain (`/v1`), "
            "which API Gateway leaves in the event's path; a request whose path starts with it "
            "gets it as `SCRIPT_NAME` and the rest as `PATH_INFO`. Unset: no base path "
            "(`wsgi_handler(app, base_path=...)` overrides it)."),
)


class Config:
    """The parsed settings, one attribute per :data:`SETTINGS` entry."""

    runtime_api: str
    handler: str | None
    task_root: str | None
    max_concurrency: int
    workers: str | int
    worker_restart_initial: float
    worker_restart_max: float
    worker_restart_limit: int
    worker_fork: bool
    worker_heartbeat: float
    log_format: str
    log_level: str | None
    telemetry_fd: int | None
    log_socket: str | None
    drain_timeout: float
    retry_initial: float
    retry_max: float
    answer_retry_initial: float
    answer_retry_max: float
    answer_retry_budget: float
    stall_threshold: float | None
    wedge_after: float
    wedge_timeout: float | None
    deadline_grace: float | None
    psycopg2_wait_callback: bool
    grpc_gevent: bool
    powertools_isolation: bool
    pool_sizing: bool
    sentry_integration: bool
    http_base_path: str | None

    def __init__(self, **values: Any) -> None:
        for setting in SETTINGS:
            setattr(self, setting.name, values.get(setting.name, setting.default))

    @property
    def concurrent(self) -> bool:
        return self.max_concurrency > 1

    def worker_count(self, usable_cpus: Callable[[], int] | None = None) -> int:
        """Worker processes to run: 1 in sequential mode, never more than N slots."""
        if not self.concurrent:
            return 1
        if self.workers == "auto":
            if usable_cpus is None:
                from .workers.cpus import usable_cpus as detected
                usable_cpus = detected
            wanted = usable_cpus()
        else:
            wanted = int(self.workers)
        return max(1, min(wanted, self.max_concurrency))

    @property
    def answer_retry(self) -> RetryPolicy:
        """The :class:`lmi_gevent.runtime_api.delivery.RetryPolicy` these settings describe."""
        from .runtime_api.delivery import (
            RetryPolicy,  # not at import: delivery pulls in the client
        )

        return RetryPolicy(self.answer_retry_initial, self.answer_retry_max,
                           self.answer_retry_budget)

    def __repr__(self) -> str:
        fields = ", ".join(f"{s.name}={getattr(self, s.name)!r}" for s in SETTINGS)
        return f"Config({fields})"


def read_setting(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """Parse one setting by attribute name; unset means its default."""
    environ = os.environ if environ is None else environ
    setting = next(s for s in SETTINGS if s.name == name)
    raw = environ.get(setting.env)
    if raw is None:
        return setting.default
    return setting.parse(setting.env, raw)


def load(environ: Mapping[str, str] | None = None) -> tuple[Config, list[ConfigError]]:
    """Read every setting; return the config and the problems found (never raises).

    Problems are collected rather than raised so that the runtime can report them all in one
    init error. A setting at fault keeps its default in the returned config.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[ConfigError] = []
    for setting in SETTINGS:
        try:
            values[setting.name] = read_setting(setting.name, environ)
        except ConfigError as problem:
            problems.append(problem)
    config = Config(**values)
    if config.runtime_api is None and not any(p.env == "AWS_LAMBDA_RUNTIME_API" for p in problems):
        problems.append(ConfigError("AWS_LAMBDA_RUNTIME_API", "is not set; it must be host:port "
                                    "of the Lambda Runtime API (use `lmi-gevent local` to run "
                                    "a handler on this machine)"))
    return config, problems
