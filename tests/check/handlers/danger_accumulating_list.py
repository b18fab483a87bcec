"""A module-level list that keeps every invocation's order: it grows without bound, and a
summary built from it mixes the invocations running beside each other."""

import time

PROCESSED = []


def handler(event, context):
    PROCESSED.append(event["order"])
    time.sleep(0.2)
    return {"batch": list(PROCESSED)}
