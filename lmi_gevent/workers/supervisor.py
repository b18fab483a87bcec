"""Multi-core concurrent mode: K worker processes share the N slots; this process supervises.

Read top to bottom, the supervisor's life:

1. split the N slots into K shares, as even as possible, summing to exactly N;
2. log ``runtime_worker_pool_initializing`` once and take over the K workers forked at
   step 2 (:mod:`lmi_gevent.workers.forking`), each serving its share with the one-process
   concurrent mode; a worker that could not be forked, and every replacement, is a fresh
   ``python -m lmi_gevent HANDLER``;
3. loop: signal handlers only enqueue the signal and wake the loop (``signal.set_wakeup_fd``);
   the loop reaps children (SIGCHLD, ``waitpid(-1, WNOHANG)`` until none) and
   - replaces a worker that died, after a crash-loop back-off, logging why and what it held,
     and answers the invocations it was running (``Runtime.ExitError``);
   - stops everything, exit 1, when a first-generation worker could not load the handler
     (it reported the init error) or when a worker met a platform failure;
   - stops everything, exit 1, when a worker dies in any other way (a signal, ``os._exit``)
     before any worker served: that is an init failure too, and this process posts it;
   - gives up, exit 1, when one worker's replacements keep dying young
     (LMI_GEVENT_WORKER_RESTART_LIMIT in a row) rather than replacing it forever;
   - SIGKILLs and replaces a worker whose event loop is wedged (no heartbeat) past its
     invocations' deadline + grace, logging them and the worker's last wedge report;
4. SIGHUP/SIGUSR1/SIGUSR2: forward it to every serving worker (the function's own handler
   for it runs there). SIGTERM/SIGINT: forward it once to every worker, which drains as one
   process does; exit 0
   once all exited 0; SIGKILL stragglers past the drain timeout. A second signal kills all.
5. on every way out, no worker is left, nor what a worker started (its process group is
   killed once it exited): ``finally`` kills and reaps them, and each worker asked
   Linux to kill it should this process die first (:func:`lmi_gevent.workers.assignment.die_with_supervisor`).

Each worker is its own session, so a signal to this process group (Lambda's SIGTERM,
Ctrl-C) reaches the workers once, forwarded, and never twice. Never imports gevent.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import select
import signal
import sys
import time
from typing import Any

from ..config import Config
from ..invocation import logs
from ..runtime_api.backoff import Backoff
from .assignment import (
    ASSIGNMENT_ENV,
    INIT_ERROR_EXIT,
    PLATFORM_FAILURE_EXIT,
    WEDGED_EXIT,
    WorkerAssignment,
    slot_shares,
)
from .forking import FirstGeneration, ForkedProcess
from .scoreboard import Scoreboard, SlotInvocation

TYPE_CHECKING = False  # typing.TYPE_CHECKING
if TYPE_CHECKING:
    import subprocess

    from ..runtime_api.client import RuntimeApiClient

# Imported where they are used, not here: this module is imported while the forked workers
# start, and every millisecond of CPU it takes then is one they wait for on a small machine.
# subprocess (replacements), runtime_api.client, delivery and errors (answers for a lost worker).

log = logging.getLogger("lmi_gevent")

# A worker cut at its drain timeout still posts those answers (CUT_ANSWER_TIMEOUT, 1 s) and
# exits; only after this much more is it killed.
STRAGGLER_GRACE = 2.0
# How often the loop wakes with nothing to do (to run a due replacement, or a deadline).
IDLE_WAKE = 1.0
# Passed on to every serving worker, where the function's own handlers for them run (as they
# would in awslambdaric's one process) or their default action ends that worker.
FORWARDED_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


class Worker:
    """One worker process as the supervisor tracks it."""

    def __init__(self, index: int, slots: int, process: subprocess.Popen[bytes] | ForkedProcess,
                 replacement: bool) -> None:
        self.index = index
        self.slots = slots
        self.process = process
        self.replacement = replacement
        self.started = time.monotonic()
        self.stopped_in_init = False
        self.wedged = False

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    def __init__(self, handler: str, config: Config, workers: int,
                 function_log: logs.FunctionLog | None = None,
                 first: FirstGeneration | None = None) -> None:
        self.handler = handler
        self.config = config
        self.function_log = function_log
        self.first = first  # the first generation, forked before this process's imports
        if first is not None:
            self.shares, self.scoreboard = first.shares, first.scoreboard
        else:
            self.shares = slot_shares(config.max_concurrency, workers)
            self.scoreboard = Scoreboard(self.shares)
        self.workers: dict[int, Worker] = {}  # by pid
        self.due: dict[int, float] = {}  # index -> monotonic time its replacement starts
        self.backoffs = [Backoff(config.worker_restart_initial, config.worker_restart_max)
                         for _ in self.shares]
        self.signals: collections.deque[int] = collections.deque()
        self.stop_deadline: float | None = None
        self.exit_code: int | None = None
        self.clean_stop = True
        self.initialised = False  # some worker reached serving: init is over for the platform
        self.young_deaths = [0 for _ in self.shares]  # replacements in a row that died young

    # --- the lifecycle ---------------------------------------------------------------------

    def run(self) -> int:
        wake = self._install_signals()
        try:
            log.debug({"event": "runtime_worker_pool_initializing",
                       "workerCount": self.config.max_concurrency,
                       "executionEnvironmentMaxConcurrency": self.config.max_concurrency,
                       "processCount": len(self.shares), "slotsPerProcess": self.shares})
            log.info("Starting %d worker processes for %d slots: %s.", len(self.shares),
                     self.config.max_concurrency, "+".join(map(str, self.shares)))
            forked = self.first.processes if self.first is not None else []
            for index in range(len(self.shares)):
                if index < len(forked):
                    self._adopt(index, forked[index])
                else:
                    self._spawn(index, replacement=False)
            self._reap()  # one may have died before the SIGCHLD handler was set
            while self.exit_code is None:
                self._wait(wake)
                self._handle_signals()
                self._note_initialised()
                self._reap()
                self._start_due_replacements()
                self._check_stop_deadline()
                self._kill_wedged_workers()
            return self.exit_code
        finally:
            self._kill_all()
            signal.set_wakeup_fd(-1)
            self.scoreboard.close()

    def _install_signals(self) -> int:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, *FORWARDED_SIGNALS):
            signal.signal(signum, self._enqueue)
        return read_end

    def _enqueue(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)  # nothing else here: the loop does the work

    def _wait(self, wake: int) -> None:
        now = time.monotonic()
        timeout = min(IDLE_WAKE, self.config.worker_heartbeat or IDLE_WAKE)
        for moment in [*self.due.values(), self.stop_deadline or now + IDLE_WAKE]:
            timeout = min(timeout, max(moment - now, 0.0))
        try:
            ready, _, _ = select.select([wake], [], [], timeout)
        except InterruptedError:
            return
        if ready:
            try:
                os.read(wake, 4096)
            except BlockingIOError:
                pass

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.popleft()
            if signum == signal.SIGCHLD:
                continue  # _reap runs after every wake-up anyway
            if signum in FORWARDED_SIGNALS:
                self._forward(signum)
                continue
            if self.stop_deadline is None:
                self._begin_stop(signum)
            else:
                log.warning("Second signal: killing %d worker process(es) now.", len(self.workers))
                self._kill_all()
                self.exit_code = 128 + signum
                return

    def _forward(self, signum: int) -> None:
        """Only to workers past init: one still importing has none of the function's handlers
        yet, and the signal's default action would make its death an init failure."""
        for worker in list(self.workers.values()):
            if self.scoreboard.read(worker.index).heartbeat:
                _signal(worker, signum)

    # --- stopping --------------------------------------------------------------------------

    def _begin_stop(self, signum: int) -> None:
        self.due.clear()
        grace = self.config.drain_timeout + STRAGGLER_GRACE
        self.stop_deadline = time.monotonic() + grace
        log.info("%s: asking %d worker process(es) to drain.", signal.Signals(signum).name,
                 len(self.workers))
        for worker in self.workers.values():
            if self.scoreboard.read(worker.index).heartbeat:
                _signal(worker, signum)
            else:
                # Still importing the handler: no invocation to drain, and its signal
                # handlers are not installed yet (the signal would kill it mid-init).
                worker.stopped_in_init = True
                _signal(worker, signal.SIGKILL)
        if not self.workers:
            self.exit_code = 0 if self.clean_stop else 1

    def _check_stop_deadline(self) -> None:
        if self.stop_deadline is None or self.exit_code is not None:
            return
        if time.monotonic() >= self.stop_deadline:
            log.error("%d worker process(es) still running %.1fs after the signal; killed.",
                      len(self.workers), self.config.drain_timeout + STRAGGLER_GRACE)
            self._kill_all()
            self.exit_code = 1

    def _kill_all(self) -> None:
        for worker in list(self.workers.values()):
            _signal(worker, signal.SIGKILL)
        for worker in list(self.workers.values()):
            worker.process.wait()
            _kill_leftovers(worker)
            self.workers.pop(worker.pid, None)

    # --- workers ---------------------------------------------------------------------------

    def _spawn(self, index: int, *, replacement: bool) -> None:
        self.scoreboard.clear(index)
        assignment = WorkerAssignment(index, self.shares[index], self.scoreboard.fd,
                                      self.scoreboard.slot_tables[index], replacement,
                                      os.getpid())
        env = dict(os.environ, **{ASSIGNMENT_ENV: assignment.encode()})
        # Its own session: the platform's group SIGTERM reaches it once, through us.
        inherited = [self.scoreboard.fd]
        if self.config.telemetry_fd is not None:
            inherited.append(self.config.telemetry_fd)
        import subprocess

        process = subprocess.Popen([sys.executable, "-m", "lmi_gevent", self.handler], env=env,
                                   pass_fds=inherited, start_new_session=True)
        self.workers[process.pid] = Worker(index, self.shares[index], process, replacement)
        log.debug("Worker %d (pid %d) started for %d slot(s)%s.", index, process.pid,
                  self.shares[index], " as a replacement" if replacement else "")

    def _adopt(self, index: int, process: ForkedProcess) -> None:
        self.workers[process.pid] = Worker(index, self.shares[index], process, False)
        log.debug("Worker %d (pid %d) forked for %d slot(s).", index, process.pid,
                  self.shares[index])

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except OSError as problem:
                if problem.errno == errno.EINTR:
                    continue
                raise
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is not None:
                _kill_leftovers(worker)
                worker.process.returncode = os.waitstatus_to_exitcode(status)
                self._worker_ended(worker, os.waitstatus_to_exitcode(status))

    def _worker_ended(self, worker: Worker, code: int) -> None:
        if self.stop_deadline is not None:
            if code != 0 and not worker.stopped_in_init:
                self.clean_stop = False
                log.warning("Worker %d (pid %d) ended with %s while draining.", worker.index,
                            worker.pid, _describe(code))
            if not self.workers and self.exit_code is None:
                self.exit_code = 0 if self.clean_stop else 1
            return
        if self.exit_code is not None:
            return  # already stopping everything: a second init death adds nothing
        if code == INIT_ERROR_EXIT and not worker.replacement:
            log.error("Worker %d could not load the handler (init error reported); stopping "
                      "all %d worker process(es).", worker.index, len(self.workers) + 1)
            self.exit_code = 1
            return
        if not worker.replacement and not self._note_initialised():
            # Died in init in a way that reported nothing (a signal, os._exit): replacing it
            # would only repeat the import, so init failed and the platform must hear of it.
            self._report_init_death(worker, code)
            self.exit_code = 1
            return
        if code == PLATFORM_FAILURE_EXIT:
            log.error("Worker %d met a non-recoverable platform failure; exiting.", worker.index)
            self.exit_code = 1
            return
        self._schedule_replacement(worker, code)

    def _kill_wedged_workers(self) -> None:
        """SIGKILL a worker whose event loop stopped beating while its invocations ran past
        their deadline + LMI_GEVENT_DEADLINE_GRACE: a live loop would have reclaimed them by
        then, so the loop is stuck (in C code, beyond any greenlet's reach)."""
        grace, beat = self.config.deadline_grace, self.config.worker_heartbeat
        if grace is None or not beat or self.stop_deadline is not None:
            return
        for worker in list(self.workers.values()):
            status = self.scoreboard.read(worker.index)
            silent = time.monotonic() - status.heartbeat
            if worker.wedged or not status.heartbeat or silent < max(grace, 2 * beat):
                continue
            running = self.scoreboard.running(worker.index)
            if not running or time.time() < max(r.deadline_ms for r in running) / 1000 + grace:
                continue
            worker.wedged = True
            report = status.wedge_report or "none"
            log.error("Worker %d (pid %d): its event loop has not run for %.1fs, past the "
                      "deadline + %gs grace of %s; last wedge report: %s. Killing and "
                      "replacing it.", worker.index, worker.pid, silent, grace,
                      ", ".join(r.request_id for r in running), report)
            _signal(worker, signal.SIGKILL)

    def _note_initialised(self) -> bool:
        """True once any worker beat: it installed its handlers and polls, so init is over
        (read before a dead worker's record is cleared for its replacement)."""
        if not self.initialised:
            self.initialised = any(self.scoreboard.read(index).heartbeat
                                   for index in range(len(self.shares)))
        return self.initialised

    def _report_init_death(self, worker: Worker, code: int) -> None:
        from ..runtime_api import errors
        from ..runtime_api.client import PlatformFailure, RuntimeApiClient
        from ..runtime_api.delivery import deliver

        message = (f"Runtime exited with error: {exit_error(code)} while loading the handler "
                   f"{self.handler} (worker {worker.index}, pid {worker.pid})")
        log.error("Worker %d (pid %d) ended with %s before any worker served: an init failure; "
                  "reporting it and stopping all %d worker process(es).", worker.index,
                  worker.pid, _describe(code), len(self.workers) + 1)
        body = errors.error_body(errors.WORKER_EXIT_ERROR, message, None)
        if self.function_log is not None:
            self.function_log.unhandled_error(body)
        client = RuntimeApiClient(self.config.runtime_api)
        try:
            outcome = deliver(lambda: client.post_init_error(body), "the init error",
                              deadline=None, policy=self.config.answer_retry)
        except PlatformFailure as problem:
            log.error("Could not report the init error: %s", problem)
            return
        finally:
            client.close()
        if outcome is not None and outcome.status == 403:
            log.info("Init error already reported (403).")

    def _schedule_replacement(self, worker: Worker, code: int) -> None:
        status = self.scoreboard.read(worker.index)
        backoff = self.backoffs[worker.index]
        lived = time.monotonic() - worker.started
        if lived > self.config.worker_restart_max and status.heartbeat:
            backoff.reset()  # it lived well: not a crash loop
            self.young_deaths[worker.index] = 0
        elif code != WEDGED_EXIT:  # a wedge needs an invocation: no loop of its own
            self.young_deaths[worker.index] += 1
        if self.young_deaths[worker.index] > self.config.worker_restart_limit:
            self._answer_lost(worker, exit_error(code))
            log.error("Giving up: worker %d died young %d times in a row (last: %s); exiting "
                      "1 so the platform replaces the execution environment "
                      "(LMI_GEVENT_WORKER_RESTART_LIMIT=%d).", worker.index,
                      self.young_deaths[worker.index], _describe(code),
                      self.config.worker_restart_limit)
            self.exit_code = 1
            return
        delay = backoff.next_delay()
        if code == WEDGED_EXIT:
            log.error("Worker %d (pid %d) exited because its event loop was wedged (it answered "
                      "its invocations itself); replacing it in %.2fs.", worker.index,
                      worker.pid, delay)
            self._answer_lost(worker, "its event loop was wedged")  # any it could not post
        elif code == INIT_ERROR_EXIT:
            log.error("Replacement worker %d (pid %d) could not load the handler (see its log "
                      "above); retrying in %.2fs.", worker.index, worker.pid, delay)
        else:
            log.error("Worker %d (pid %d) died (%s) with %d invocation(s) in flight and %d "
                      "open poll(s), after %d answered; replacing it in %.2fs.", worker.index,
                      worker.pid, _describe(code), status.in_flight, status.open_polls,
                      status.answered, delay)
            self._answer_lost(worker, "its event loop was wedged, so it was killed"
                              if worker.wedged else exit_error(code))
        self.due[worker.index] = time.monotonic() + delay

    def _answer_lost(self, worker: Worker, why: str) -> None:
        """Answer the invocations a dead worker was running: each gets exactly one answer,
        now, rather than none and a caller waiting for the platform's timeout."""
        lost = self.scoreboard.running(worker.index)
        if not lost:
            return
        from ..runtime_api.client import RuntimeApiClient

        client = RuntimeApiClient(self.config.runtime_api)
        try:
            for running in lost:
                self._answer_one(client, worker, running, why)
        finally:
            client.close()

    def _answer_one(self, client: RuntimeApiClient, worker: Worker, running: SlotInvocation,
                    why: str) -> None:
        from ..runtime_api import errors
        from ..runtime_api.client import Invocation, PlatformFailure
        from ..runtime_api.delivery import deliver

        message = (f"RequestId: {running.request_id} Error: Runtime exited with error: {why} "
                   f"(worker {worker.index}, pid {worker.pid}; lmi-gevent replaces the worker)")
        invocation = Invocation({"lambda-runtime-aws-request-id": running.request_id,
                                 "lambda-runtime-deadline-ms": str(running.deadline_ms),
                                 "lambda-runtime-invocation-id": running.invocation_id or ""}, b"")
        body = errors.error_body(errors.WORKER_EXIT_ERROR, message, None, running.request_id)
        what = f"the error of invocation {running.request_id} (dead worker {worker.index})"
        try:
            # One immediate retry on a fresh connection, no waiting: the loop must stay free
            # for signals and the other workers.
            outcome = deliver(lambda: client.post_error(invocation, body, None), what,
                              deadline=time.time(), policy=self.config.answer_retry)
        except PlatformFailure as problem:
            log.error("Could not post %s: %s", what, problem)
            return
        if outcome is not None:
            log.info("Answered %s with %s (Runtime API: %d).", what, errors.WORKER_EXIT_ERROR,
                     outcome.status)

    def _start_due_replacements(self) -> None:
        if self.exit_code is not None or self.stop_deadline is not None:
            return
        now = time.monotonic()
        for index, moment in list(self.due.items()):
            if moment <= now:
                del self.due[index]
                self._spawn(index, replacement=True)


def _signal(worker: Worker, signum: int) -> None:
    try:
        os.kill(worker.pid, signum)
    except ProcessLookupError:
        pass


def _kill_leftovers(worker: Worker) -> None:
    """SIGKILL what the function started in a worker that has exited (a subprocess it never
    waited for): each worker leads its own session, so nothing else would end them."""
    try:
        os.killpg(worker.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def exit_error(code: int) -> str:
    """A worker's end in the platform's words for a runtime's, as its ``Runtime.ExitError``
    messages print them (a Go process state): ``signal: segmentation fault``,
    ``signal: killed``, ``exit status 3``."""
    if code >= 0:
        return f"exit status {code}"
    try:
        description = signal.strsignal(-code)
    except ValueError:
        description = None
    return f"signal: {description.lower() if description else -code}"


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def supervise(handler: str, config: Config, workers: int,
              first: FirstGeneration | None = None) -> int:
    """Run K workers for ``handler`` until stopped; the runtime's exit code. ``first``: the
    first generation, already forked (:mod:`lmi_gevent.workers.forking`)."""
    function_log = logs.setup(log_format=config.log_format, log_level=config.log_level,
                              telemetry_fd=None, log_socket=None)
    return Supervisor(handler, config, workers, function_log, first).run()
