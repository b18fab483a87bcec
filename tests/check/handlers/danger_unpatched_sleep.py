"""A C-level block in every invocation: the unpatched time.sleep (as a C driver waits)."""

from gevent.monkey import get_original

blocking_sleep = get_original("time", "sleep")


def handler(event, context):
    blocking_sleep(0.2)  # SITE
    return {"ok": True}
