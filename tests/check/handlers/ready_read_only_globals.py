"""Settings and tables read at import and only read by invocations."""

import os
import time

TABLE = os.environ.get("TABLE_NAME", "orders")
LIMITS = {"page_size": 25, "max_pages": 4}
PAGE_SIZE = LIMITS["page_size"]


def handler(event, context):
    page = int(event["page"])
    time.sleep(0.2)
    return {"table": TABLE, "first": page * PAGE_SIZE, "max": LIMITS["max_pages"]}
