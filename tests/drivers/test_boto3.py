"""boto3 against a local DynamoDB-shaped endpoint: botocore sends through urllib3, so it
cooperates like urllib3 does. No AWS network is used."""

from __future__ import annotations

import pytest

from .conftest import WAIT_SECONDS, DriverRun, LocalServer, assert_overlap
from .matrix import Row

pytestmark = [pytest.mark.timeout(60)]


@pytest.mark.matrix(library="boto3", package="boto3",
                    server="local DynamoDB-like HTTP endpoint",
                    wait=f"dynamodb.get_item (answers after {WAIT_SECONDS:g} s)", expected=True,
                    note="botocore sends through urllib3; one client made at init")
def test_boto3_client_calls_overlap(driver_run: DriverRun, http_server: LocalServer,
                                    matrix_row: Row) -> None:
    driver_run.start("app_boto3.handler", {"MATRIX_DYNAMODB_ENDPOINT": http_server.url})
    seen = driver_run.invoke_together({})
    assert all(answer["item"] == {"id": {"S": "1"}} for answer in seen.answers)
    assert_overlap(matrix_row, seen, server_overlap=http_server.peak)
