"""The shared status between workers and the supervisor."""

from __future__ import annotations

import os
import time

from lmi_gevent.workers import scoreboard


def test_a_worker_record_is_what_the_supervisor_reads() -> None:
    board = scoreboard.Scoreboard([2, 2, 2])
    try:
        record = scoreboard.WorkerRecord(os.dup(board.fd), 1, board.slot_tables[1])
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
    board = scoreboard.Scoreboard([1])
    try:
        record = scoreboard.WorkerRecord(os.dup(board.fd), 0, board.slot_tables[0])
        record.write_wedge_report("é" * 2000)
        assert len(board.read(0).wedge_report.encode()) <= scoreboard.REPORT_LIMIT
        record.in_flight(-1)
        assert board.read(0).in_flight == 0
    finally:
        board.close()


def test_slot_entries_name_the_running_invocations_until_they_end() -> None:
    board = scoreboard.Scoreboard([3, 2])
    try:
        first = scoreboard.WorkerRecord(os.dup(board.fd), 0, board.slot_tables[0])
        second = scoreboard.WorkerRecord(os.dup(board.fd), 1, board.slot_tables[1])
        first.begin(0, "rid-a", "inv-a", 1_700_000_000_000)
        first.begin(2, "rid-c", None, 1_700_000_000_500)
        second.begin(1, "rid-z", "inv-z", 5)
        second.begin(0, "x" * 200, "too long to keep", 5)  # not kept: it could not be answered
        assert board.running(0) == [("rid-a", "inv-a", 1_700_000_000_000),
                                    ("rid-c", None, 1_700_000_000_500)]
        assert board.running(1) == [("rid-z", "inv-z", 5)]
        first.end(0)
        assert [r.request_id for r in board.running(0)] == ["rid-c"]
        board.clear(0)
        assert board.running(0) == [] and board.running(1) == [("rid-z", "inv-z", 5)]
    finally:
        board.close()


def test_outside_a_worker_the_module_writer_is_a_no_op() -> None:
    assert isinstance(scoreboard.current(), scoreboard.NoRecord)
    scoreboard.write_wedge_report("nobody reads this")  # must not raise
