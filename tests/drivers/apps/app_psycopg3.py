"""psycopg 3, unmodified: one connection per invocation, SELECT pg_sleep()."""

from __future__ import annotations

import os

import psycopg
from overlap_meter import answer, waiting


def handler(event, context):
    with psycopg.connect(os.environ["MATRIX_POSTGRES_DSN"]) as connection, waiting():
        connection.execute("SELECT pg_sleep(%s)", (event["seconds"],))
    return answer()
