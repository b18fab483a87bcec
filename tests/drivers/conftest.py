"""Fixtures for the driver matrix: real servers, the real runtime behind the emulator, and the
counts that show whether N invocations waited on a server at the same time.

How a matrix test works: the runtime serves the handler in ``apps/`` with
AWS_LAMBDA_MAX_CONCURRENCY=N; N invocations are offered at once; each one waits on a server
for WAIT_SECONDS inside ``overlap_meter.waiting()``, which counts how many invocations are in
that wait together. A driver that yields to gevent shows N; one that blocks in C shows 1.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from lmi_gevent.emulator.api import Emulator, InvokeResult, RuntimeProcess

from . import matrix

N = 4
WAIT_SECONDS = 0.5
APPS = Path(__file__).parent / "apps"

POSTGRES = ("PostgreSQL", "127.0.0.1", 5432)
MARIADB = ("MariaDB", "127.0.0.1", 3306)
REDIS = ("Redis", "127.0.0.1", 6379)
POSTGRES_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


# --- skip on a laptop, fail in CI ---------------------------------------------------------------

def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip the test with ``reason``; under CI=true fail instead, since CI must run it."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the services and test extras must be present)",
                    pytrace=False)
    pytest.skip(reason)


def require_service(name: str, host: str, port: int) -> None:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as problem:
        missing(f"{name} is not reachable on {host}:{port} ({problem}); start it to run "
                f"this test")


def require_module(module: str, install_hint: str, *, optional: bool = False) -> None:
    """``optional`` libraries are not in the test extra: they skip even under CI."""
    try:
        __import__(module)
    except ImportError as problem:
        reason = f"{module} is not importable ({problem}); {install_hint}"
        if optional:
            pytest.skip(reason)
        missing(reason)


@pytest.fixture(scope="session")
def postgres() -> str:
    require_service(*POSTGRES)
    return POSTGRES_DSN


@pytest.fixture(scope="session")
def mariadb() -> dict[str, Any]:
    require_service(*MARIADB)
    return {"host": MARIADB[1], "port": MARIADB[2], "user": "root", "password": "",
            "database": "test"}


@pytest.fixture(scope="session")
def redis_server() -> tuple[str, int]:
    require_service(*REDIS)
    return REDIS[1], REDIS[2]


# --- the server's own view ------------------------------------------------------------------

class Sampler:
    """Polls ``probe()`` (how many of our invocations the server sees waiting) in a thread
    and keeps the highest count. Sampling can only under-count, never invent overlap."""

    def __init__(self, probe: Callable[[], int], interval: float = 0.01) -> None:
        self.probe = probe
        self.interval = interval
        self.peak = 0
        self.problem: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-view", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.probe())
            except BaseException as problem:  # noqa: BLE001
                self.problem = problem  # re-raised in the test's thread by __exit__
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.problem is not None:
            raise AssertionError(f"the server-side probe failed: {self.problem!r}")


# --- a local HTTP(S) server that answers after a delay --------------------------------------

class _SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _SlowServer

    def do_GET(self) -> None:
        self._answer(b'{"ok": true}', "application/json")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("X-Amz-Target", "").startswith("DynamoDB_"):
            # Enough of DynamoDB GetItem for botocore to parse a real answer.
            self._answer(b'{"Item": {"id": {"S": "1"}}}', "application/x-amz-json-1.0")
        else:
            self._answer(b'{"ok": true}', "application/json")

    def _answer(self, body: bytes, content_type: str) -> None:
        if not getattr(self, "counted", False):  # one handler object per connection
            self.counted = True
            self.server.opened(self.headers.get("User-Agent", ""))
        with self.server.counting():
            time.sleep(self.server.delay)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _SlowServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay: float, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        self.delay = delay
        self.tls = tls
        self.peak = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        # connections opened, by the client's product name (User-Agent up to its first "/")
        self.connections: collections.Counter[str] = collections.Counter()

    def opened(self, user_agent: str) -> None:
        with self._lock:
            self.connections[user_agent.split("/", 1)[0]] += 1

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the request's own thread, so that one slow
        # handshake cannot hold up the others (wrapping the listening socket would).
        if self.tls is not None:
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Count the requests inside their delay at once (the server's exact view)."""
        with self._lock:
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1


@dataclass
class LocalServer:
    url: str
    server: _SlowServer

    @property
    def peak(self) -> int:
        return self.server.peak

    @property
    def connections(self) -> collections.Counter[str]:
        return self.server.connections


def _serve(tls: ssl.SSLContext | None) -> Iterator[LocalServer]:
    server = _SlowServer(WAIT_SECONDS, tls)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="slow-http", daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    try:
        yield LocalServer(f"{scheme}://127.0.0.1:{server.server_address[1]}", server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class LocalCA:
    pem: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    require_module("trustme", "install the test extra: pip install -e '.[test]'")
    import trustme

    ca = trustme.CA()
    pem = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return LocalCA(pem, context)


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    yield from _serve(None)


@pytest.fixture
def https_server(test_ca: LocalCA) -> Iterator[LocalServer]:
    yield from _serve(test_ca.server_context)


# --- the runtime under test ----------------------------------------------------------------

@dataclass
class Overlap:
    """What one run of N overlapping invocations showed."""

    concurrency: int
    offered: int          # max invocations in flight at the Runtime API
    overlap: int          # max invocations inside the wait at once (the handler's count)
    answers: list[dict[str, Any]] = field(default_factory=list)


class DriverRun:
    """Start the runtime on a handler in ``apps/`` and offer it N invocations at once."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.emulator: Emulator | None = None
        self.runtime: RuntimeProcess | None = None
        self.concurrency = N

    def start(self, handler: str, env: dict[str, str] | None = None,
              concurrency: int = N) -> None:
        self.concurrency = concurrency
        self.emulator = Emulator(concurrency=concurrency, timeout=30)
        full_env = {"AWS_LAMBDA_MAX_CONCURRENCY": str(concurrency), "NO_PROXY": "*",
                    # Cooperation is a property of one process: worker processes on other
                    # cores would overlap even a library that blocks its event loop.
                    "LMI_GEVENT_WORKERS": "1",
                    # No real AWS account, profile or metadata service is ever consulted.
                    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_CONFIG_FILE": str(self.tmp_path / "no-aws-config"),
                    "AWS_SHARED_CREDENTIALS_FILE": str(self.tmp_path / "no-aws-credentials"),
                    "AWS_EC2_METADATA_DISABLED": "true"}
        full_env.update(env or {})
        self.runtime = self.emulator.start_runtime(
            [sys.executable, "-m", "lmi_gevent", handler], env=full_env, cwd=APPS)
        try:
            self.emulator.wait_for(lambda stats: stats["open_polls"] == concurrency, timeout=20)
        except TimeoutError:
            raise AssertionError(f"the runtime never opened {concurrency} polls; its output:\n"
                                 f"{self.runtime.output()}") from None

    def invoke_together(self, event: dict[str, Any]) -> Overlap:
        """Offer one invocation of ``event`` per slot, all at once; every one must succeed.

        One invocation runs alone first, so that first-call work (lazy imports, pools,
        botocore's models) cannot stagger the measured ones.
        """
        assert self.emulator is not None and self.runtime is not None, "call start() first"
        count = self.concurrency
        self._answer(self.emulator.invoke(event, timeout=30))
        # Every slot must be polling again, or a blocked hub could delay the last offer.
        self.emulator.wait_for(lambda stats: stats["open_polls"] == count, timeout=10)
        self.emulator.reset_stats()
        results = self.emulator.invoke_many([event] * count, parallel=count, timeout=30)
        answers = [self._answer(result) for result in results]
        stats = self.emulator.stats()
        return Overlap(concurrency=count, offered=stats["max_in_flight"],
                       overlap=max(answer["peak"] for answer in answers), answers=answers)

    def _answer(self, result: InvokeResult) -> dict[str, Any]:
        assert self.runtime is not None
        if result.status != 200 or result.function_error:
            raise AssertionError(f"invocation failed ({result.status}, {result.function_error}): "
                                 f"{result.body[:2000]!r}\nruntime output:\n"
                                 f"{self.runtime.output()[-4000:]}")
        return result.json()

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()


@pytest.fixture
def driver_run(tmp_path: Path) -> Iterator[DriverRun]:
    run = DriverRun(tmp_path)
    yield run
    run.stop()


def token() -> str:
    """A marker put in each statement so the server-side probe counts only ours."""
    return f"lmi-gevent-matrix-{uuid.uuid4().hex}"


# --- the matrix: rows from markers and fixtures, outcomes from reports ------------------------

_ROWS = pytest.StashKey[dict[str, matrix.Row]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "matrix(library, package, server, wait, expected, note): a row of the "
                   "driver compatibility matrix (tests/drivers/matrix.py)")
    config.stash[_ROWS] = {}


def _row_for(item: pytest.Item) -> matrix.Row | None:
    marker = item.get_closest_marker("matrix")
    if marker is None:
        return None
    rows = item.config.stash[_ROWS]
    if item.nodeid not in rows:
        rows[item.nodeid] = matrix.Row(**marker.kwargs)
    return rows[item.nodeid]


@pytest.fixture
def matrix_row(request: pytest.FixtureRequest) -> matrix.Row:
    """The test's matrix row, to record what it observed before asserting on it."""
    row = _row_for(request.node)
    assert row is not None, "a test using matrix_row needs @pytest.mark.matrix(...)"
    return row


def record(row: matrix.Row, seen: Overlap, server_overlap: int | None = None) -> None:
    row.concurrency = seen.concurrency
    row.offered = seen.offered
    row.overlap = seen.overlap
    row.server_overlap = server_overlap


def assert_overlap(row: matrix.Row, seen: Overlap, server_overlap: int | None = None) -> None:
    """Record the counts, then check them against what the row expects."""
    record(row, seen, server_overlap)
    # The platform side must have offered all N at once, or "1" would prove nothing.
    assert seen.offered == seen.concurrency, f"only {seen.offered} invocations were in flight"
    expected = seen.concurrency if row.expected else 1
    assert seen.overlap == expected, (
        f"{row.library}: {seen.overlap} of {seen.concurrency} invocations waited at once, "
        f"expected {expected}")
    if server_overlap is not None:
        assert server_overlap == expected, (
            f"{row.library}: the server saw {server_overlap} waiting at once, expected {expected}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    row = _row_for(item)
    if row is None:
        return
    report = outcome.get_result()
    if report.skipped and report.when in ("setup", "call"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        row.outcome = f"skipped: {reason.removeprefix('Skipped: ')}"
    elif report.failed:
        row.outcome = "**FAILED**"
    elif report.when == "call" and report.passed:
        row.outcome = "passed"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get(matrix.WRITE_ENV)
    rows = session.config.stash.get(_ROWS, {})
    if not target or not rows:
        return
    order = {item.nodeid: index for index, item in enumerate(session.items)}
    ordered = [rows[nodeid] for nodeid in sorted(rows, key=lambda n: order.get(n, len(order)))]
    path = Path(target)
    if not path.is_absolute():
        path = session.config.rootpath / path
    matrix.write(path, ordered)
