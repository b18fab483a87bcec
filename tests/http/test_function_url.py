"""The emulator's Function URL (``lmi-gevent local --function-url``) with real HTTP clients, the
real runtime and the examples: status, headers, every Set-Cookie, binary bodies, streams."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from lmi_gevent.emulator.api import open_reply
from tests.support import REPO, start_runtime, stop

pytestmark = pytest.mark.timeout(90)

GATED_APP = """
import os, time
from lmi_gevent.http import wsgi_handler

GATES = os.environ["GATES"]


def wait_gate(name):
    while not os.path.exists(os.path.join(GATES, name)):
        time.sleep(0.005)


def app(environ, start_response):
    tag = environ["QUERY_STRING"]
    if environ["PATH_INFO"] == "/raise":
        raise KeyError("no such order")
    if environ["PATH_INFO"] == "/broken":
        def broken():
            yield b"begun;"
            raise RuntimeError("stream broke")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return broken()

    def chunks():
        for k in range(4):
            if k:
                wait_gate(f"{tag}-{k}")
            yield f"data: {k}\\n\\n".encode()

    start_response("200 OK", [("Content-Type", "text/event-stream"), ("Set-Cookie", "s=1"),
                              ("Set-Cookie", "t=2")])
    return chunks()


handler = wsgi_handler(app, streaming=True)


def plain(event, context):
    if event["rawPath"] == "/fail":
        raise ValueError("no")
    return {"just": "json", "path": event["rawPath"]}
"""


ENVIRON_APP = """
import json
from lmi_gevent.http import wsgi_handler

KEYS = ("SCRIPT_NAME", "PATH_INFO", "wsgi.multiprocess", "wsgi.multithread")


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({key: environ[key] for key in KEYS}).encode()]


handler = wsgi_handler(app)
"""


@pytest.fixture
def url_emulator(emulator_factory):
    def start(handler: str, root: Path = REPO, concurrency: int = 4, env: dict | None = None):
        emu = emulator_factory(concurrency=concurrency, timeout=20, function_url=True)
        runtime = start_runtime(emu, root, handler, concurrency=concurrency, env=env)
        return emu, runtime

    return start


def test_flask_example_through_the_function_url(url_emulator):
    pytest.importorskip("flask")
    emu, runtime = url_emulator("examples/flask_app.handler")
    base = emu.function_url
    with requests.Session() as session:
        page = session.get(base)
        assert page.status_code == 200, runtime.output()
        assert page.headers["Content-Type"].startswith("text/html")
        assert "Visit number 1" in page.text
        # Both Set-Cookie headers reached the client, and the browser-side jar sends them back.
        assert session.cookies.get("visits") == "1" and session.cookies.get("seen") == "yes"
        assert "Visit number 2" in session.get(base).text

        hello = session.get(base + "hello/ada/", params={"tag": ["a b", "c&d"]}).json()
        assert hello["message"] == "Hello, ada!" and hello["query"] == {"tag": ["a b", "c&d"]}
        assert re.fullmatch(r"[0-9a-f-]{36}", hello["request_id"])

        png = session.get(base + "pixel.png")
        assert png.headers["Content-Type"] == "image/png" and png.content.startswith(b"\x89PNG\r\n")

        blob = bytes(range(256)) * 4
        echoed = session.post(base + "echo", data=blob, headers={"Content-Type": "application/octet-stream"})
        assert echoed.content == blob

        moved = session.get(base + "old", allow_redirects=False)
        assert moved.status_code == 302 and moved.headers["Location"].endswith("/")
        assert session.get(base + "nowhere").status_code == 404


def test_django_example_through_the_function_url(url_emulator):
    pytest.importorskip("django")
    emu, runtime = url_emulator("examples/django_app.handler")
    base = emu.function_url
    page = requests.get(base)
    assert page.status_code == 200, runtime.output()
    assert {c.name for c in page.cookies} == {"flavour", "theme"}
    item = requests.get(base + "items/7/?a=1&a=2").json()
    assert item == {"item": 7, "path": "/items/7/", "full_path": "/items/7/?a=1&a=2",
                    "secure": False, "remote_addr": "127.0.0.1", "query": {"a": ["1", "2"]}}
    # CommonMiddleware's APPEND_SLASH redirect: the trailing slash is seen for what it is.
    moved = requests.get(base + "items/7", allow_redirects=False)
    assert moved.status_code == 301 and moved.headers["Location"].endswith("/items/7/")


def test_streamed_chunks_reach_the_http_client_before_the_next_is_produced(url_emulator, task_root,
                                                                          tmp_path):
    gates = tmp_path / "gates"
    gates.mkdir()
    emu, runtime = url_emulator("app.handler", task_root(app=GATED_APP), env={"GATES": str(gates)})
    host, port = urlsplit(emu.function_url).hostname, urlsplit(emu.function_url).port
    n = 3
    replies = [open_reply(host, port, "GET", f"/sse?s{i}") for i in range(n)]
    for reply in replies:
        assert reply.status == 200
        assert reply.headers["content-type"] == "text/event-stream"
        assert [v for k, v in reply.header_list if k.lower() == "set-cookie"] == ["s=1", "t=2"]
    streams = [reply.chunks() for reply in replies]
    # All n streams deliver chunk 0 while each is held at its gate 1: n at once, unbuffered.
    assert [next(stream) for stream in streams] == [b"data: 0\n\n"] * n
    assert emu.stats()["in_flight"] == n
    for i, stream in enumerate(streams):
        for k in range(1, 4):
            (gates / f"s{i}-{k}").touch()
            assert next(stream) == f"data: {k}\n\n".encode()
        assert list(stream) == [] and replies[i].complete
    assert emu.stats()["streamed_responses"] == n


def test_a_stream_that_fails_is_cut_not_completed(url_emulator, task_root, tmp_path):
    emu, _ = url_emulator("app.handler", task_root(app=GATED_APP), env={"GATES": str(tmp_path)})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(emu.function_url + "broken", stream=False)
    emu.wait_for(lambda s: s["stream_errors"] == 1)


def test_plain_json_answers_and_function_errors(url_emulator, task_root, tmp_path):
    emu, _ = url_emulator("app.plain", task_root(app=GATED_APP), env={"GATES": str(tmp_path)})
    answer = requests.get(emu.function_url + "x/y/")
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"just": "json", "path": "/x/y/"}
    failed = requests.get(emu.function_url + "fail")
    assert failed.status_code == 502 and failed.json() == {"Message": "Internal Server Error"}


def test_local_function_url_serves_the_flask_example_to_a_real_client():
    pytest.importorskip("flask")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop("AWS_LAMBDA_MAX_CONCURRENCY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmi_gevent", "local", "examples/flask_app.handler", "--function-url",
         "--port", "0", "--concurrency", "4"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 30
        url = None
        while url is None and time.monotonic() < deadline:
            found = re.search(r"Function URL (http://\S+/)", "".join(lines))
            url = found.group(1) if found else None
            time.sleep(0.05)
        assert url, "".join(lines)
        answer = None
        while time.monotonic() < deadline:  # the runtime may still be starting
            answer = requests.get(url)
            if answer.status_code == 200:
                break
            time.sleep(0.1)
        assert answer is not None and answer.status_code == 200, "".join(lines)
        assert "Hello from Lambda" in answer.text
        assert sorted(c.name for c in answer.cookies) == ["seen", "visits"]
        assert requests.get(url + "pixel.png").content.startswith(b"\x89PNG")
    finally:
        stop(proc)


def test_streaming_example_sends_events_and_a_csv_export(url_emulator):
    emu, runtime = url_emulator("examples/streaming_app.handler")
    with requests.get(emu.function_url + "events", params={"count": 3, "interval": 0.01}, stream=True) as sse:
        assert sse.status_code == 200 and sse.headers["Content-Type"] == "text/event-stream"
        events = [line for line in sse.iter_lines() if line.startswith(b"event: ")]
    assert events == [b"event: tick"] * 3, runtime.output()
    export = requests.get(emu.function_url + "export.csv", params={"rows": 2500})
    lines = export.text.splitlines()
    assert lines[0] == "id,name,score" and len(lines) == 2501 and lines[-1].startswith("2499,")
    assert export.headers["Content-Disposition"] == 'attachment; filename="export.csv"'
    assert emu.stats()["streamed_responses"] == 2


def test_an_app_exception_is_a_500_logged_under_the_request_id(url_emulator, task_root, tmp_path):
    emu, runtime = url_emulator("app.handler", task_root(app=GATED_APP), env={"GATES": str(tmp_path)})
    answer = requests.get(emu.function_url + "raise")
    assert answer.status_code == 500 and answer.text == "Internal Server Error"
    request_id = emu.answers(last=1)[0]["request_id"]
    output = runtime.wait_for_output("The WSGI app failed")
    line = next(line for line in output.splitlines() if "The WSGI app failed" in line)
    assert line.startswith("[ERROR]") and request_id in line and "GET /raise" in line
    assert "KeyError: 'no such order'" in output


def test_an_event_from_no_http_source_is_an_error_answer_naming_the_shapes(url_emulator, task_root,
                                                                          tmp_path):
    emu, _ = url_emulator("app.handler", task_root(app=GATED_APP), env={"GATES": str(tmp_path)})
    result = emu.invoke({"Records": [{"eventSource": "aws:sqs"}]})
    assert result.function_error == "Unhandled"
    error = result.json()
    assert error["errorType"] == "UnsupportedEvent"
    assert "Function URL" in error["errorMessage"] and "VPC Lattice" in error["errorMessage"]


def test_base_path_and_wsgi_flags_in_two_worker_processes(url_emulator, task_root):
    emu, _ = url_emulator("environ_app.handler", task_root(environ_app=ENVIRON_APP),
                          env={"LMI_GEVENT_WORKERS": "2", "LMI_GEVENT_HTTP_BASE_PATH": "/v1"})
    seen = requests.get(emu.function_url + "v1/orders/7").json()
    assert seen == {"SCRIPT_NAME": "/v1", "PATH_INFO": "/orders/7", "wsgi.multiprocess": True,
                    "wsgi.multithread": True}
    assert requests.get(emu.function_url + "health").json()["PATH_INFO"] == "/health"
