"""Redis: redis-py is pure Python on sockets, so N BLPOPs wait on the server together."""

from __future__ import annotations

from typing import Callable

import pytest

from .conftest import (
    WAIT_SECONDS,
    DriverRun,
    Sampler,
    assert_overlap,
    require_module,
    token,
)
from .matrix import Row

pytestmark = [pytest.mark.timeout(60), pytest.mark.services]


def blocked_clients(address: tuple[str, int]) -> Callable[[], int]:
    """Clients blocked in BLPOP and the like, as the server counts them."""
    import redis

    client = redis.Redis(host=address[0], port=address[1])
    return lambda: int(client.info("clients")["blocked_clients"])


@pytest.mark.matrix(library="redis-py", package="redis", server="Redis",
                    wait=f"BLPOP empty-key {WAIT_SECONDS:g}", expected=True,
                    note="pure Python on gevent's patched socket; one client made at init")
def test_redis_blocking_pops_overlap(driver_run: DriverRun, redis_server: tuple[str, int],
                                     matrix_row: Row) -> None:
    require_module("redis", "install the test extra: pip install -e '.[test]'")
    driver_run.start("app_redis.handler")
    with Sampler(blocked_clients(redis_server)) as server:
        seen = driver_run.invoke_together({"seconds": WAIT_SECONDS, "token": token()})
    assert all(answer["popped"] is None for answer in seen.answers)  # each waited it out
    assert_overlap(matrix_row, seen, server_overlap=server.peak)
