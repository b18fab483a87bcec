"""requests and urllib3, unmodified: a GET to a local server that answers after a delay.

TLS trust comes from the environment (REQUESTS_CA_BUNDLE for requests, SSL_CERT_FILE for
urllib3's default context), as a deployed function would configure it.
"""

from __future__ import annotations

import requests
import urllib3
from overlap_meter import answer, waiting

POOL = urllib3.PoolManager()  # made at init, shared by every invocation


def with_requests(event, context):
    with waiting():
        response = requests.get(event["url"], timeout=10)
    response.raise_for_status()
    return answer(body=response.json())


def with_urllib3(event, context):
    with waiting():
        response = POOL.request("GET", event["url"], timeout=10.0)
    assert response.status == 200, response.status
    return answer(body=response.json())
