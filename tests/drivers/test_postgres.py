"""PostgreSQL: psycopg 3 (waits in Python on patched selectors) and psycopg2 (libpq in C:
blocks the process unless lmi-gevent registers its gevent wait callback)."""

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

SLEEP = f"SELECT pg_sleep({WAIT_SECONDS:g})"


def pg_stat_activity(dsn: str, marker: str) -> Callable[[], int]:
    """Count this runtime's backends busy in pg_sleep (the server's view): the runtime's
    connections carry ``marker`` as their application_name."""
    import psycopg

    connection = psycopg.connect(dsn, autocommit=True)

    def probe() -> int:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
            "AND application_name = %s AND query LIKE '%%pg_sleep%%'", (marker,)).fetchone()
        return int(row[0])

    return probe


def run(driver_run: DriverRun, postgres: str, handler: str, row: Row,
        env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    require_module("psycopg", "install the test extra: pip install -e '.[test]'")
    marker = token()
    driver_run.start(handler, {"MATRIX_POSTGRES_DSN": f"{postgres} application_name={marker}",
                               **(env or {})})
    with Sampler(pg_stat_activity(postgres, marker)) as server:
        seen = driver_run.invoke_together({"seconds": WAIT_SECONDS})
    assert_overlap(row, seen, server_overlap=server.peak)
    return seen.answers


@pytest.mark.matrix(library="psycopg 3", package="psycopg", server="PostgreSQL", wait=SLEEP,
                    expected=True,
                    note="seeing gevent's patched select at import, psycopg picks a Python "
                         "wait function")
def test_psycopg3_queries_overlap(driver_run: DriverRun, postgres: str,
                                  matrix_row: Row) -> None:
    run(driver_run, postgres, "app_psycopg3.handler", matrix_row)


@pytest.mark.matrix(library="psycopg 3 with its C wait function", package="psycopg",
                    server="PostgreSQL", wait=SLEEP, expected=False,
                    note="PSYCOPG_WAIT_FUNC=wait_c, which is also what psycopg picks when "
                         "imported before gevent patched (e.g. from sitecustomize)")
def test_psycopg3_with_its_c_wait_function_runs_one_at_a_time(
        driver_run: DriverRun, postgres: str, matrix_row: Row) -> None:
    run(driver_run, postgres, "app_psycopg3.handler", matrix_row,
        {"PSYCOPG_WAIT_FUNC": "wait_c"})


@pytest.mark.matrix(library="psycopg2", package="psycopg2-binary", server="PostgreSQL",
                    wait=SLEEP, expected=True,
                    note="lmi-gevent registers a gevent wait callback (default); pool of "
                         "connections made at init")
def test_psycopg2_queries_overlap_with_the_wait_callback(driver_run: DriverRun, postgres: str,
                                                         matrix_row: Row) -> None:
    require_module("psycopg2", "install the test extra: pip install -e '.[test]'")
    answers = run(driver_run, postgres, "app_psycopg2_pool.handler", matrix_row)
    assert all(answer["wait_callback"] for answer in answers)


@pytest.mark.matrix(library="psycopg2 (imported inside the handler)",
                    package="psycopg2-binary", server="PostgreSQL", wait=SLEEP, expected=True,
                    note="the wait callback is registered when the handler first imports "
                         "psycopg2")
def test_psycopg2_imported_lazily_still_overlaps(driver_run: DriverRun, postgres: str,
                                                 matrix_row: Row) -> None:
    require_module("psycopg2", "install the test extra: pip install -e '.[test]'")
    answers = run(driver_run, postgres, "app_psycopg2_lazy.handler", matrix_row)
    assert not any(answer["imported_at_init"] for answer in answers)
    assert all(answer["wait_callback"] for answer in answers)


@pytest.mark.matrix(library="psycopg2 with LMI_GEVENT_PSYCOPG2_WAIT_CALLBACK=off",
                    package="psycopg2-binary", server="PostgreSQL", wait=SLEEP, expected=False,
                    note="libpq waits in C and blocks every invocation: the opt-out "
                         "(needed only for COPY / large objects)")
def test_psycopg2_without_the_wait_callback_runs_one_at_a_time(
        driver_run: DriverRun, postgres: str, matrix_row: Row) -> None:
    require_module("psycopg2", "install the test extra: pip install -e '.[test]'")
    answers = run(driver_run, postgres, "app_psycopg2_pool.handler", matrix_row,
                  {"LMI_GEVENT_PSYCOPG2_WAIT_CALLBACK": "off"})
    assert not any(answer["wait_callback"] for answer in answers)
