"""The first generation of workers, forked at step 2 before the supervisor imports anything.

A worker started as a fresh ``python -m lmi_gevent HANDLER`` pays the interpreter's start and
step 1's imports again, after the supervisor paid its own: ~50 ms of a concurrent cold start
on two cores. At step 2 this process has imported only the settings, the lifecycle, logging
and the worker assignment, runs no thread and has set no signal handler: a child forked then
is the state a fresh worker reaches after its step 1, so it carries on from there (its own
session, tied to the supervisor's life, then ``patch_all`` and steps 3-6) and ends with
``os._exit``. It never returns into this process's code.

Replacement workers are still started fresh (:mod:`lmi_gevent.workers.supervisor`): by then
the supervisor has imported the Runtime API client (sockets, before any patching), set up
its log, signal handlers and wakeup fd; a fork of that would have to undo all of it.
"""

from __future__ import annotations

import os
import signal
import sys

from .assignment import WorkerAssignment, adopt, slot_shares
from .scoreboard import Scoreboard

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

    from ..config import Config


class ForkedProcess:
    """The part of ``subprocess.Popen`` the supervisor uses, for a child it forked."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def wait(self) -> int:
        while self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, 0)
            except ChildProcessError:  # reaped elsewhere without telling us: it is gone
                self.returncode = -signal.SIGKILL
            except InterruptedError:
                continue
            else:
                if pid == self.pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


class FirstGeneration:
    """What the supervisor takes over: the scoreboard and the K workers forked on it."""

    def __init__(self, shares: list[int], scoreboard: Scoreboard,
                 processes: list[ForkedProcess]) -> None:
        self.shares = shares
        self.scoreboard = scoreboard
        self.processes = processes  # by worker index


def can_fork() -> bool:
    """Forking is safe only while this process runs no other thread (a sitecustomize or
    ``.pth`` file might have started one) and has no signal wakeup fd."""
    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return False
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return False
    wakeup = signal.set_wakeup_fd(-1)
    if wakeup != -1:
        signal.set_wakeup_fd(wakeup)
        return False
    return True


def fork_workers(config: Config, count: int) -> FirstGeneration | WorkerAssignment:
    """Fork ``count`` workers. In this process: the :class:`FirstGeneration` to supervise;
    in a child: its :class:`WorkerAssignment` (then call :func:`serve_and_exit`)."""
    shares = slot_shares(config.max_concurrency, count)
    scoreboard = Scoreboard(shares)
    supervisor_pid = os.getpid()
    keep = sorted({scoreboard.fd, *([config.telemetry_fd] if config.telemetry_fd is not None
                                    else [])})
    processes: list[ForkedProcess] = []
    for index, slots in enumerate(shares):
        assignment = WorkerAssignment(index, slots, scoreboard.fd, scoreboard.slot_tables[index],
                                      False, supervisor_pid)
        _flush_stdio()  # nothing buffered here is written twice
        try:
            pid = os.fork()
        except OSError:
            if not processes:
                scoreboard.close()
                raise
            # Some workers run: start the others fresh (the supervisor replaces them).
            break
        if pid == 0:
            scoreboard.memory.close()  # the supervisor's view (and its descriptor); not ours
            _become_worker(keep)
            adopt(assignment)
            return assignment
        processes.append(ForkedProcess(pid))
    return FirstGeneration(shares, scoreboard, processes)


def _become_worker(keep: list[int]) -> None:
    """In the forked child: what ``Popen(start_new_session=True, pass_fds=keep)`` gives a
    fresh worker. Signal handlers stay as they are: nothing here set one (step 2 comes
    before the supervisor's), so they are what the interpreter's start (and a
    ``sitecustomize``) gave this process, as a fresh worker's would be; the wakeup fd is
    unset (:func:`can_fork`). The child ties its life to the supervisor's next, as a fresh
    worker does (:func:`lmi_gevent.workers.assignment.die_with_supervisor`)."""
    os.setsid()  # the platform's group SIGTERM reaches it once, through the supervisor
    # Only stdio and the descriptors a fresh worker is passed: no other the supervisor has.
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:  # the listing's own descriptor, already closed
                pass
    for fd in keep:
        os.set_inheritable(fd, True)  # as pass_fds leaves it


def serve_and_exit(serve: Callable[[], int]) -> NoReturn:
    """Run a forked worker's ``serve()`` (steps 2-6) and end the process with its exit code,
    whatever happens: the supervisor's frames below this one are never returned to.

    Before ``os._exit`` it does what the interpreter's exit would have done for a fresh
    worker: join non-daemon threads, run the ``atexit`` functions (the function's log, an
    SDK's flush), flush stdout and stderr. Objects are not finalised.
    """
    code = 1
    try:
        code = serve()
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except BaseException:  # noqa: BLE001 - reported as the interpreter would, then exit 1
        import traceback

        traceback.print_exc()
    finally:
        try:
            _exit_like_the_interpreter()
        finally:
            os._exit(code)


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def _exit_like_the_interpreter() -> None:
    import atexit

    threading = sys.modules.get("threading")
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        try:
            shutdown()
        except BaseException:  # noqa: BLE001, S110 - the exit goes on, as the interpreter's does
            pass
    atexit._run_exitfuncs()
    _flush_stdio()


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
