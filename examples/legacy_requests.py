"""A legacy blocking handler: plain `requests`, no async, no gevent imports. On lmi-gevent in
concurrent mode each invocation's HTTP wait yields to the others, so N run at once.

Run: lmi-gevent local examples/legacy_requests.handler --concurrency 16 --env TARGET_URL=http://127.0.0.1:9000/
"""

import os

import requests

# A module-level Session is fine: under gevent its pool hands each greenlet its own connection.
session = requests.Session()


def handler(event, context):
    url = event.get("url") if isinstance(event, dict) else None
    url = url or os.environ.get("TARGET_URL", "http://127.0.0.1:9000/")
    response = session.get(url, timeout=context.get_remaining_time_in_millis() / 1000)
    return {"status": response.status_code, "bytes": len(response.content)}
