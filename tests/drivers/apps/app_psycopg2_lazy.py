"""psycopg2, unmodified, imported lazily inside the handler (after the runtime started)."""

from __future__ import annotations

import os
import sys

from overlap_meter import answer, waiting

IMPORTED_AT_INIT = "psycopg2" in sys.modules


def handler(event, context):
    import psycopg2
    import psycopg2.extensions

    connection = psycopg2.connect(os.environ["MATRIX_POSTGRES_DSN"])
    try:
        with connection.cursor() as cursor, waiting():
            cursor.execute("SELECT pg_sleep(%s)", (event["seconds"],))
    finally:
        connection.close()
    return answer(imported_at_init=IMPORTED_AT_INIT,
                  wait_callback=psycopg2.extensions.get_wait_callback() is not None)
