"""gRPC: grpcio's C core waits in its own threads, so its calls block the hub unless gRPC runs
in its gevent mode, which lmi-gevent switches on when the handler imports grpc."""

from __future__ import annotations

import textwrap
import threading
import time
from concurrent import futures
from typing import Any, Iterator

import pytest

from tests.support import run_python

from .conftest import WAIT_SECONDS, DriverRun, assert_overlap, require_module
from .matrix import Row

pytestmark = [pytest.mark.timeout(60)]


class SlowGrpcServer:
    """A gRPC server (threads of its own, in the test process) whose one method waits for
    the requested seconds; it counts the calls inside that wait at once."""

    def __init__(self) -> None:
        import grpc

        self.peak = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        method = grpc.unary_unary_rpc_method_handler(self._wait)
        self.server = grpc.server(futures.ThreadPoolExecutor(16))
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("matrix.Slow", {"Wait": method}),))
        self.target = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"

    def _wait(self, request: bytes, context: Any) -> bytes:
        with self._lock:
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
        try:
            time.sleep(float(request.decode()))
        finally:
            with self._lock:
                self._in_flight -= 1
        return b"waited"


@pytest.fixture
def grpc_server() -> Iterator[SlowGrpcServer]:
    require_module("grpc", "install the test extra: pip install -e '.[test]'")
    server = SlowGrpcServer()
    server.server.start()
    yield server
    server.server.stop(grace=None)


@pytest.mark.matrix(library="grpcio", package="grpcio", server="a local gRPC server",
                    wait=f"unary call, server waits {WAIT_SECONDS:g}s", expected=True,
                    note="lmi-gevent calls `grpc.experimental.gevent.init_gevent()` when grpc is "
                         "imported (LMI_GEVENT_GRPC_GEVENT); channel made at init")
def test_grpc_calls_overlap(driver_run: DriverRun, grpc_server: SlowGrpcServer,
                            matrix_row: Row) -> None:
    driver_run.start("app_grpc.handler", env={"GRPC_TARGET": grpc_server.target})
    seen = driver_run.invoke_together({"seconds": WAIT_SECONDS})
    assert all(answer["reply"] == "waited" for answer in seen.answers)
    assert_overlap(matrix_row, seen, server_overlap=grpc_server.peak)


@pytest.mark.matrix(library="grpcio, gevent mode off", package="grpcio",
                    server="a local gRPC server",
                    wait=f"unary call, server waits {WAIT_SECONDS:g}s", expected=False,
                    note="LMI_GEVENT_GRPC_GEVENT=0: each call blocks every invocation (the "
                         "stall detector names it)")
def test_grpc_without_gevent_mode_blocks(driver_run: DriverRun, grpc_server: SlowGrpcServer,
                                         matrix_row: Row) -> None:
    driver_run.start("app_grpc.handler", env={"GRPC_TARGET": grpc_server.target,
                                              "LMI_GEVENT_GRPC_GEVENT": "0"})
    seen = driver_run.invoke_together({"seconds": WAIT_SECONDS})
    assert_overlap(matrix_row, seen, server_overlap=grpc_server.peak)


def test_install_does_not_import_grpc_and_switches_it_on_at_import() -> None:
    require_module("grpc", "install the test extra: pip install -e '.[test]'")
    code = textwrap.dedent("""
        from gevent import monkey; monkey.patch_all()
        import json, sys
        from lmi_gevent.integrations import grpc as cooperation
        cooperation.install()
        before = "grpc" in sys.modules
        import grpc
        from grpc._cython import cygrpc
        print(json.dumps({"imported_by_install": before, "gevent_mode": cygrpc.g_gevent_activated}))
    """)
    assert run_python(code) == {"imported_by_install": False, "gevent_mode": True}
