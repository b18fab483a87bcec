"""Steps 3-6 of the lifecycle (steps 1-2, config and patching, are in :mod:`lmi_gevent.cli`).

Read top to bottom: set up logging, load the handler (or report an init error and exit),
then serve sequentially or on N slots until stopped.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from . import errors, logs, scoreboard
from .client import PlatformFailure, RuntimeApiClient
from .config import Config, ConfigError
from .delivery import RetryPolicy, deliver
from .invoke import Invoker
from .loader import load_handler
from .worker import INIT_ERROR_EXIT, PLATFORM_FAILURE_EXIT, WorkerAssignment

log = logging.getLogger("lmi_gevent")

INIT_ERROR_WARNING = ("LAMBDA_WARNING: the function failed to initialise, so no invocation can "
                      "run. The error below comes from the handler module or its settings.")


def run(handler_name: str, config: Config, problems: list[ConfigError],
        early_imports: list[str], worker: WorkerAssignment | None = None) -> int:
    """Steps 3-6; ``worker`` is set in a process a supervisor started for a share of slots."""
    if worker is not None:
        scoreboard.attach(worker.status_fd, worker.index, worker.slot_table)
    function_log = logs.setup(log_format=config.log_format, log_level=config.log_level,
                              telemetry_fd=config.telemetry_fd, log_socket=config.log_socket)
    client = RuntimeApiClient(config.runtime_api)
    if problems:
        body = errors.error_body(errors.CONFIGURATION_ERROR,
                                 "; ".join(str(problem) for problem in problems), None)
        return report_init_error(client, function_log, body, config.answer_retry)
    if early_imports:
        log.warning("Imported before gevent could patch them, so they may block every "
                    "invocation at once: %s. Remove them from sitecustomize/PYTHONSTARTUP/.pth "
                    "files or import them inside the handler module.", ", ".join(early_imports))

    sys.path.insert(0, config.task_root or os.getcwd())
    slots = worker.slots if worker else config.max_concurrency  # this process's share
    if config.concurrent:
        install_library_hooks(config, slots)
    try:
        handler = load_handler(handler_name)
    except BaseException as problem:  # noqa: BLE001 - SystemExit at import is an init error too
        body, _ = errors.describe_exception(problem)
        if worker is None:
            return report_init_error(client, function_log, body, config.answer_retry)
        if worker.replacement:
            # Init completed long ago: the platform must not hear of an init error now.
            log.error("Replacement worker %d could not load the handler: %s: %s",
                      worker.index, body["errorType"], body["errorMessage"])
            function_log.unhandled_error(body)
        else:
            report_init_error(client, function_log, body, config.answer_retry)
        return INIT_ERROR_EXIT

    try:
        if config.concurrent:
            return _serve_concurrently(config, handler, function_log, client, slots,
                                       pool_record=worker is None)
        return _serve_sequentially(config, handler, function_log, client)
    except PlatformFailure as failure:
        log.error("Exiting: the platform is in a non-recoverable state (%s).", failure)
        return 1 if worker is None else PLATFORM_FAILURE_EXIT


def install_library_hooks(config: Config, slots: int | None = None) -> None:
    """Concurrent mode, before the handler's imports (gRPC must hear of gevent before its
    first channel): the hooks that adapt libraries as the handler imports them."""
    from .cooperation import install as install_driver_cooperation
    from .isolation import install as install_isolation

    install_driver_cooperation(psycopg2=config.psycopg2_wait_callback, grpc=config.grpc_gevent)
    install_isolation(powertools=config.powertools_isolation)
    if config.pool_sizing:
        from .pools import install as size_connection_pools
        # The slots of this process: a worker's share, not the environment's N.
        size_connection_pools(slots=slots or config.max_concurrency)


def report_init_error(client: RuntimeApiClient, function_log: logs.FunctionLog,
                      body: dict[str, Any], retry: RetryPolicy = RetryPolicy()) -> int:
    """Log and post an init error once, then tell the caller to exit non-zero."""
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


def _serve_sequentially(config: Config, handler: Any, function_log: logs.FunctionLog,
                        client: RuntimeApiClient) -> int:
    from .sequential import Backoff, Stopper, serve

    invoker = Invoker(handler, function_log, process_wide=True, retry=config.answer_retry)
    stopper = Stopper()
    stopper.install()
    serve(client, invoker, Backoff(config.retry_initial, config.retry_max), stopper)
    return 0


def _serve_concurrently(config: Config, handler: Any, function_log: logs.FunctionLog,
                        client: RuntimeApiClient, slots: int, *, pool_record: bool) -> int:
    from . import concurrent
    from .context import install_invocation_environ

    client.close()  # each slot opens its own connection
    install_invocation_environ()
    if os.environ.get("LMI_GEVENT_CHECK_GLOBALS"):  # set by `lmi-gevent check` (GLOBALS_ENV)
        from .shared_state import watch_globals
        handler = watch_globals(handler)
    if config.stall_threshold:
        from . import stalls
        stalls.watch(config.stall_threshold)
    invoker = Invoker(handler, function_log, guard=concurrent.deadline_guard(config.deadline_grace),
                      retry=config.answer_retry)
    return concurrent.serve(config.runtime_api, invoker, size=slots,
                            drain_timeout=config.drain_timeout,
                            retry_initial=config.retry_initial, retry_max=config.retry_max,
                            heartbeat=config.worker_heartbeat, pool_record=pool_record)
