"""Drive the emulator from tests and benchmarks. Stdlib only (no gevent): it starts
``python -m lmi_gevent.emulator`` as a subprocess and talks to it over keep-alive HTTP.

    with Emulator(concurrency=4, timeout=5) as emu:
        runtime = emu.start_runtime([sys.executable, "-m", "lmi_gevent", "app.handler"],
                                    env={"AWS_LAMBDA_MAX_CONCURRENCY": "4"})
        emu.wait_for(lambda s: s["open_polls"] == 4)
        assert emu.invoke({"x": 1}).json() == {"ok": True}
        assert emu.stats()["max_in_flight"] <= 4
"""

from __future__ import annotations

import atexit
import base64
import http.client
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PLATFORM_FAULTS", "ChunkedReply", "Emulator", "EmulatorError", "InvokeResult", "RuntimeProcess",
           "open_reply"]

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
# The directory that holds the lmi_gevent package, so an uninstalled checkout works.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_START_TIMEOUT = 20.0
_RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


# The platform faults the runtime must survive without losing an answer (#12): /next failing
# or closed before it answers; a post reset before or after the platform took the answer, or
# closed right after its 202; a proxy's 503 on a post.
PLATFORM_FAULTS: tuple[dict[str, Any], ...] = (
    {"endpoint": "next", "status": 500},
    {"endpoint": "next", "close": True},
    {"endpoint": "response", "reset": True},
    {"endpoint": "response", "reset": True, "accepted": True},
    {"endpoint": "response", "close": True, "accepted": True},
    {"endpoint": "response", "status": 503},
    {"endpoint": "error", "reset": True, "accepted": True},
    {"endpoint": "error", "close": True, "accepted": True},
)


class EmulatorError(RuntimeError):
    """The emulator process failed to start or a control call was refused."""


@dataclass
class InvokeResult:
    """One Invoke API answer. ``headers`` has lower-cased names."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def function_error(self) -> str | None:
        """``X-Amz-Function-Error`` (``Unhandled``) when the function failed, else None."""
        return self.headers.get("x-amz-function-error")

    def json(self) -> Any:
        return json.loads(self.body)


class ChunkedReply:
    """An HTTP answer read as it arrives: for streamed responses, where each chunk's arrival
    matters. ``headers`` has lower-cased names (repeated ones in ``header_list``); iterate
    :meth:`chunks` for the body, then read :attr:`trailers`. Raw sockets, so nothing between
    the wire and the test buffers a chunk."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        sock.settimeout(timeout)
        self._sock = sock
        self._rfile = sock.makefile("rb", 0)
        line = self._rfile.readline(65536).decode("latin-1")
        parts = line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise EmulatorError(f"not an HTTP status line: {line!r}")
        self.status = int(parts[1])
        self.header_list = self._fields()
        self.headers = {name.lower(): value for name, value in self.header_list}
        self.trailers: dict[str, str] = {}
        self.complete = False

    def _fields(self) -> list[tuple[str, str]]:
        fields: list[tuple[str, str]] = []
        while True:
            line = self._rfile.readline(1 << 21).decode("latin-1")
            if line in ("\r\n", "\n", ""):
                return fields
            name, _, value = line.partition(":")
            fields.append((name.strip(), value.strip()))

    def chunks(self) -> Iterator[bytes]:
        """Each chunk as it arrives (a Content-Length body comes as one chunk)."""
        if "chunked" not in self.headers.get("transfer-encoding", ""):
            length = int(self.headers.get("content-length", "0"))
            data = self._read(length)
            self.complete = True
            if data:
                yield data
            return
        while True:
            size_line = self._rfile.readline(1024)
            if not size_line:
                return  # cut short: ``complete`` stays False
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                self.trailers = {name.lower(): value for name, value in self._fields()}
                self.complete = True
                return
            data = self._read(size)
            self._rfile.readline(3)
            yield data

    def _read(self, size: int) -> bytes:
        parts, left = [], size
        while left:
            part = self._rfile.read(left)
            if not part:
                break
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def body(self) -> bytes:
        return b"".join(self.chunks())

    def close(self) -> None:
        self._rfile.close()
        self._sock.close()


def open_reply(host: str, port: int, method: str, target: str, *, body: bytes = b"",
               headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
               timeout: float = 30.0) -> ChunkedReply:
    """Send one request on a fresh connection and return its answer, unread."""
    sock = socket.create_connection((host, port), timeout=timeout)
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
             f"Content-Length: {len(body)}"]
    lines.extend(f"{name}: {value}" for name, value in pairs)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    return ChunkedReply(sock, timeout)


class _Connections(threading.local):
    """One keep-alive connection per thread and per port (http.client is not thread-safe)."""

    def __init__(self) -> None:
        self.by_port: dict[int, http.client.HTTPConnection] = {}


class RuntimeProcess:
    """A runtime under test, in its own session (process group) so that everything it forks
    can be killed with it. stdout and stderr are merged and collected by a reader thread."""

    def __init__(self, argv: list[str], env: Mapping[str, str], cwd: str | os.PathLike[str] | None) -> None:
        self.argv = list(argv)
        self._popen = subprocess.Popen(
            self.argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self._chunks: list[bytes] = []
        # The reader thread keeps the pipe from filling up; output() also reads what is waiting
        # in the pipe itself, under the same lock, so it returns everything the runtime wrote
        # before the call (a log line written before an answer is there once the answer is).
        self._lock = threading.Lock()
        self._fd = self._popen.stdout.fileno()  # type: ignore[union-attr]
        os.set_blocking(self._fd, False)
        self._reader = threading.Thread(target=self._collect, name=f"runtime-{self.pid}-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def _collect(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._fd, selectors.EVENT_READ)
            open_ = True
            while open_:
                selector.select()
                with self._lock:
                    open_ = self._read_waiting()

    def _read_waiting(self) -> bool:
        """Append what the pipe holds now (lock held); False once it is closed."""
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                return False
            self._chunks.append(chunk)

    def output(self) -> str:
        """Everything the runtime printed so far (stdout and stderr, interleaved)."""
        with self._lock:
            if self._reader.is_alive():
                self._read_waiting()
            return b"".join(self._chunks).decode("utf-8", "replace")

    def wait_for_output(self, check: str | Callable[[str], bool], timeout: float = 10) -> str:
        """The output once it contains ``check`` (or ``check(output)`` is true), or as it is
        when ``timeout`` runs out or the runtime exits: for what the runtime writes after an
        event the caller can observe (output() already holds everything written before)."""
        test = (lambda text: check in text) if isinstance(check, str) else check
        deadline = time.monotonic() + timeout
        while True:
            exited = self._popen.poll() is not None
            if exited:
                self._reader.join(timeout=5)
            text = self.output()
            if test(text) or exited or time.monotonic() >= deadline:
                return text
            time.sleep(0.01)

    def send_signal(self, sig: int) -> None:
        """Signal the runtime's main process only (as Lambda's SIGTERM reaches the runtime)."""
        if self._popen.poll() is None:
            self._popen.send_signal(sig)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for exit; raises subprocess.TimeoutExpired. Returns the exit code."""
        code = self._popen.wait(timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        """SIGKILL the whole process group, including any workers it forked."""
        _kill_group(self._popen.pid)
        try:
            self.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, grace: float = 1.0) -> None:
        """SIGTERM, then SIGKILL the group after ``grace`` seconds; never leaves a child."""
        if self._popen.poll() is None:
            self.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def __repr__(self) -> str:
        return f"<RuntimeProcess pid={self.pid} returncode={self.returncode} argv={self.argv!r}>"


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# Strong references: an Emulator dropped without stop() must still be stopped at exit.
_LIVE: set[Emulator] = set()


@atexit.register
def _stop_all() -> None:
    for emulator in list(_LIVE):
        emulator.stop()


class Emulator:
    """The emulator as a subprocess, and the runtimes started against it. A context manager;
    ``stop()`` (or leaving the ``with``) kills every process it started.

    Arguments mirror ``python -m lmi_gevent.emulator``: ``concurrency`` is N (measured, not
    enforced), ``timeout`` the function timeout in seconds, ``queue`` how many invocations may
    wait for a poll (None: max(100, 4N)), ``strict`` rejects invokes when no poll is open;
    ``max_events`` / ``max_answers`` bound the timeline and the answers log.
    Raises EmulatorError when the process does not come up.
    """

    def __init__(self, *, concurrency: int = 1, timeout: float = 30.0, queue: int | None = None,
                 strict: bool = False, function_name: str = "function",
                 python: str = sys.executable, max_events: int = 20000, max_answers: int = 200,
                 function_url: bool = False) -> None:
        self.function_name = function_name
        argv = [python, "-m", "lmi_gevent.emulator", "--concurrency", str(concurrency),
                "--timeout", str(timeout), "--function-name", function_name,
                "--max-events", str(max_events), "--max-answers", str(max_answers),
                "--exit-with-parent"]
        if queue is not None:
            argv += ["--queue", str(queue)]
        if strict:
            argv.append("--strict")
        if function_url:
            argv += ["--function-url-port", "0"]
        self._runtimes: list[RuntimeProcess] = []
        self._local = _Connections()
        self._all_connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._process = subprocess.Popen(
            argv, env=_with_package_path(os.environ), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, start_new_session=True)
        _LIVE.add(self)
        try:
            ready = self._read_ready_line()
        except BaseException:
            self.stop()
            raise
        self.runtime_api: str = ready["runtime_api"]
        self.invoke_url: str = ready["invoke_url"]
        self.pid: int = ready["pid"]
        # ``http://127.0.0.1:PORT/`` when started with ``function_url=True``.
        self.function_url: str | None = ready.get("function_url")
        host_port = self.invoke_url.split("://", 1)[1]
        self._host, _, port = host_port.rpartition(":")
        self._host = self._host.strip("[]")
        self._port = int(port)

    def _read_ready_line(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            if not selector.select(_START_TIMEOUT):
                raise EmulatorError(f"emulator printed nothing in {_START_TIMEOUT} s")
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait(5)
            raise EmulatorError(f"emulator exited with {code} before it was ready (see its stderr)")
        return json.loads(line)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- HTTP plumbing ---------------------------------------------------------------

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn = self._local.by_port.get(self._port)
        if conn is None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            self._local.by_port[self._port] = conn
            with self._lock:
                self._all_connections.append(conn)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: Mapping[str, str] | None = None, *, timeout: float = 30.0,
                 retry: bool = False) -> InvokeResult:
        for attempt in (1, 2):
            conn = self._connection(timeout)
            try:
                conn.request(method, path, body=body, headers=dict(headers or {}))
                response = conn.getresponse()
                data = response.read()
            except _RETRYABLE:
                conn.close()
                if not retry or attempt == 2:
                    raise
                continue
            except BaseException:
                conn.close()  # a half-read answer would poison the keep-alive connection
                raise
            result = InvokeResult(response.status, data, {k.lower(): v for k, v in response.getheaders()})
            if response.will_close:
                conn.close()
            return result
        raise AssertionError("unreachable")

    def _control(self, method: str, name: str, document: Any = None, query: str = "") -> Any:
        body = None if document is None else json.dumps(document).encode()
        headers = {"Content-Type": "application/json"} if body is not None else None
        path = f"/_lmi/{name}" + (f"?{query}" if query else "")
        result = self._request(method, path, body, headers, timeout=30.0, retry=True)
        if result.status != 200:
            raise EmulatorError(f"{method} {path} -> {result.status}: {result.body.decode(errors='replace')}")
        return result.json()

    # ---- invoking --------------------------------------------------------------------

    def invoke(self, payload: bytes | str | object = b"{}", *, content_type: str = "application/json",
               client_context: dict[str, Any] | None = None, tenant_id: str | None = None,
               trace_id: str | None = None, timeout: float = 60, request_id: str | None = None,
               cognito_identity: dict[str, str] | None = None) -> InvokeResult:
        """Invoke the function synchronously through the Invoke API.

        ``payload``: bytes as they are, str as UTF-8, anything else as JSON.
        ``client_context`` is sent base64-encoded in X-Amz-Client-Context, as the SDKs do.
        ``request_id`` (X-Amzn-RequestId) chooses the invocation's id, as RIE allows;
        ``cognito_identity`` ({"cognitoIdentityId", "cognitoIdentityPoolId"}) goes in
        X-Amz-Cognito-Identity. Raises TimeoutError after ``timeout`` seconds without answer.
        """
        headers = {"Content-Type": content_type}
        if request_id is not None:
            headers["X-Amzn-RequestId"] = request_id
        if cognito_identity is not None:
            headers["X-Amz-Cognito-Identity"] = json.dumps(cognito_identity)
        if client_context is not None:
            headers["X-Amz-Client-Context"] = base64.b64encode(json.dumps(client_context).encode()).decode()
        if tenant_id is not None:
            headers["X-Amz-Tenant-Id"] = tenant_id
        if trace_id is not None:
            headers["X-Amzn-Trace-Id"] = trace_id
        return self._request("POST", INVOKE_PATH, _encode_payload(payload), headers, timeout=timeout)

    def invoke_streaming(self, payload: bytes | str | object = b"{}", *, timeout: float = 60,
                         content_type: str = "application/json") -> ChunkedReply:
        """Invoke on a fresh connection and return the answer unread, to read a streamed
        response chunk by chunk as the runtime produces it."""
        return open_reply(self._host, self._port, "POST", INVOKE_PATH, body=_encode_payload(payload),
                          headers={"Content-Type": content_type}, timeout=timeout)

    def invoke_many(self, payloads: Iterable[bytes | str | object], *, parallel: int,
                    timeout: float = 60) -> list[InvokeResult]:
        """Invoke once per payload from ``parallel`` threads (one connection each); results
        come back in the order of ``payloads``."""
        items = list(payloads)
        with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="invoke") as pool:
            return list(pool.map(lambda p: self.invoke(p, timeout=timeout), items))

    # ---- observing and steering ------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters and high-water marks; see README of the emulator for the keys."""
        return self._control("GET", "stats")

    def events(self, *, since: float | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """The timeline: dicts with ``t`` (time.monotonic() of the emulator, comparable with
        this process's), ``kind``, and ``request_id`` where it applies."""
        query = "&".join(f"{k}={v}" for k, v in (("since", since), ("kind", kind)) if v is not None)
        return self._control("GET", "events", query=query)

    def mark(self, name: str) -> dict[str, Any]:
        """Insert a ``marker`` event and return it (its ``t`` is the emulator's clock)."""
        return self._control("POST", "mark", {"name": name})

    def inject(self, endpoint: str, *, status: int | None = None, reset: bool = False,
               close: bool = False, accepted: bool = False, count: int | None = 1,
               rate: float | None = None, seed: int | None = None) -> None:
        """Fail calls of ``endpoint`` (next, response, error, init_error, invoke) in one way:
        answer ``status`` without acting, drop the connection with a RST (``reset=True``) or
        close it without answering (``close=True``; on ``next``: before /next answers).

        ``accepted=True`` (posts only) takes the answer first: with ``reset`` the runtime
        never sees the 202 (a reset while the answer is posted), with ``close`` the connection
        closes right after the 202. ``count`` calls are failed (None: no limit); with ``rate``
        each call fails with that probability instead (``count`` then defaults to no limit;
        ``seed`` makes the pattern repeatable).
        """
        if (status is not None) + reset + close != 1:
            raise ValueError("give exactly one of status=, reset=True or close=True")
        spec: dict[str, Any] = {"endpoint": endpoint, "accepted": accepted}
        if rate is not None:
            spec["rate"] = rate
            spec["count"] = None if count == 1 else count
        else:
            spec["count"] = count
        if seed is not None:
            spec["seed"] = seed
        spec.update({"reset": True} if reset else {"close": True} if close else {"status": status})
        self._control("POST", "faults", spec)

    def inject_platform_faults(self, rate: float = 0.02, seed: int | None = None) -> list[dict[str, Any]]:
        """Fail every kind of call at ``rate`` each, as a misbehaving platform would (see
        PLATFORM_FAULTS); returns the plan. ``clear_faults()`` ends it."""
        for number, fault in enumerate(PLATFORM_FAULTS):
            self.inject(**fault, rate=rate, seed=None if seed is None or number else seed)
        return [dict(fault, rate=rate) for fault in PLATFORM_FAULTS]

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def answers(self, last: int = 10) -> list[dict[str, Any]]:
        """The last answers the runtime posted: endpoint, request_id, headers (lower-case),
        body (text, first 64 KiB), body_bytes, invocation_id_echo (ok/missing/mismatch)..."""
        return self._control("GET", "answers", query=f"last={int(last)}")

    def reset_stats(self) -> None:
        self._control("POST", "reset-stats", {})

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        """Poll stats until ``predicate(stats)`` holds; returns those stats. Raises TimeoutError
        carrying the last stats seen."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s; last stats: {stats}")
            time.sleep(0.01)

    # ---- runtimes --------------------------------------------------------------------

    def runtime_env(self, env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None) -> dict[str, str]:
        """The environment ``start_runtime`` gives a runtime: os.environ without any
        AWS_LAMBDA_MAX_CONCURRENCY, Lambda's usual variables, then ``env`` on top."""
        merged = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_MAX_CONCURRENCY"}
        merged.update({
            "AWS_LAMBDA_RUNTIME_API": self.runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]emulator",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "LAMBDA_TASK_ROOT": os.fspath(cwd) if cwd is not None else os.getcwd(),
            "PYTHONUNBUFFERED": "1",
        })
        merged = _with_package_path(merged)
        merged.update(env or {})
        return merged

    def start_runtime(self, argv: list[str], *, env: Mapping[str, str] | None = None,
                      cwd: str | os.PathLike[str] | None = None) -> RuntimeProcess:
        """Start a runtime pointed at this emulator (see ``runtime_env``). It is stopped by
        ``stop()`` if still running."""
        runtime = RuntimeProcess(argv, self.runtime_env(env, cwd), cwd)
        self._runtimes.append(runtime)
        return runtime

    def stop(self) -> None:
        """Stop every runtime started here, then the emulator. Idempotent."""
        for runtime in self._runtimes:
            runtime.stop(grace=0.5)
        with self._lock:
            for conn in self._all_connections:
                conn.close()
            self._all_connections.clear()
        process = self._process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid)
                process.wait(5)
        if process.stdout is not None:
            process.stdout.close()
        _LIVE.discard(self)


def _encode_payload(payload: bytes | str | object) -> bytes:
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload).encode()


def _with_package_path(env: Mapping[str, str]) -> dict[str, str]:
    merged = dict(env)
    current = merged.get("PYTHONPATH", "")
    if _PACKAGE_PARENT not in current.split(os.pathsep):
        merged["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, current) if p)
    return merged
