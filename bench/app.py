"""An app-sized handler module: what a typical function imports and builds at init.

``requests`` and ``boto3`` with one client made at import, as most functions do (no network
until it is used). Every process serving the function pays for these imports: awslambdaric
once per slot, lmi-gevent once per worker process. The invocations are bench.handlers'.
"""

from __future__ import annotations

from typing import Any

import boto3
import requests  # noqa: F401 - imported for its cost, as an app's SDKs are

from .handlers import handler as serve

S3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="bench",
                  aws_secret_access_key="bench")


def handler(event: dict[str, Any], context: Any) -> Any:
    return serve(event, context)
