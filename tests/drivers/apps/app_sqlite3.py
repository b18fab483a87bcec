"""sqlite3, unmodified: a read that waits for a lock another process holds.

SQLite's busy handler sleeps in C (inside sqlite3_step) until the lock is released or the
timeout passes, so gevent never gets a chance to run another invocation meanwhile.
"""

from __future__ import annotations

import sqlite3

from overlap_meter import answer, waiting


def handler(event, context):
    connection = sqlite3.connect(event["database"], timeout=event["seconds"])
    try:
        with waiting():
            try:
                connection.execute("SELECT count(*) FROM items").fetchone()
                locked = False
            except sqlite3.OperationalError as problem:
                locked = "locked" in str(problem)
    finally:
        connection.close()
    return answer(locked=locked)
