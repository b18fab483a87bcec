"""asyncio.run() in a sync handler: each invocation's event loop waits through gevent, so N
invocations wait on the server together (lmi-gevent keeps one running loop per greenlet)."""

from __future__ import annotations

import pytest

from .conftest import WAIT_SECONDS, DriverRun, LocalCA, LocalServer, assert_overlap
from .matrix import Row

pytestmark = [pytest.mark.timeout(60)]


@pytest.mark.matrix(library="asyncio (asyncio.run in the handler)", package="",
                    server="local HTTPS server (test CA)",
                    wait=f"asyncio.open_connection + GET (answers after {WAIT_SECONDS:g} s)",
                    expected=True,
                    note="the loop's selector is gevent's; lmi-gevent keeps the running loop "
                         "per greenlet, so concurrent asyncio.run() calls do not collide")
def test_asyncio_run_in_a_handler_overlaps(driver_run: DriverRun, https_server: LocalServer,
                                           test_ca: LocalCA, matrix_row: Row) -> None:
    driver_run.start("app_asyncio.handler", {"SSL_CERT_FILE": str(test_ca.pem)})
    seen = driver_run.invoke_together({"url": f"{https_server.url}/wait"})
    assert all(answer["body"] == {"ok": True} for answer in seen.answers)
    assert_overlap(matrix_row, seen, server_overlap=https_server.peak)
