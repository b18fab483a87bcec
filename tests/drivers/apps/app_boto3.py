"""boto3, unmodified: DynamoDB GetItem against a local endpoint that answers after a delay."""

from __future__ import annotations

import os

import boto3
from overlap_meter import answer, waiting

# A module-level client made at init and shared by every invocation, the usual pattern.
DYNAMODB = boto3.client("dynamodb", endpoint_url=os.environ["MATRIX_DYNAMODB_ENDPOINT"],
                        region_name="us-east-1")


def handler(event, context):
    with waiting():
        item = DYNAMODB.get_item(TableName="matrix", Key={"id": {"S": "1"}})["Item"]
    return answer(item=item)
