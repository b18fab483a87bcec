"""A module-level log of formatted lines, one per invocation: no object of the event is in
it (each line is a new string), but it grows with every invocation and every invocation
reads all of it."""

import time

AUDIT = []


def handler(event, context):
    AUDIT.append(f"{event['user']} viewed page {event['page']}")
    time.sleep(0.2)
    return {"seen_by": len(AUDIT)}
