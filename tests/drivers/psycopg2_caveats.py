"""Checks every claim lmi_gevent/integrations/psycopg2.py makes about psycopg2 with the gevent wait
callback, in a fresh patched interpreter; prints one JSON object of observations.

    python tests/drivers/psycopg2_caveats.py DSN
"""
# ruff: noqa: E402 - the imports below must follow monkey.patch_all(), as in the runtime

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

# Everything below is imported after patching, as in the runtime.
import io
import json
import select
import socket
import sys
from typing import Any, Callable

import gevent

from lmi_gevent.integrations import psycopg2 as cooperation

DSN = sys.argv[1]
MADE_BEFORE_INSTALL: list[Any] = []


def outcome(action: Callable[[], Any]) -> Any:
    """The value, or the exception's class name and first line: what the handler would see."""
    try:
        return action()
    except BaseException as problem:  # noqa: BLE001
        # gevent.Timeout is a BaseException; report it like any other outcome.
        return f"{type(problem).__name__}: {str(problem).strip().splitlines()[0]}"


def connect(**extra: Any) -> Any:
    import psycopg2
    return psycopg2.connect(DSN, **extra)


def named_cursor() -> Any:
    connection = connect()
    with connection.cursor("server_side") as cursor:
        cursor.itersize = 10
        cursor.execute("SELECT generate_series(1, 100)")
        return sum(value for (value,) in cursor)


def cancel_from_another_greenlet() -> Any:
    connection = connect()
    gevent.spawn_later(0.2, connection.cancel)
    seen = outcome(lambda: connection.cursor().execute("SELECT pg_sleep(5)"))
    connection.rollback()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return {"query": seen, "after": cursor.fetchone()[0]}


def copy_out() -> Any:
    buffer = io.StringIO()
    with connect().cursor() as cursor:
        cursor.copy_expert("COPY (SELECT generate_series(1, 3)) TO STDOUT", buffer)
    return buffer.getvalue()


def copy_in() -> Any:
    with connect().cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE copied (x int)")
        cursor.copy_from(io.StringIO("1\n2\n"), "copied")
        cursor.execute("SELECT count(*) FROM copied")
        return cursor.fetchone()[0]


def large_object() -> Any:
    connection = connect()
    large = connection.lobject(0, "wb")
    large.write(b"x")
    connection.rollback()
    return "written"


def shared_connection() -> Any:
    connection = connect()

    def query() -> Any:
        return outcome(lambda: connection.cursor().execute("SELECT pg_sleep(0.3)") or "ok")

    first, second = gevent.spawn(query), gevent.spawn(query)
    gevent.joinall([first, second])
    return sorted([first.value, second.value])


def interrupted_query() -> Any:
    marker = "lmi-gevent-interrupted"
    connection = connect(application_name=marker)
    with gevent.Timeout(0.2):
        try:
            connection.cursor().execute("SELECT pg_sleep(1.5)")
        except gevent.Timeout:
            pass
    observer = connect()
    with observer.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                       "AND state = 'active'", (marker,))
        still_running = cursor.fetchone()[0]
    return {"closed": connection.closed,
            "next_use": outcome(lambda: connection.cursor().execute("SELECT 1")),
            "server_still_running": still_running}


def connect_timeout() -> Any:
    # Accepts TCP connections (the kernel does) but never speaks: libpq would wait forever.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    with gevent.Timeout(10, AssertionError("connect_timeout was not enforced")):
        return outcome(lambda: connect(host="127.0.0.1", port=port, connect_timeout=1))


def async_connection() -> Any:
    from psycopg2 import extensions

    connection = connect(async_=True)

    def wait() -> None:
        while (state := connection.poll()) != extensions.POLL_OK:
            readable = [connection.fileno()] if state == extensions.POLL_READ else []
            select.select(readable, [connection.fileno()] if not readable else [], [])

    wait()
    cursor = connection.cursor()
    cursor.execute("SELECT 42")
    wait()
    return cursor.fetchone()[0]


def made_before_install_cooperate() -> Any:
    in_wait = peak = 0

    def query(connection: Any) -> None:
        nonlocal in_wait, peak
        in_wait += 1
        peak = max(peak, in_wait)
        connection.cursor().execute("SELECT pg_sleep(0.3)")
        in_wait -= 1

    gevent.joinall([gevent.spawn(query, c) for c in MADE_BEFORE_INSTALL])
    return {"connections": len(MADE_BEFORE_INSTALL), "peak": peak}


def main() -> None:
    import psycopg2.extensions

    MADE_BEFORE_INSTALL.extend(connect() for _ in range(3))
    cooperation.install()
    assert getattr(psycopg2.extensions.get_wait_callback(), "lmi_gevent", False)
    checks = {name: outcome(check) for name, check in (
        ("named_cursor", named_cursor), ("cancel", cancel_from_another_greenlet),
        ("copy_out", copy_out), ("copy_in", copy_in), ("large_object", large_object),
        ("shared_connection", shared_connection), ("interrupted", interrupted_query),
        ("connect_timeout", connect_timeout), ("async_connection", async_connection),
        ("made_before_install", made_before_install_cooperate))}
    # The opt-out: without a wait callback, COPY works again.
    psycopg2.extensions.set_wait_callback(None)
    checks["copy_out_opted_out"] = outcome(copy_out)
    print(json.dumps(checks))


if __name__ == "__main__":
    main()
