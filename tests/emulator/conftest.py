"""Fixtures for the emulator's own tests: the emulator as a subprocess (through the public
api.Emulator) and a tiny fake runtime made of threads long-polling with http.client."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from lmi_gevent.emulator.api import Emulator

RUNTIME = "/2018-06-01/runtime"


@dataclass
class Delivered:
    """One invocation as the fake runtime received it from /next."""

    body: bytes
    headers: dict[str, str]  # lower-cased names

    @property
    def request_id(self) -> str:
        return self.headers["lambda-runtime-aws-request-id"]

    @property
    def invocation_id(self) -> str:
        return self.headers["lambda-runtime-invocation-id"]


@dataclass
class Answer:
    kind: str = "response"  # or "error"
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)


def echo(inv: Delivered) -> Answer:
    return Answer("response", inv.body, {"Content-Type": "application/json"})


class RuntimeConnection:
    """A keep-alive connection to the Runtime API, speaking it by hand."""

    def __init__(self, runtime_api: str, timeout: float = 30.0) -> None:
        host, _, port = runtime_api.rpartition(":")
        self.http = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def next(self) -> Delivered:
        self.http.request("GET", f"{RUNTIME}/invocation/next")
        response = self.http.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body)
        return Delivered(body, {k.lower(): v for k, v in response.getheaders()})

    def start_next(self) -> None:
        """Send GET /next without waiting for the answer (an open poll)."""
        self.http.request("GET", f"{RUNTIME}/invocation/next")

    def finish_next(self) -> Delivered:
        response = self.http.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body)
        return Delivered(body, {k.lower(): v for k, v in response.getheaders()})

    def post(self, path: str, body: bytes = b"{}", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        self.http.request("POST", f"{RUNTIME}/{path}", body=body, headers=headers or {})
        response = self.http.getresponse()
        return response.status, response.read()

    def answer(self, inv: Delivered, kind: str = "response", body: bytes = b"{}",
               headers: dict[str, str] | None = None, echo_id: bool = True) -> tuple[int, bytes]:
        sent = {"Content-Type": "application/json"}
        if echo_id:
            sent["Lambda-Runtime-Invocation-Id"] = inv.invocation_id
        sent.update(headers or {})
        return self.post(f"invocation/{inv.request_id}/{kind}", body, sent)

    def get_status(self, path: str) -> int:
        self.http.request("GET", path)
        response = self.http.getresponse()
        response.read()
        return response.status

    def hang_up(self) -> None:
        """Close the socket the way a dying process does (close, no shutdown first)."""
        self.http.close()

    def shut_down(self) -> None:
        """shutdown() + close(): also wakes a thread blocked reading this connection."""
        if self.http.sock is not None:
            try:
                self.http.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.http.close()


class FakeRuntime:
    """``slots`` threads, each looping /next -> handler -> /response or /error."""

    def __init__(self, emu: Emulator, slots: int = 1, handler: Callable[[Delivered], Answer] = echo) -> None:
        self.emu = emu
        self.handler = handler
        self.received: list[Delivered] = []
        self._stopping = threading.Event()
        self._connections = [RuntimeConnection(emu.runtime_api) for _ in range(slots)]
        self._threads = [threading.Thread(target=self._serve, args=(c,), daemon=True) for c in self._connections]

    def start(self) -> FakeRuntime:
        for thread in self._threads:
            thread.start()
        return self

    def _serve(self, conn: RuntimeConnection) -> None:
        while not self._stopping.is_set():
            try:
                inv = conn.next()
            except (OSError, http.client.HTTPException, AssertionError):
                return
            self.received.append(inv)
            answer = self.handler(inv)
            try:
                conn.answer(inv, answer.kind, answer.body, answer.headers)
            except (OSError, http.client.HTTPException):
                return

    def stop(self) -> None:
        self._stopping.set()
        for conn in self._connections:
            conn.shut_down()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def make(**kwargs: object) -> Emulator:
        emu = Emulator(**kwargs)  # type: ignore[arg-type]
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def emu(emulator_factory: Callable[..., Emulator]) -> Emulator:
    return emulator_factory(concurrency=4, timeout=10)


@pytest.fixture
def fake_runtimes() -> Iterator[Callable[..., FakeRuntime]]:
    started: list[FakeRuntime] = []

    def make(emu: Emulator, slots: int = 1, handler: Callable[[Delivered], Answer] = echo) -> FakeRuntime:
        runtime = FakeRuntime(emu, slots, handler).start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        runtime.stop()


@pytest.fixture
def runtime_conn(emu: Emulator) -> Iterator[RuntimeConnection]:
    conn = RuntimeConnection(emu.runtime_api)
    yield conn
    conn.hang_up()


@pytest.fixture
def background() -> Iterator[Callable[..., Future[object]]]:
    """Run a blocking call (usually an invoke) in a thread; returns its Future."""
    pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="test-bg")

    def submit(fn: Callable[..., object], *args: object, **kwargs: object) -> Future[object]:
        return pool.submit(fn, *args, **kwargs)

    yield submit
    pool.shutdown(wait=False, cancel_futures=True)
