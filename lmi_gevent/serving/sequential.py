"""The classic loop: one invocation at a time. Never imports gevent (docs/design.md, invariant 2)."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from ..invocation.invoker import InvocationCut, Invoker
from ..runtime_api.backoff import Backoff
from ..runtime_api.client import (
    InvalidInvocation,
    Invocation,
    RuntimeApiClient,
    RuntimeApiError,
    readable_now,
)
from ..runtime_api.connection import wait_readable
from ..runtime_api.errors import SHUTDOWN_ERROR
from ..runtime_api.repeats import REPEATS
from . import function_signals

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable

log = logging.getLogger("lmi_gevent")


def poll(client: RuntimeApiClient, backoff: Backoff, sleep: Callable[[float], Any] = time.sleep,
         wait: Callable[[Any], None] | None = None) -> Invocation:
    """The next invocation, retrying failed ``/next`` calls (``wait``: see next_invocation)."""
    while True:
        try:
            invocation = client.next_invocation(wait)
        except InvalidInvocation as problem:
            log.error("Skipping an invocation that cannot be answered: %s", problem)
            continue
        except RuntimeApiError as problem:
            delay = backoff.next_delay()
            REPEATS.warning("/next", "/next failed (attempt %d), retrying in %.2fs: %s",
                            backoff.failures, delay, problem)
            sleep(delay)
            continue
        if backoff.failures:
            REPEATS.ended("/next")
        backoff.reset()
        return invocation


class StopRequested(SystemExit):
    """Raised by the signal handler while the loop waits for work (nothing is lost then).

    A SystemExit: if the handler monkey-patched the process with gevent, the signal handler
    runs in gevent's hub, which passes a SystemExit on to the main greenlet (where the loop
    waits) without printing it.
    """


class SecondSignal(InvocationCut, SystemExit):
    """A second signal while an invocation runs: it is cut and answered (see StopRequested
    for why a SystemExit too)."""


class Stopper:
    """SIGTERM/SIGINT in sequential mode: exit at once while waiting for an invocation; while
    one runs, finish and answer it first. A second signal interrupts the handler, and the
    invocation is answered with ``Runtime.ShutdownBeforeAnswer``.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None  # the first stop signal
        self._idle = False
        self._waiting_on: Any = None  # the /next socket while wait_for_answer blocks on it

    def install(self) -> None:
        for signum in function_signals.STOP_SIGNALS:
            function_signals.runtime_signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        if self._idle:
            if self._waiting_on is not None and readable_now(self._waiting_on):
                # The platform already sent an invocation (the process may simply not have
                # been scheduled to read it): it is ours now, so serve and answer it first.
                self.requested = True
                return
            raise StopRequested
        if self.requested:
            raise SecondSignal(SHUTDOWN_ERROR, "The runtime was stopped by a second signal "
                                               "before this invocation finished.")
        self.requested = True

    def wait_for_answer(self, sock: Any) -> None:
        # Only this wait (and the back-off sleep) may be interrupted, and only while nothing
        # has arrived on the socket: then stopping loses nothing.
        self._idle = True
        self._waiting_on = sock
        try:
            if self.requested:  # the signal came while the request was being sent
                raise StopRequested
            wait_readable(sock)
        finally:
            self._idle = False
            self._waiting_on = None

    def sleep(self, seconds: float) -> None:
        self._idle = True
        try:
            if self.requested:
                raise StopRequested
            time.sleep(seconds)
        finally:
            self._idle = False


def serve(client: RuntimeApiClient, invoker: Invoker, backoff: Backoff,
          stopper: Stopper | None = None) -> None:
    """Poll, invoke, answer, until a signal stops it (or the platform fails)."""
    stopper = stopper or Stopper()
    while not stopper.requested:
        try:
            invocation = poll(client, backoff, sleep=stopper.sleep, wait=stopper.wait_for_answer)
        except StopRequested:
            log.info("Stopped while waiting for an invocation.")
            return
        try:
            invoker.run(invocation, client)
        except InvocationCut:  # a second signal while the answer was being posted
            return
    log.info("Stopped after answering the invocation in flight.")


def end_after_stop(signum: int | None, code: int = 0) -> int:
    """Once stopped (every invocation answered): run the function's own handler for the
    signal, then end without waiting for threads it left running; the exit code."""
    asked = function_signals.run_function_handler(signum)
    if asked is not None:
        code = asked
    if signum is not None:
        leave_threads_behind(code)
    return code


def leave_threads_behind(code: int) -> None:
    """Exit now if non-daemon threads are still running: awslambdaric dies of the SIGTERM
    itself, and the interpreter's exit would wait for them until the platform's SIGKILL."""
    left = [thread.name for thread in threading.enumerate()
            if thread is not threading.main_thread() and not thread.daemon and thread.is_alive()]
    if not left:
        return
    log.warning("Exiting without waiting for %d thread(s) the function left running: %s.",
                len(left), ", ".join(left[:10]))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110 - exiting anyway
            pass
    os._exit(code)
