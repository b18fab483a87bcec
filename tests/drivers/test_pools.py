"""Connection pools of clients shared by every invocation (botocore, requests, urllib3): with
lmi-gevent's sizing, N invocations at once open N connections and reuse them, as the official
client's N processes do; at the libraries' default sizes they open more and discard them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lmi_gevent.emulator.api import Emulator
from tests.support import OFFICIAL_RUNTIME, RUNTIME

from .conftest import APPS, LocalServer

pytestmark = [pytest.mark.timeout(120)]

SLOTS = 12  # past botocore's and requests' default of 10 (urllib3: 1 per host)
ROUNDS = 2
LIBRARIES = {"boto3": "Boto3", "requests": "python-requests", "urllib3": "python-urllib3"}
POOL_FULL = "Connection pool is full, discarding connection"


def serve_rounds(server: LocalServer, tmp_path: Path, runtime: list[str],
                 env: dict[str, str] | None = None) -> dict[str, Any]:
    """ROUNDS rounds of SLOTS invocations at once per library; connections opened by each."""
    full_env = {"AWS_LAMBDA_MAX_CONCURRENCY": str(SLOTS), "POOLS_ENDPOINT": server.url,
                # One process serving all the slots, the worst case; pools are per process, so
                # the counts below are one process's (awslambdaric ignores this variable).
                "LMI_GEVENT_WORKERS": "1",
                "NO_PROXY": "*", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": str(tmp_path / "none"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                **(env or {})}
    with Emulator(concurrency=SLOTS, timeout=30) as emulator:
        process = emulator.start_runtime(runtime + ["app_pools.handler"], env=full_env, cwd=APPS)
        emulator.wait_for(lambda stats: stats["open_polls"] == SLOTS, timeout=60)
        for library in LIBRARIES:
            for _ in range(ROUNDS):
                results = emulator.invoke_many([{"library": library}] * SLOTS, parallel=SLOTS,
                                               timeout=30)
                assert all(r.status == 200 and not r.function_error for r in results), \
                    [r.body[:300] for r in results] + [process.output()[-3000:]]
        process.stop(grace=5.0)
        output = process.output()
    return {"opened": {library: server.connections[agent] for library, agent in LIBRARIES.items()},
            "pool_full": output.count(POOL_FULL), "peak": server.peak}


def test_shared_clients_open_one_connection_per_slot_like_the_official_client(
        http_server: LocalServer, tmp_path: Path) -> None:
    ours = serve_rounds(http_server, tmp_path, RUNTIME)
    assert ours["peak"] == SLOTS  # the SLOTS invocations of a round were at the server at once
    assert ours == {"opened": {library: SLOTS for library in LIBRARIES}, "pool_full": 0,
                    "peak": SLOTS}


def test_official_client_opens_one_connection_per_process(http_server: LocalServer,
                                                          tmp_path: Path) -> None:
    official = serve_rounds(http_server, tmp_path, OFFICIAL_RUNTIME)
    assert official == {"opened": {library: SLOTS for library in LIBRARIES}, "pool_full": 0,
                        "peak": SLOTS}


def test_default_pool_sizes_open_and_discard_connections(http_server: LocalServer,
                                                         tmp_path: Path) -> None:
    unsized = serve_rounds(http_server, tmp_path, RUNTIME, {"LMI_GEVENT_POOL_SIZING": "off"})
    assert unsized["peak"] == SLOTS
    # Per round, the invocations past the pool open a connection and discard it after.
    assert unsized["opened"] == {"boto3": 10 + (SLOTS - 10) * ROUNDS,
                                 "requests": 10 + (SLOTS - 10) * ROUNDS,
                                 "urllib3": 1 + (SLOTS - 1) * ROUNDS}, unsized
    assert unsized["pool_full"] == ((SLOTS - 10) * 2 + (SLOTS - 1)) * ROUNDS




def test_pools_are_sized_in_each_worker_process(http_server: LocalServer,
                                                tmp_path: Path) -> None:
    # 2 workers of 6 slots: urllib3's PoolManager (1 per host by default) is sized in each
    # (unsized, the two would open 2 x (1 + 5 x ROUNDS) = 22 connections)
    ours = serve_rounds(http_server, tmp_path, RUNTIME, {"LMI_GEVENT_WORKERS": "2"})
    assert ours == {"opened": {library: SLOTS for library in LIBRARIES}, "pool_full": 0,
                    "peak": SLOTS}
