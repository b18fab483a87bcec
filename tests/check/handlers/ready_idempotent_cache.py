"""A module-level cache of values computed from the event, keyed by it: shared on purpose,
and every invocation gets the same answer for the same key whoever filled it."""

import time

PRICES = {}


def handler(event, context):
    sku = event["sku"]
    if sku not in PRICES:
        PRICES[sku] = {"price": len(sku) * 10}
    time.sleep(0.2)
    return PRICES[sku]
