"""One call per invocation through a client made once at module level and shared by every
invocation: boto3 (DynamoDB GetItem), a requests.Session, a urllib3.PoolManager. Each client
is left at its default pool size, as most functions leave it."""

from __future__ import annotations

import os

import boto3
import requests
import urllib3

URL = os.environ["POOLS_ENDPOINT"]
DYNAMODB = boto3.client("dynamodb", endpoint_url=URL, region_name="us-east-1")
SESSION = requests.Session()
POOL = urllib3.PoolManager()


def handler(event, context):
    library = event["library"]
    if library == "boto3":
        DYNAMODB.get_item(TableName="pools", Key={"id": {"S": "1"}})
    elif library == "requests":
        SESSION.get(f"{URL}/requests").raise_for_status()
    else:
        assert POOL.request("GET", f"{URL}/urllib3").status == 200
    return {"library": library}
