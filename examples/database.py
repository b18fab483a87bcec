"""A PostgreSQL handler with psycopg 3 (pure-Python waits, so it cooperates with gevent).

Run: lmi-gevent local examples/database.handler --concurrency 8 \
         --env DATABASE_URL="host=127.0.0.1 dbname=test user=postgres"
then invoke with {"sleep": 0.5}: eight invocations wait on the server at once.

One connection per invocation keeps the example obviously correct. A single module-level
connection would be shared by every concurrent invocation and serialise them: use a pool
(psycopg_pool.ConnectionPool) sized to AWS_LAMBDA_MAX_CONCURRENCY instead.
"""

import os

import psycopg

DATABASE_URL = os.environ.get("DATABASE_URL", "host=127.0.0.1 dbname=test user=postgres")


def handler(event, context):
    seconds = float(event.get("sleep", 0)) if isinstance(event, dict) else 0.0
    with psycopg.connect(DATABASE_URL, connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_sleep(%s), pg_backend_pid(), now()::text", (seconds,)).fetchone()
    return {"backend_pid": row[1], "server_time": row[2]}
