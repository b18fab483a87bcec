"""multiprocessing in a handler (concurrent mode): its waits yield to the other invocations.

Every invocation starts its own child processes, which sleep WAIT_SECONDS; the handler waits
for them with the call in the row. Unadapted, the Pool's result handler (a greenlet after
patching) reads its pipe with a blocking ``os.read`` and the whole runtime hangs.
"""

from __future__ import annotations

import pytest

from .conftest import WAIT_SECONDS, DriverRun, assert_overlap
from .matrix import Row

pytestmark = [pytest.mark.timeout(90)]

SQUARES = [0, 1, 4, 9]
NOTE = "lmi-gevent makes Connection reads/writes and multiprocessing locks wait on gevent"


def _row(wait: str, note: str = NOTE) -> pytest.MarkDecorator:
    return pytest.mark.matrix(library="multiprocessing (stdlib)", package="",
                              server="child processes (sleep 0.5 s)", wait=wait, expected=True,
                              note=note)


@pytest.mark.parametrize("kind", [
    pytest.param("map", marks=_row("with Pool(2) as p: p.map(...)")),
    pytest.param("imap", marks=_row("with Pool(2) as p: list(p.imap(...))")),
    pytest.param("apply_async", marks=_row("Pool(2).apply_async(...).get()")),
    pytest.param("close_join", marks=_row("p = Pool(2); p.map(...); p.close(); p.join()",
                                          "no context manager: close() and join()")),
])
def test_pool_waits_overlap(driver_run: DriverRun, matrix_row: Row, kind: str) -> None:
    driver_run.start("app_multiprocessing.handler")
    seen = driver_run.invoke_together({"kind": kind, "seconds": WAIT_SECONDS})
    assert [answer["results"] for answer in seen.answers] == [SQUARES] * seen.concurrency
    assert_overlap(matrix_row, seen)


@pytest.mark.parametrize("kind", [
    pytest.param("queue", marks=_row("Queue().get() from a Process")),
    pytest.param("pipe", marks=_row("Pipe() then Connection.recv() from a Process",
                                    "a duplex Pipe is made of gevent's non-blocking sockets; "
                                    "recv() waits for them")),
    pytest.param("join", marks=_row("Process(...).join()",
                                    "gevent's os.waitpid already cooperates")),
])
def test_process_waits_overlap(driver_run: DriverRun, matrix_row: Row, kind: str) -> None:
    driver_run.start("app_multiprocessing.handler")
    seen = driver_run.invoke_together({"kind": kind, "seconds": WAIT_SECONDS})
    # [the child's pid came back, its exit code]
    assert [answer["results"] for answer in seen.answers] == [[True, 0]] * seen.concurrency
    assert_overlap(matrix_row, seen)
