"""requests and urllib3 over HTTP and HTTPS: pure Python on patched sockets and ssl, so N
invocations wait on the server together."""

from __future__ import annotations

import pytest

from .conftest import WAIT_SECONDS, DriverRun, LocalCA, LocalServer, assert_overlap
from .matrix import Row

pytestmark = [pytest.mark.timeout(60)]

NOTE = "pure Python on gevent's patched socket/ssl"


def run(driver_run: DriverRun, handler: str, server: LocalServer, env: dict[str, str],
        row: Row) -> None:
    driver_run.start(handler, env)
    seen = driver_run.invoke_together({"url": f"{server.url}/wait"})
    assert all(answer["body"] == {"ok": True} for answer in seen.answers)
    assert_overlap(row, seen, server_overlap=server.peak)


@pytest.mark.matrix(library="requests", package="requests", server="local HTTP server",
                    wait=f"GET (answers after {WAIT_SECONDS:g} s)", expected=True, note=NOTE)
def test_requests_over_http_overlaps(driver_run: DriverRun, http_server: LocalServer,
                                     matrix_row: Row) -> None:
    run(driver_run, "app_http.with_requests", http_server, {}, matrix_row)


@pytest.mark.matrix(library="requests", package="requests",
                    server="local HTTPS server (test CA)",
                    wait=f"GET (answers after {WAIT_SECONDS:g} s)", expected=True,
                    note=NOTE + "; CA from REQUESTS_CA_BUNDLE")
def test_requests_over_https_overlaps(driver_run: DriverRun, https_server: LocalServer,
                                      test_ca: LocalCA, matrix_row: Row) -> None:
    run(driver_run, "app_http.with_requests", https_server,
        {"REQUESTS_CA_BUNDLE": str(test_ca.pem)}, matrix_row)


@pytest.mark.matrix(library="urllib3", package="urllib3", server="local HTTP server",
                    wait=f"GET (answers after {WAIT_SECONDS:g} s)", expected=True,
                    note=NOTE + "; one PoolManager made at init")
def test_urllib3_over_http_overlaps(driver_run: DriverRun, http_server: LocalServer,
                                    matrix_row: Row) -> None:
    run(driver_run, "app_http.with_urllib3", http_server, {}, matrix_row)


@pytest.mark.matrix(library="urllib3", package="urllib3",
                    server="local HTTPS server (test CA)",
                    wait=f"GET (answers after {WAIT_SECONDS:g} s)", expected=True,
                    note=NOTE + "; CA from SSL_CERT_FILE")
def test_urllib3_over_https_overlaps(driver_run: DriverRun, https_server: LocalServer,
                                     test_ca: LocalCA, matrix_row: Row) -> None:
    run(driver_run, "app_http.with_urllib3", https_server,
        {"SSL_CERT_FILE": str(test_ca.pem)}, matrix_row)
