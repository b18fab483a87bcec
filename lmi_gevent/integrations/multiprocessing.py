"""``multiprocessing`` in a handler, made to wait on gevent (concurrent mode).

After ``gevent.monkey.patch_all()`` a ``multiprocessing.Pool``'s three handler threads are
greenlets of the runtime's one thread, and the waits they and the handler do are C calls that
never yield:

* ``Connection.recv`` (``Pipe``, ``Queue.get``, the Pool's result handler) reads its pipe with
  a blocking ``os.read``: the Pool's result handler sits in it as soon as the pool starts, so
  the first ``Pool.map`` froze the whole process for good;
* ``Connection.send`` writes with ``os.write``, which blocks on a full pipe;
* the locks of ``multiprocessing.synchronize`` (``Queue``'s and ``SimpleQueue``'s read and
  write locks, ``Lock``, ``Semaphore``, ``Event``, ``Condition``) wait in ``sem_wait``;
* a duplex ``Pipe()`` is made of gevent's non-blocking sockets, so its ``recv`` failed with
  ``BlockingIOError`` instead of waiting.

:func:`cooperate` replaces those three waits, in the runtime's own process, with ones that
let the other invocations run: reads and writes wait for their fd with gevent first, and a
lock that is taken is retried after a short gevent sleep (a POSIX semaphore has no fd to wait
on). ``multiprocessing.connection.wait`` (``Connection.poll``, ``Process.join`` with a
timeout, the Pool's worker handler) and ``os.waitpid`` (``Process.join``) already cooperate:
gevent patches ``select.poll`` and ``os.waitpid``.

In any other process (a forked ``Pool`` worker, a ``Process``) the original blocking waits
run: yielding to the hub there would resume the copies of the runtime's greenlets that the
fork inherited. Only the non-blocking sockets of a duplex ``Pipe`` get a native wait there.

Imported only in concurrent mode, after patching, when the handler imports
``multiprocessing.connection`` or ``multiprocessing.synchronize``.
"""

from __future__ import annotations

import io
import os
import time
from types import ModuleType
from typing import Any, Callable

from .hooks import when_imported

# Lock retries: the first after 1 ms, doubling up to this. A POSIX semaphore cannot be waited
# on through the hub; at 20 ms a lock freed meanwhile is taken at most that late.
LOCK_RETRY_MAX = 0.02
LOCK_RETRY_FIRST = 0.001

_runtime_pid: int | None = None


def install() -> None:
    """Adapt ``multiprocessing`` now, or as soon as the handler imports its pieces.

    Call in the runtime's process: that process, and no child of it, is the one that waits
    on gevent. Imports nothing of ``multiprocessing`` itself.
    """
    global _runtime_pid
    _runtime_pid = os.getpid()
    when_imported("multiprocessing.connection", cooperate_connections)
    when_imported("multiprocessing.synchronize", cooperate_locks)
    os.register_at_fork(after_in_child=leave_the_runtime_behind)


def leave_the_runtime_behind() -> None:
    """In a child forked without exec (a Pool worker, a ``Process``), give the child a hub
    of its own.

    The child inherits the runtime's greenlets and its event loop, with watchers on sockets
    it shares with the runtime: gevent's fork only re-arms that loop, so the first patched
    wait in the child (a ``time.sleep`` in a Pool task) would resume slot greenlets there,
    and the child would read the runtime's invocations off the shared ``/next`` sockets.
    A new, non-default loop has none of those watchers; the inherited greenlets never run.
    (:mod:`lmi_gevent.serving.stopping` gives the child back the default SIGTERM/SIGINT handlers:
    ``Pool.terminate()`` must be able to end a worker.)
    """
    import gevent.hub

    gevent.hub.set_hub(gevent.hub.Hub(default=False))


def in_runtime_process() -> bool:
    """True in the process that serves the invocations (not in a child it forked)."""
    return os.getpid() == _runtime_pid


def cooperate_connections(connection: ModuleType) -> None:
    """``Connection`` reads and writes wait for their fd through gevent."""
    cls = connection.Connection
    if getattr(cls, "lmi_gevent", False):
        return
    chunk = _pipe_chunk()
    cls._recv = _recv
    cls._send = _make_send(chunk)
    cls.lmi_gevent = True


def cooperate_locks(synchronize: ModuleType) -> None:
    """The locks of ``multiprocessing.synchronize`` retry on gevent instead of ``sem_wait``."""
    cls = synchronize.SemLock
    if getattr(cls, "lmi_gevent", False):
        return
    make_methods = cls._make_methods

    def _make_methods(self: Any) -> None:
        make_methods(self)
        self.acquire = cooperative_acquire(self._semlock.acquire)

    def __enter__(self: Any) -> bool:
        return self.acquire()

    cls._make_methods = _make_methods
    cls.__enter__ = __enter__
    cls.lmi_gevent = True


def cooperative_acquire(native: Callable[..., bool]) -> Callable[..., bool]:
    """``SemLock.acquire(block=True, timeout=None)`` that sleeps on gevent between tries."""
    import gevent

    def acquire(block: bool = True, timeout: float | None = None) -> bool:
        if not in_runtime_process():
            return native(block, timeout)
        if native(False):
            return True
        if not block:
            return False
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        delay = LOCK_RETRY_FIRST
        while True:
            pause = delay
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                pause = min(delay, left)
            gevent.sleep(pause)
            if native(False):
                return True
            delay = min(delay * 2, LOCK_RETRY_MAX)

    return acquire


# --- Connection I/O ------------------------------------------------------------------------------

def _recv(self: Any, size: int) -> io.BytesIO:
    """The stdlib's ``Connection._recv``, waiting for the fd before each read."""
    buf = io.BytesIO()
    handle = self._handle
    wait = _wait_readable()
    remaining = size
    while remaining > 0:
        wait(handle)
        try:
            chunk = os.read(handle, remaining)
        except BlockingIOError:  # a non-blocking socket, readable for someone else first
            continue
        if not chunk:
            if remaining == size:
                raise EOFError
            raise OSError("got end of file during message")
        buf.write(chunk)
        remaining -= len(chunk)
    return buf


def _make_send(chunk: int) -> Callable[[Any, Any], None]:
    def _send(self: Any, buf: Any) -> None:
        """The stdlib's ``Connection._send``, waiting for the fd before each write.

        A writable pipe has room for ``PIPE_BUF`` bytes, so a write of at most that many
        cannot block even on a blocking fd.
        """
        view = memoryview(buf).cast("B")
        handle = self._handle
        wait = _wait_writable()
        while view:
            wait(handle)
            try:
                written = os.write(handle, view[:chunk])
            except BlockingIOError:
                continue
            view = view[written:]

    return _send


def _pipe_chunk() -> int:
    import select

    return getattr(select, "PIPE_BUF", 512)


def _wait_readable() -> Callable[[int], None]:
    if in_runtime_process():
        from gevent.socket import wait_read
        return wait_read
    return _native_wait("POLLIN")


def _wait_writable() -> Callable[[int], None]:
    if in_runtime_process():
        from gevent.socket import wait_write
        return wait_write
    return _native_wait("POLLOUT")


def _native_wait(event: str) -> Callable[[int], None]:
    """A wait that does not involve the hub (a child process): the unpatched ``poll``."""
    from gevent import monkey

    select = monkey.get_original("select", ["poll", event])
    poll_class, mask = select

    def wait(fd: int) -> None:
        poller = poll_class()
        poller.register(fd, mask)
        poller.poll()

    return wait
