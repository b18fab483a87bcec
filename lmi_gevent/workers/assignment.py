"""What a worker process is told by its supervisor, and how it says why it ended.

The supervisor (:mod:`lmi_gevent.workers.supervisor`) starts each worker as a fresh
``python -m lmi_gevent HANDLER`` with :data:`ASSIGNMENT_ENV` set. Read in step 1 of the
worker's lifecycle, before gevent patches anything: stdlib only, and nothing that imports
threading.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

ASSIGNMENT_ENV = "_LMI_GEVENT_WORKER"  # internal: set by the supervisor, never by users

# Named exit codes (gunicorn's WORKER_BOOT_ERROR / APP_LOAD_ERROR idea): why a worker ended.
INIT_ERROR_EXIT = 3  # the handler (or a setting) could not be loaded
PLATFORM_FAILURE_EXIT = 4  # the Runtime API answered 500: the environment is beyond repair
ORPHANED_EXIT = 5  # the supervisor was gone before this worker could tie its life to it
WEDGED_EXIT = 6  # its event loop was wedged: it answered its invocations and left

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerAssignment:
    """One worker's share of the execution environment."""

    index: int  # 0..K-1, stable across replacements
    slots: int  # this worker's share of AWS_LAMBDA_MAX_CONCURRENCY
    status_fd: int  # the scoreboard's descriptor (lmi_gevent.workers.scoreboard)
    slot_table: int  # where this worker's slot entries start in it
    replacement: bool  # started after a worker died: never posts an init error
    supervisor_pid: int

    def encode(self) -> str:
        return (f"{self.index},{self.slots},{self.status_fd},{self.slot_table},"
                f"{int(self.replacement)},{self.supervisor_pid}")

    @classmethod
    def decode(cls, text: str) -> WorkerAssignment:
        index, slots, fd, table, replacement, supervisor = (int(part) for part in text.split(","))
        return cls(index, slots, fd, table, bool(replacement), supervisor)


_current: WorkerAssignment | None = None


def assignment() -> WorkerAssignment | None:
    """This process's assignment, or None when it is not a supervised worker."""
    global _current
    text = os.environ.pop(ASSIGNMENT_ENV, None)  # the handler's own subprocesses are no workers
    if text:
        _current = WorkerAssignment.decode(text)
    return _current


def supervised() -> bool:
    """True in a worker process (one of K >= 2): other processes serve the same function."""
    return _current is not None


def die_with_supervisor(supervisor_pid: int) -> None:
    """Ask Linux to SIGKILL this worker when its supervisor dies, however it dies.

    The supervisor also stops its workers on every exit path it controls; this covers the
    ones it does not (SIGKILL, a crash). If the supervisor died before this call, exit now.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor_pid:
        os._exit(ORPHANED_EXIT)
