"""MariaDB: PyMySQL (pure Python sockets, cooperates) and mysqlclient (libmariadb waits in C,
blocks: lmi-gevent has no hook to make it cooperate)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from .conftest import (
    WAIT_SECONDS,
    DriverRun,
    Sampler,
    assert_overlap,
    require_module,
    token,
)
from .matrix import Row

pytestmark = [pytest.mark.timeout(60), pytest.mark.services]

SLEEP = f"SELECT SLEEP({WAIT_SECONDS:g})"


def processlist(server: dict[str, Any], marker: str) -> Callable[[], int]:
    """Count the sessions running one of this test's statements (the server's view)."""
    import pymysql

    connection = pymysql.connect(autocommit=True, **server)

    def probe() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                           "WHERE ID <> CONNECTION_ID() AND INFO LIKE %s", (f"%{marker}%",))
            return int(cursor.fetchone()[0])

    return probe


def run(driver_run: DriverRun, mariadb: dict[str, Any], handler: str, row: Row) -> None:
    require_module("pymysql", "install the test extra: pip install -e '.[test]'")
    marker = token()
    driver_run.start(handler)
    with Sampler(processlist(mariadb, marker)) as server:
        seen = driver_run.invoke_together({"seconds": WAIT_SECONDS, "token": marker})
    assert_overlap(row, seen, server_overlap=server.peak)


@pytest.mark.matrix(library="PyMySQL", package="PyMySQL", server="MariaDB", wait=SLEEP,
                    expected=True, note="pure Python on gevent's patched socket")
def test_pymysql_queries_overlap(driver_run: DriverRun, mariadb: dict[str, Any],
                                 matrix_row: Row) -> None:
    run(driver_run, mariadb, "app_mysql.with_pymysql", matrix_row)


@pytest.mark.matrix(library="mysqlclient (MySQLdb)", package="mysqlclient", server="MariaDB",
                    wait=SLEEP, expected=False,
                    note="libmariadb waits in C and blocks every invocation; no wait hook "
                         "exists: use PyMySQL")
def test_mysqlclient_runs_one_at_a_time(driver_run: DriverRun, mariadb: dict[str, Any],
                                        matrix_row: Row) -> None:
    # Optional: not in the test extra, because building it needs libmariadb-dev.
    require_module("MySQLdb", "pip install mysqlclient (needs libmariadb-dev and pkg-config)",
                   optional=True)
    run(driver_run, mariadb, "app_mysql.with_mysqlclient", matrix_row)
