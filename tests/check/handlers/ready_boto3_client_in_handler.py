"""A client made inside the handler (as many AWS samples do): botocore loads its models on
first use, a one-time stall; later invocations make clients from the cached models."""

import os
import time

import boto3


def handler(event, context):
    sqs = boto3.client("sqs", region_name="us-east-1",  # SITE
                       endpoint_url=os.environ["STUB_ENDPOINT"])
    time.sleep(0.2)
    return {"ok": True, "endpoint": sqs.meta.endpoint_url}
