"""Reports whether psycopg2 has a wait callback (needs no database)."""

from __future__ import annotations

import psycopg2.extensions


def handler(event, context):
    callback = psycopg2.extensions.get_wait_callback()
    return {"wait_callback": callback is not None,
            "ours": bool(getattr(callback, "lmi_gevent", False))}
