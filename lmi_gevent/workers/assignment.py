"""What a worker process is told by its supervisor, and how it says why it ended.

The supervisor (:mod:`lmi_gevent.workers.supervisor`) starts a replacement worker as a fresh
``python -m lmi_gevent HANDLER`` with :data:`ASSIGNMENT_ENV` set, read in step 1 of the
worker's lifecycle; the first generation is forked at step 2 and handed its assignment
directly (:mod:`lmi_gevent.workers.forking`). Both before gevent patches anything: stdlib
only, and nothing that imports threading.
"""

from __future__ import annotations

import os
import sys

from ..config import ASSIGNMENT_ENV


# Named exit codes (gunicorn's WORKER_BOOT_ERROR / APP_LOAD_ERROR idea): why a worker ended.
INIT_ERROR_EXIT = 3  # the handler (or a setting) could not be loaded
PLATFORM_FAILURE_EXIT = 4  # the Runtime API answered 500: the environment is beyond repair
ORPHANED_EXIT = 5  # the supervisor was gone before this worker could tie its life to it
WEDGED_EXIT = 6  # its event loop was wedged: it answered its invocations and left

_PR_SET_PDEATHSIG = 1


class WorkerAssignment:
    """One worker's share of the execution environment (read-only by convention: a plain
    class, as dataclasses would import inspect into every classic cold start)."""

    __slots__ = ("index", "slots", "status_fd", "slot_table", "replacement", "supervisor_pid")

    def __init__(self, index: int, slots: int, status_fd: int, slot_table: int,
                 replacement: bool, supervisor_pid: int) -> None:
        self.index = index  # 0..K-1, stable across replacements
        self.slots = slots  # this worker's share of AWS_LAMBDA_MAX_CONCURRENCY
        self.status_fd = status_fd  # the scoreboard's descriptor (lmi_gevent.workers.scoreboard)
        self.slot_table = slot_table  # where this worker's slot entries start in it
        self.replacement = replacement  # started after a worker died: never posts an init error
        self.supervisor_pid = supervisor_pid

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkerAssignment) and self.encode() == other.encode()

    def __hash__(self) -> int:
        return hash(self.encode())

    def __repr__(self) -> str:
        return f"WorkerAssignment({self.encode()})"

    def encode(self) -> str:
        return (f"{self.index},{self.slots},{self.status_fd},{self.slot_table},"
                f"{int(self.replacement)},{self.supervisor_pid}")

    @classmethod
    def decode(cls, text: str) -> WorkerAssignment:
        index, slots, fd, table, replacement, supervisor = (int(part) for part in text.split(","))
        return cls(index, slots, fd, table, bool(replacement), supervisor)


def slot_shares(slots: int, workers: int) -> list[int]:
    """N slots over K workers: sizes differ by at most one and sum to exactly N."""
    base, extra = divmod(slots, workers)
    return [base + (1 if index < extra else 0) for index in range(workers)]


_current: WorkerAssignment | None = None


def assignment() -> WorkerAssignment | None:
    """This process's assignment, or None when it is not a supervised worker."""
    global _current
    text = os.environ.pop(ASSIGNMENT_ENV, None)  # the handler's own subprocesses are no workers
    if text:
        _current = WorkerAssignment.decode(text)
    return _current


def adopt(forked: WorkerAssignment) -> None:
    """This process is a worker its supervisor forked with ``forked`` as its assignment."""
    global _current
    _current = forked


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
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor_pid:
        os._exit(ORPHANED_EXIT)
