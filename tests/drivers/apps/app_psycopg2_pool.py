"""psycopg2, unmodified: imported at init, with a pool of N connections made at init."""

from __future__ import annotations

import os

import psycopg2.extensions
import psycopg2.pool
from overlap_meter import answer, waiting

SIZE = int(os.environ["AWS_LAMBDA_MAX_CONCURRENCY"])
POOL = psycopg2.pool.ThreadedConnectionPool(SIZE, SIZE, os.environ["MATRIX_POSTGRES_DSN"])


def handler(event, context):
    connection = POOL.getconn()
    try:
        with connection.cursor() as cursor, waiting():
            cursor.execute("SELECT pg_sleep(%s)", (event["seconds"],))
        connection.rollback()
    finally:
        POOL.putconn(connection)
    return answer(wait_callback=psycopg2.extensions.get_wait_callback() is not None)
