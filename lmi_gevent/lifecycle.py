"""The runtime's life, top to bottom: the steps every process of ``lmi-gevent HANDLER`` takes.

1. read the settings from the environment (nothing heavy imported yet);
2. concurrent mode: on several CPUs, fork K worker processes (:mod:`lmi_gevent.workers.forking`,
   each goes on with these steps for its share of the slots) and hand over to their
   supervisor (:mod:`lmi_gevent.workers.supervisor`); otherwise ``gevent.monkey.patch_all()`` before anything could import ssl,
   threading, urllib3 or the handler;
3. set up the function's log (text or JSON; stdout, the telemetry fd or the LMI log socket);
4. load the handler and run its lifespan startup (an ASGI app's); on failure post
   ``/init/error`` once and exit non-zero;
5. serve: the sequential loop, or N slot greenlets;
6. on SIGTERM/SIGINT stop polling, drain the invocations in flight, run the lifespan
   shutdown, exit 0.

Steps 1-2 import only this module and :mod:`lmi_gevent.config` (a worker also
:mod:`lmi_gevent.workers.assignment`); every later step imports what it uses inside the
function, after step 2 has decided whether to patch (docs/design.md, invariants 1 and 2).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys

from . import config as settings

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any, Iterator, NoReturn

    from .config import Config, ConfigError
    from .invocation.logs import FunctionLog
    from .runtime_api.client import RuntimeApiClient
    from .runtime_api.delivery import RetryPolicy
    from .workers.assignment import WorkerAssignment

log = logging.getLogger("lmi_gevent")

INIT_ERROR_WARNING = ("LAMBDA_WARNING: the function failed to initialise, so no invocation can "
                      "run. The error below comes from the handler module or its settings.")


def bootstrap(handler_arg: str | None) -> int:
    """``lmi-gevent HANDLER``: steps 1-6; the process's exit code."""
    # Step 1: configuration, with nothing but the stdlib's lightest modules imported.
    assignment = None
    if settings.ASSIGNMENT_ENV in os.environ:  # a supervisor started this process
        from .workers import assignment as assignments

        assignment = assignments.assignment()
        if assignment is not None:
            assignments.die_with_supervisor(assignment.supervisor_pid)
    config, problems = settings.load()
    fatal = [p for p in problems if p.env == "AWS_LAMBDA_RUNTIME_API"]
    if fatal:
        print(f"lmi-gevent: {fatal[0]}", file=sys.stderr)
        return 2
    handler = handler_arg or config.handler
    if not handler:
        print("lmi-gevent: no handler: pass HANDLER (e.g. `lmi-gevent app.handler`) or set "
              "_HANDLER", file=sys.stderr)
        return 2

    # Step 2: patch before anything that could import ssl, threading or the handler.
    # With a configuration problem we stay sequential just long enough to report it.
    early_imports: list[str] = []
    if config.concurrent and not problems and assignment is None:
        workers = config.worker_count()
        if workers > 1:  # step 5 on several cores: K workers, each doing steps 1-6
            first = None
            from .workers import forking
            from .workers.assignment import WorkerAssignment
            if config.worker_fork and forking.can_fork():  # no second interpreter start
                started = forking.fork_workers(config, workers)
                if isinstance(started, WorkerAssignment):  # in a worker: never returns
                    forking.serve_and_exit(lambda: _serve_as_worker(handler, config, started))
                first = started
            from .workers.supervisor import supervise
            _collect_again()
            return supervise(handler, config, workers, first)
    if config.concurrent and not problems:
        from .integrations.monkey import patch_all
        early_imports = patch_all()
    return run(handler, config, problems, early_imports, assignment)


def _serve_as_worker(handler: str, config: Config, worker: WorkerAssignment) -> int:
    """Steps 2-6 in a worker forked at step 2: what a fresh one does after its step 1."""
    from .workers import assignment as assignments

    assignments.die_with_supervisor(worker.supervisor_pid)
    from .integrations.monkey import patch_all
    return run(handler, config, [], patch_all(), worker)


def run(handler_name: str, config: Config, problems: list[ConfigError],
        early_imports: list[str], worker: WorkerAssignment | None = None) -> int:
    """Steps 3-6; ``worker`` is set in a process a supervisor started for a share of slots.

    Step 2 is over, so the serving layers may be imported now (they import ``logging`` and
    with it ``threading``, which must come after ``patch_all``)."""
    from .invocation import coroutines
    from .runtime_api.client import PlatformFailure, RuntimeApiClient

    # Step 3: the function's log; from here on every failure is reported through it.
    function_log, problems = _set_up_log(config, problems, worker)
    init = _Init(RuntimeApiClient(config.runtime_api), function_log, config, worker)
    if problems:
        return init.failed_with_settings(problems)
    if early_imports:
        log.warning("Imported before gevent could patch them, so they may block every "
                    "invocation at once: %s. Remove them from sitecustomize/PYTHONSTARTUP/.pth "
                    "files or import them inside the handler module.", ", ".join(early_imports))

    # Step 4: the handler, imported once, after the hooks that adapt its libraries.
    slots = worker.slots if worker else config.max_concurrency  # this process's share
    try:
        handler, lifespan = _load(handler_name, config, slots, init)
    except _InitFailed as failed:
        return failed.code

    # Steps 5-6: serve until SIGTERM/SIGINT, then drain.
    try:
        if config.concurrent:
            code = _serve_concurrently(config, handler, function_log, init.client, slots,
                                       pool_record=worker is None)
            # The slots end with 1 only for a platform failure; a supervisor must hear of it.
            return _platform_failure_exit() if worker is not None and code == 1 else code
        return _serve_sequentially(config, handler, function_log, init.client)
    except PlatformFailure as failure:
        log.error("Exiting: the platform is in a non-recoverable state (%s).", failure)
        return 1 if worker is None else _platform_failure_exit()
    finally:
        coroutines.stop_lifespan(lifespan)  # after the drain: every answer is out


def _platform_failure_exit() -> int:
    """A worker's exit code for a platform failure (its supervisor then stops them all)."""
    from .workers.assignment import PLATFORM_FAILURE_EXIT  # not imported by a classic start

    return PLATFORM_FAILURE_EXIT


def _set_up_log(config: Config, problems: list[ConfigError],
                worker: WorkerAssignment | None) -> tuple[FunctionLog, list[ConfigError]]:
    """Step 3: the function's log, and the settings problems including a log socket that
    cannot be reached (then the log goes to stdout, so the problem can still be reported)."""
    from .invocation import logs

    if worker is not None:
        from .workers import scoreboard  # workers only: a classic cold start never needs it
        scoreboard.attach(worker.status_fd, worker.index, worker.slot_table)
    try:
        return logs.setup(log_format=config.log_format, log_level=config.log_level,
                          telemetry_fd=config.telemetry_fd, log_socket=config.log_socket), problems
    except OSError as problem:
        function_log = logs.setup(log_format=config.log_format, log_level=config.log_level,
                                  telemetry_fd=config.telemetry_fd, log_socket=None)
        return function_log, [*problems, settings.ConfigError(
            "_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET",
            f"cannot connect to the log socket {config.log_socket!r}: {problem}")]


def _load(handler_name: str, config: Config, slots: int, init: _Init) -> tuple[Any, Any]:
    """Step 4: the adapting hooks, then the handler and its ASGI lifespan's startup.
    Raises :class:`_InitFailed` once the failure has been reported."""
    from .invocation import coroutines
    from .invocation.loader import load_handler
    from .runtime_api import errors
    from .serving import function_signals

    sys.path.insert(0, config.task_root or os.getcwd())
    if config.concurrent:
        from . import integrations
        from .serving import event_loop
        integrations.install(config, slots)
        event_loop.install()  # async handlers share one loop, in a greenlet of its own
    if config.sentry_integration:  # both modes: the integration misses awslambdaric in both
        from .integrations import sentry
        sentry.install()
    function_signals.install()  # the function's SIGTERM/SIGINT handlers run after the drain
    _collect_again()  # the function's imports and invocations run with the collector on
    try:
        with _exit_reported_during_init(handler_name, init):
            handler = load_handler(handler_name)
        lifespan = coroutines.start_lifespan(handler)  # ASGI startup, before the first poll
    except BaseException as problem:  # noqa: BLE001 - SystemExit at import is an init error too
        body, _ = errors.describe_exception(problem)
        raise _InitFailed(init.failed(body)) from None
    if config.sentry_integration:
        handler = sentry.wrap_handler(handler)
    return handler, lifespan


def _collect_again() -> None:
    """The garbage collector back on (:mod:`lmi_gevent.cli` turns it off for the runtime's own
    imports). What exists now is the runtime's modules, classes and settings, alive until the
    process ends: frozen, no collection ever scans them again, starting with the one the
    objects made while it was off would trigger at once (docs/pythons.md, "Cold start")."""
    gc.freeze()
    gc.enable()


class _InitFailed(Exception):
    """The init failure was reported; the process exits with ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Init:
    """Where an init failure goes, whatever its form: posted once to the platform, except by
    a replacement worker (init completed long ago, so it only logs)."""

    def __init__(self, client: RuntimeApiClient, function_log: FunctionLog, config: Config,
                 worker: WorkerAssignment | None) -> None:
        self.client = client
        self.function_log = function_log
        self.config = config
        self.worker = worker

    def failed_with_settings(self, problems: list[ConfigError]) -> int:
        from .runtime_api import errors

        return self.failed(errors.error_body(
            errors.CONFIGURATION_ERROR, "; ".join(str(problem) for problem in problems), None))

    def failed(self, body: dict[str, Any]) -> int:
        """Report ``body`` as the init error; the exit code."""
        worker = self.worker
        if worker is not None and worker.replacement:
            log.error("Replacement worker %d could not load the handler: %s: %s",
                      worker.index, body["errorType"], body["errorMessage"])
            self.function_log.unhandled_error(body)
        else:
            report_init_error(self.client, self.function_log, body, self.config.answer_retry)
        if worker is None:
            return 1
        from .workers.assignment import INIT_ERROR_EXIT  # not imported by a classic start

        return INIT_ERROR_EXIT


@contextlib.contextmanager
def _exit_reported_during_init(handler_name: str, init: _Init) -> Iterator[None]:
    """``os._exit`` while the handler's module is imported is an init failure: report it as
    one, then exit non-zero. Only in this process: a child the module forks exits as asked."""
    from .runtime_api import errors

    real_exit, runtime_pid = os._exit, os.getpid()

    def exit_during_init(status: int) -> NoReturn:
        if os.getpid() != runtime_pid:
            real_exit(status)
        message = (f"Runtime exited with error: os._exit({status}) while loading the handler "
                   f"{handler_name}")
        code = init.failed(errors.error_body(errors.WORKER_EXIT_ERROR, message, None))
        real_exit(code if init.worker is not None else (status or 1))

    os._exit = exit_during_init
    try:
        yield
    finally:
        os._exit = real_exit


def report_init_error(client: RuntimeApiClient, function_log: FunctionLog,
                      body: dict[str, Any], retry: RetryPolicy) -> int:
    """Log and post an init error once, then tell the caller to exit non-zero."""
    from .runtime_api.client import PlatformFailure
    from .runtime_api.delivery import deliver

    log.warning(INIT_ERROR_WARNING)
    function_log.unhandled_error(body)
    try:
        outcome = deliver(lambda: client.post_init_error(body), "the init error",
                          deadline=None, policy=retry)
    except PlatformFailure as problem:
        log.error("Could not report the init error: %s", problem)
        return 1
    if outcome is None:
        return 1  # deliver() logged why
    status, reply = outcome.status, outcome.reply
    if status == 403:
        # Another worker (or an earlier attempt) already reported init failure.
        log.info("Init error already reported (403): %s", reply[:300].decode("utf-8", "replace"))
    elif not outcome.delivered:
        log.error("Runtime API answered %s to the init error: %s", status,
                  reply[:300].decode("utf-8", "replace"))
    return 1


def _serve_sequentially(config: Config, handler: Any, function_log: FunctionLog,
                        client: RuntimeApiClient) -> int:
    from .invocation.invoker import Invoker
    from .serving.sequential import Backoff, Stopper, end_after_stop, serve

    invoker = Invoker(handler, function_log, process_wide=True, retry=config.answer_retry)
    stopper = Stopper()
    stopper.install()
    serve(client, invoker, Backoff(config.retry_initial, config.retry_max), stopper)
    return end_after_stop(stopper.signum)


def _serve_concurrently(config: Config, handler: Any, function_log: FunctionLog,
                        client: RuntimeApiClient, slots: int, *, pool_record: bool) -> int:
    from .invocation.context import install_invocation_environ
    from .invocation.invoker import Invoker
    from .serving import slots as concurrent

    client.close()  # each slot opens its own connection
    install_invocation_environ()
    if os.environ.get("LMI_GEVENT_CHECK_GLOBALS"):  # set by `lmi-gevent check` (GLOBALS_ENV)
        from .diagnostics.shared_state import watch_globals
        handler = watch_globals(handler)
    detector = None
    if config.stall_threshold:
        from .diagnostics import stalls
        detector = stalls.watch(config.stall_threshold,
                                wedge_after=config.stall_threshold * config.wedge_after)
    invoker = Invoker(handler, function_log, guard=concurrent.deadline_guard(config.deadline_grace),
                      retry=config.answer_retry)
    return concurrent.serve(config.runtime_api, invoker, size=slots,
                            drain_timeout=config.drain_timeout,
                            retry_initial=config.retry_initial, retry_max=config.retry_max,
                            heartbeat=config.worker_heartbeat, pool_record=pool_record,
                            detector=detector, wedge_timeout=config.wedge_timeout)
