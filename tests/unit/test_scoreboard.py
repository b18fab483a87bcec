"""The shared status between workers and the supervisor."""

from __future__ import annotations

import os
import time

from lmi_gevent import scoreboard


def test_a_worker_record_is_what_the_supervisor_reads() -> None:
    board = scoreboard.Scoreboard(3)
    try:
        record = scoreboard.WorkerRecord(os.dup(board.fd), 1)
        record.polls(+4)
        record.polls(-1)
        record.in_flight(+2)
        record.answered()
        record.answered()
        before = time.monotonic()
        record.beat()
        record.write_wedge_report("blocked in os.read for request 1-2-3")
        status = board.read(1)
        assert (status.pid, status.open_polls, status.in_flight, status.answered) == (os.getpid(), 3, 2, 2)
        assert status.heartbeat >= before and status.wedge_report == "blocked in os.read for request 1-2-3"
        assert board.read(0) == board.read(2) == scoreboard.WorkerStatus(0, 0, 0, 0.0, 0, "", 0.0)
        board.clear(1)
        assert board.read(1).open_polls == 0 and board.read(1).wedge_report == ""
    finally:
        board.close()


def test_a_wedge_report_is_cut_to_the_record_and_counters_never_go_negative() -> None:
    board = scoreboard.Scoreboard(1)
    try:
        record = scoreboard.WorkerRecord(os.dup(board.fd), 0)
        record.write_wedge_report("é" * 2000)
        assert len(board.read(0).wedge_report.encode()) <= scoreboard.REPORT_LIMIT
        record.in_flight(-1)
        assert board.read(0).in_flight == 0
    finally:
        board.close()


def test_outside_a_worker_the_module_writer_is_a_no_op() -> None:
    assert isinstance(scoreboard.current(), scoreboard.NoRecord)
    scoreboard.write_wedge_report("nobody reads this")  # must not raise
