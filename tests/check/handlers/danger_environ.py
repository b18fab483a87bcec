"""The tenant passed through os.environ: one process, one environment for all invocations."""

import os
import time


def handler(event, context):
    os.environ["TENANT_ID"] = event["tenant"]  # SITE
    time.sleep(0.2)
    return {"tenant": os.environ["TENANT_ID"]}
