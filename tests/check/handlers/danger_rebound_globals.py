"""Per-invocation state in module globals, rebound to a small int and a short string: the
invocations beside each other answer with each other's page and user."""

import time

current_page = 0
current_user = None


def handler(event, context):
    global current_page, current_user
    current_page = int(event["page"])  # SITE: current_page
    current_user = event["user"]  # SITE: current_user
    time.sleep(0.2)
    return {"page": current_page, "user": current_user}
