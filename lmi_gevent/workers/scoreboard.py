"""The status each worker process shares with its supervisor, in one anonymous shared file.

One fixed-size record per worker: its pid, open ``/next`` polls, invocations in flight,
invocations answered, an event-loop heartbeat, and a short text "wedge report"; then one
entry per slot naming the invocation it runs (request id, invocation id, deadline), so that
the supervisor can answer the invocations of a worker that died. The
supervisor creates the file (a memfd) and passes its descriptor to every worker; a worker
writes only its own record, the supervisor only reads (and clears a record before it starts
a replacement). Counters are written from the worker's event loop; the wedge report may be
written from any thread (:func:`write_wedge_report`), so a native monitor thread can say what
the loop was stuck on while the loop itself cannot. Stdlib only, importable before patching.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

from ..records import Record

RECORD_SIZE = 1024
# pid, open polls, in flight, report length, heartbeat (monotonic), answered, report time (epoch)
_FIELDS = struct.Struct("<iIIIdQd")
_PID, _POLLS, _IN_FLIGHT, _REPORT_LENGTH = 0, 4, 8, 12
_HEARTBEAT, _ANSWERED, _REPORT_TIME = 16, 24, 32
_REPORT = _FIELDS.size
REPORT_LIMIT = RECORD_SIZE - _REPORT  # bytes of UTF-8 a wedge report keeps
# One slot: deadline (epoch ms, 0 = idle), request id, invocation id (length-prefixed).
SLOT_SIZE = 256
_SLOT = struct.Struct("<QHH")
_ID_LIMIT = (SLOT_SIZE - _SLOT.size) // 2


class SlotInvocation(Record):
    """What a slot was running, as the supervisor reads it."""

    request_id: str
    invocation_id: str | None
    deadline_ms: int


class WorkerStatus(Record):
    """One worker's record as the supervisor reads it."""

    pid: int
    open_polls: int
    in_flight: int
    heartbeat: float  # time.monotonic() of the loop's last beat; 0.0 before the first
    answered: int
    wedge_report: str
    wedge_report_time: float  # time.time() when it was written; 0.0 if none


class Scoreboard:
    """The supervisor's side: one record per worker (``shares[i]`` slots each) in a shared
    file inherited by the workers."""

    def __init__(self, shares: list[int]) -> None:
        self.shares = list(shares)
        # The K records first, then each worker's slot table.
        self.slot_tables = []
        offset = len(shares) * RECORD_SIZE
        for slots in shares:
            self.slot_tables.append(offset)
            offset += slots * SLOT_SIZE
        self.fd = _shared_file(offset)
        self.memory = mmap.mmap(self.fd, offset)

    def clear(self, index: int) -> None:
        start = index * RECORD_SIZE
        self.memory[start:start + RECORD_SIZE] = bytes(RECORD_SIZE)
        table = self.slot_tables[index]
        size = self.shares[index] * SLOT_SIZE
        self.memory[table:table + size] = bytes(size)

    def running(self, index: int) -> list[SlotInvocation]:
        """The invocations worker ``index``'s slots were running (read them once it is dead
        or stuck: a live loop may change an entry while it is read)."""
        found = []
        for slot in range(self.shares[index]):
            at = self.slot_tables[index] + slot * SLOT_SIZE
            deadline, rid_length, inv_length = _SLOT.unpack_from(self.memory, at)
            if not deadline or not rid_length:
                continue
            ids = at + _SLOT.size
            request_id = self.memory[ids:ids + rid_length].decode("ascii", "replace")
            invocation = self.memory[ids + _ID_LIMIT:ids + _ID_LIMIT + inv_length]
            found.append(SlotInvocation(request_id, invocation.decode("ascii", "replace")
                                        if inv_length else None, deadline))
        return found

    def read(self, index: int) -> WorkerStatus:
        start = index * RECORD_SIZE
        pid, polls, in_flight, length, beat, answered, when = _FIELDS.unpack_from(self.memory, start)
        length = min(length, REPORT_LIMIT)
        text = self.memory[start + _REPORT:start + _REPORT + length].decode("utf-8", "replace")
        return WorkerStatus(pid, polls, in_flight, beat, answered, text, when)

    def close(self) -> None:
        self.memory.close()
        os.close(self.fd)


class WorkerRecord:
    """A worker's side: its own record, mapped from the descriptor the supervisor passed."""

    supervised = True

    def __init__(self, fd: int, index: int, slot_table: int = 0) -> None:
        size = os.fstat(fd).st_size
        self.memory = mmap.mmap(fd, size)
        os.close(fd)  # the mapping stays; the handler's subprocesses must not inherit the fd
        self.start = index * RECORD_SIZE
        self.slot_table = slot_table
        struct.pack_into("<i", self.memory, self.start + _PID, os.getpid())

    def begin(self, slot: int, request_id: str, invocation_id: str | None,
              deadline_ms: int) -> None:
        """Slot ``slot`` runs this invocation now (ids too long to keep are not kept)."""
        if not self.slot_table:
            return
        at = self.slot_table + slot * SLOT_SIZE
        rid = request_id.encode("ascii", "replace")
        inv = (invocation_id or "").encode("ascii", "replace")
        if len(rid) > _ID_LIMIT or len(inv) > _ID_LIMIT:
            return
        ids = at + _SLOT.size
        self.memory[ids:ids + len(rid)] = rid
        self.memory[ids + _ID_LIMIT:ids + _ID_LIMIT + len(inv)] = inv
        # The deadline last: a non-zero deadline means the ids beside it are complete.
        _SLOT.pack_into(self.memory, at, max(deadline_ms, 1), len(rid), len(inv))

    def end(self, slot: int) -> None:
        if self.slot_table:
            _SLOT.pack_into(self.memory, self.slot_table + slot * SLOT_SIZE, 0, 0, 0)

    def _add(self, offset: int, delta: int) -> None:
        (value,) = struct.unpack_from("<I", self.memory, self.start + offset)
        struct.pack_into("<I", self.memory, self.start + offset, max(value + delta, 0))

    def polls(self, delta: int) -> None:
        self._add(_POLLS, delta)

    def in_flight(self, delta: int) -> None:
        self._add(_IN_FLIGHT, delta)

    def answered(self) -> None:
        (value,) = struct.unpack_from("<Q", self.memory, self.start + _ANSWERED)
        struct.pack_into("<Q", self.memory, self.start + _ANSWERED, value + 1)

    def beat(self) -> None:
        struct.pack_into("<d", self.memory, self.start + _HEARTBEAT, time.monotonic())

    def write_wedge_report(self, text: str) -> None:
        data = text.encode("utf-8")[:REPORT_LIMIT]
        # Length 0 first, so a reader never pairs a new length with half-written text.
        struct.pack_into("<I", self.memory, self.start + _REPORT_LENGTH, 0)
        self.memory[self.start + _REPORT:self.start + _REPORT + len(data)] = data
        struct.pack_into("<d", self.memory, self.start + _REPORT_TIME, time.time())
        struct.pack_into("<I", self.memory, self.start + _REPORT_LENGTH, len(data))


class NoRecord:
    """The record of a process that has no supervisor (one process, sequential mode)."""

    supervised = False

    def begin(self, slot: int, request_id: str, invocation_id: str | None,
              deadline_ms: int) -> None:
        pass

    def end(self, slot: int) -> None:
        pass

    def polls(self, delta: int) -> None:
        pass

    def in_flight(self, delta: int) -> None:
        pass

    def answered(self) -> None:
        pass

    def beat(self) -> None:
        pass

    def write_wedge_report(self, text: str) -> None:
        pass


_current: WorkerRecord | NoRecord = NoRecord()


def attach(fd: int, index: int, slot_table: int) -> WorkerRecord:
    """Called once in a worker process, before serving: this process's record from now on."""
    global _current
    _current = WorkerRecord(fd, index, slot_table)
    return _current


def current() -> WorkerRecord | NoRecord:
    return _current


def write_wedge_report(text: str) -> None:
    """Tell the supervisor what this worker's event loop is stuck on (a stack, an invocation).

    Safe from any thread, including a native monitor thread while the loop is blocked. The
    text is cut to :data:`REPORT_LIMIT` bytes of UTF-8. A no-op outside a worker process.
    """
    _current.write_wedge_report(text)


def _shared_file(size: int) -> int:
    try:
        fd = os.memfd_create("lmi-gevent-scoreboard")  # close-on-exec; passed on explicitly
    except (AttributeError, OSError):  # not Linux
        import tempfile  # not at import: a worker (and one process's slots) never needs it

        handle = tempfile.TemporaryFile()
        fd = os.dup(handle.fileno())
        handle.close()
    os.ftruncate(fd, size)
    return fd
