"""X-Ray's patch_all() imports sqlite3 to patch it; the handler never opens a database."""

import time

from aws_xray_sdk.core import patch_all

patch_all()


def handler(event, context):
    time.sleep(0.2)
    return {"ok": True}
