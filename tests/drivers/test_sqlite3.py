"""sqlite3: SQLite runs in-process, in C. Its busy handler sleeps in C while another process
holds the lock, so waiting invocations run one at a time (the documented behaviour)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterator

import pytest

from .conftest import WAIT_SECONDS, DriverRun, assert_overlap
from .matrix import Row

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture
def locked_database(tmp_path: Path) -> Iterator[Path]:
    """A database this (test) process holds an exclusive lock on while the test runs."""
    path = tmp_path / "matrix.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE items (id INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    yield path
    holder.execute("ROLLBACK")
    holder.close()


@pytest.mark.matrix(library="sqlite3 (stdlib)", package="sqlite3", server="a locked database file",
                    wait=f"SELECT with timeout={WAIT_SECONDS:g} (busy wait)", expected=False,
                    note="SQLite waits in C (its busy handler sleeps); keep waits short or "
                         "use a server database")
def test_sqlite3_busy_waits_run_one_at_a_time(driver_run: DriverRun, locked_database: Path,
                                              matrix_row: Row) -> None:
    driver_run.start("app_sqlite3.handler")
    seen = driver_run.invoke_together({"seconds": WAIT_SECONDS,
                                       "database": str(locked_database)})
    assert all(answer["locked"] for answer in seen.answers)  # each really waited for the lock
    assert_overlap(matrix_row, seen)
