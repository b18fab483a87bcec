"""RuntimeApiClient against a small stdlib HTTP/1.1 server on loopback."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from typing import Iterator

import pytest

from lmi_gevent.runtime_api.client import INVOCATION_ID_HEADER, PlatformFailure, RuntimeApiClient, RuntimeApiError


class Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    replies: list[tuple[int, dict[str, str], bytes]] = []
    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    connections: set[tuple[str, int]] = set()

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append((self.command, self.path, dict(self.headers), body))
        self.connections.add(self.client_address)
        status, headers, reply = self.replies.pop(0) if self.replies else (202, {}, b"")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = _answer


@pytest.fixture
def server() -> Iterator[type[Recorder]]:
    handler = type("Handler", (Recorder,), {"replies": [], "seen": [], "connections": set()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    handler.address = f"127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    httpd.shutdown()
    httpd.server_close()


NEXT_HEADERS = {"Lambda-Runtime-Aws-Request-Id": "rid-1", "Lambda-Runtime-Deadline-Ms": "1700000000000",
                "Lambda-Runtime-Invoked-Function-Arn": "arn", "Lambda-Runtime-Trace-Id": "Root=1-a",
                "Lambda-Runtime-Invocation-Id": "inv-9", "Content-Type": "application/json"}


class CountingSocket:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))
        self.sock.sendall(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


def test_next_then_response_on_one_keep_alive_connection(server: type[Recorder]) -> None:
    server.replies += [(200, NEXT_HEADERS, b'{"k": 1}'), (202, {}, b""), (200, NEXT_HEADERS, b"{}")]
    client = RuntimeApiClient(server.address)  # type: ignore[attr-defined]
    invocation = client.next_invocation()
    assert (invocation.request_id, invocation.deadline_ms, invocation.invocation_id) == ("rid-1", 1700000000000, "inv-9")
    assert invocation.body == b'{"k": 1}' and invocation.content_type == "application/json"
    assert client.post_response(invocation, b'{"ok": true}', "application/json") == (202, b"")
    client.next_invocation()
    client.close()
    assert len(server.connections) == 1
    method, path, headers, body = server.seen[1]
    assert (method, path, body) == ("POST", "/2018-06-01/runtime/invocation/rid-1/response", b'{"ok": true}')
    assert headers[INVOCATION_ID_HEADER] == "inv-9" and headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("lmi-gevent/")


def test_each_request_is_one_write_with_nodelay(server: type[Recorder]) -> None:
    server.replies += [(200, NEXT_HEADERS, b"{}"), (202, {}, b""), (202, {}, b"")]
    client = RuntimeApiClient(server.address)  # type: ignore[attr-defined]
    invocation = client.next_invocation()
    conn = client._conn
    assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    counting = CountingSocket(conn.sock)
    conn.sock = counting  # type: ignore[assignment]
    client.post_response(invocation, b'{"a": 1}', "application/json")
    client.post_error(invocation, {"errorType": "E", "errorMessage": "m", "requestId": "rid-1", "stackTrace": []},
                      {"working_directory": "/", "exceptions": [], "paths": []})
    assert len(counting.sends) == 2
    assert counting.sends[0].startswith(b"POST ") and counting.sends[0].endswith(b'\r\n\r\n{"a": 1}')
    client.close()


def test_error_post_carries_type_and_xray_cause(server: type[Recorder]) -> None:
    server.replies += [(200, NEXT_HEADERS, b"{}"), (202, {}, b"")]
    client = RuntimeApiClient(server.address)  # type: ignore[attr-defined]
    invocation = client.next_invocation()
    cause = {"working_directory": "/var/task", "exceptions": [{"message": "m", "type": "E", "stack": []}], "paths": []}
    client.post_error(invocation, {"errorType": "E", "errorMessage": "m", "requestId": "rid-1", "stackTrace": []}, cause)
    _, path, headers, body = server.seen[1]
    assert path.endswith("/invocation/rid-1/error")
    assert headers["Lambda-Runtime-Function-Error-Type"] == "E"
    assert json.loads(headers["Lambda-Runtime-Function-XRay-Error-Cause"]) == cause
    assert json.loads(body)["errorType"] == "E"
    client.close()


def test_oversized_xray_cause_is_dropped(server: type[Recorder]) -> None:
    server.replies += [(200, NEXT_HEADERS, b"{}"), (202, {}, b"")]
    client = RuntimeApiClient(server.address)  # type: ignore[attr-defined]
    invocation = client.next_invocation()
    cause = {"working_directory": "/", "exceptions": [{"message": "x" * (1024 * 1024), "type": "E", "stack": []}], "paths": []}
    client.post_error(invocation, {"errorType": "E", "errorMessage": "m", "requestId": "rid-1", "stackTrace": []}, cause)
    assert "Lambda-Runtime-Function-XRay-Error-Cause" not in server.seen[1][2]
    client.close()


def test_init_error_has_the_error_type_header(server: type[Recorder]) -> None:
    client = RuntimeApiClient(server.address)  # type: ignore[attr-defined]
    status, _ = client.post_init_error({"errorType": "Runtime.ImportModuleError", "errorMessage": "m",
                                        "requestId": "", "stackTrace": []})
    assert status == 202
    _, path, headers, _ = server.seen[0]
    assert path == "/2018-06-01/runtime/init/error"
    assert headers["Lambda-Runtime-Function-Error-Type"] == "Runtime.ImportModuleError"
    client.close()


@pytest.mark.parametrize("status", [400, 403, 410, 413])
def test_client_reports_non_fatal_statuses_to_the_caller(server: type[Recorder], status: int) -> None:
    server.replies += [(200, NEXT_HEADERS, b"{}"), (status, {}, b'{"errorType": "X"}')]
    client = RuntimeApiClient(server.address)  # type: ignore[attr-defined]
    invocation = client.next_invocation()
    assert client.post_response(invocation, b"{}", "application/json") == (status, b'{"errorType": "X"}')
    client.close()


def test_500_on_a_post_is_a_platform_failure(server: type[Recorder]) -> None:
    server.replies += [(200, NEXT_HEADERS, b"{}"), (500, {}, b"dead")]
    client = RuntimeApiClient(server.address)  # type: ignore[attr-defined]
    invocation = client.next_invocation()
    with pytest.raises(PlatformFailure, match="500"):
        client.post_response(invocation, b"{}", "application/json")
    client.close()


def test_next_failure_status_is_a_runtime_api_error_not_fatal(server: type[Recorder]) -> None:
    server.replies += [(500, {}, b"too many polls")]
    client = RuntimeApiClient(server.address)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeApiError) as caught:
        client.next_invocation()
    assert not isinstance(caught.value, PlatformFailure) and caught.value.status == 500
    client.close()


def test_unreachable_api_is_a_runtime_api_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = RuntimeApiClient(f"127.0.0.1:{port}")
    with pytest.raises(RuntimeApiError, match="ConnectionRefusedError"):
        client.next_invocation()


def test_an_ipv6_runtime_api_address_is_reached_with_a_bracketed_host_header() -> None:
    # awslambdaric's http.client takes "[::1]:9001"; so does the client, with its Host header
    import socket
    import threading

    from lmi_gevent.runtime_api.client import RuntimeApiClient

    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = listener.getsockname()[1]
    seen: list[bytes] = []

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            seen.append(data)
            conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")

    server = threading.Thread(target=answer, daemon=True)
    server.start()
    client = RuntimeApiClient(f"[::1]:{port}")
    try:
        status, _ = client.post_init_error({"errorType": "E", "errorMessage": "m"})
    finally:
        client.close()
        server.join(5)
        listener.close()
    assert status == 202
    assert f"\r\nHost: [::1]:{port}\r\n".encode() in seen[0]
