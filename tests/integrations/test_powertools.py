"""Powertools for AWS Lambda under concurrency: per-invocation Logger keys, Metrics blobs,
Tracer segments and event-handler requests, side by side with the official client (a process
per slot), and with the isolation hook switched off to show what it fixes."""

from __future__ import annotations

import json
import socket
import textwrap
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support import OFFICIAL_RUNTIME, start_runtime

pytest.importorskip("aws_lambda_powertools")
pytest.importorskip("aws_xray_sdk")
pytestmark = pytest.mark.timeout(90)

N = 4
INVOCATIONS = 8
WAIT = 0.4  # each invocation waits this long mid-way, so the N in flight overlap

POWERTOOLS_APP = textwrap.dedent(f'''
    import os
    import time

    from aws_lambda_powertools import Logger, Metrics, Tracer
    from aws_lambda_powertools.metrics import MetricUnit

    logger = Logger(service="shop")
    logger.append_keys(deployment="blue")  # at import: every invocation's records carry it
    metrics = Metrics(namespace="Shop", service="shop")
    metrics.set_default_dimensions(stage="test")
    tracer = Tracer(service="shop")


    @metrics.log_metrics
    @tracer.capture_lambda_handler
    @logger.inject_lambda_context(correlation_id_path="order")
    def handler(event, context):
        logger.append_keys(order=event["order"])
        metrics.add_dimension(name="order", value=event["order"])
        metrics.add_metric(name="Items", unit=MetricUnit.Count, value=event["items"])
        metrics.add_metadata(key="request", value=context.aws_request_id)
        tracer.put_annotation(key="order", value=event["order"])
        time.sleep({WAIT})  # an I/O wait: the other invocations run meanwhile
        logger.info("processed")
        return {{"request_id": context.aws_request_id}}
''')


class XrayDaemon:
    """A UDP socket standing in for the X-Ray daemon on loopback: the segments it received."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.segments: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except OSError:
                continue
            _header, _, body = data.partition(b"\n")
            try:
                self.segments.append(json.loads(body))
            except ValueError:
                pass

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Until ``count`` segments arrived (sent before each answer, read by a thread)."""
        deadline = time.monotonic() + timeout
        while len(self.segments) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def xray() -> Iterator[XrayDaemon]:
    daemon = XrayDaemon()
    yield daemon
    daemon.close()


def invoke_overlapping(emulator: Any) -> list[dict[str, str]]:
    """INVOCATIONS invocations at once, each with its own order, item count and trace id."""
    calls = [{"order": f"o{i}", "items": i + 1,
              "trace": f"Root=1-5759e988-bd862e3fe1be46a99427{i:04d};Parent=53995c3f42cd8ad8;"
                       "Sampled=1"} for i in range(INVOCATIONS)]

    def one(call: dict[str, Any]) -> dict[str, Any]:
        result = emulator.invoke({"order": call["order"], "items": call["items"]},
                                 trace_id=call["trace"], timeout=60)
        assert result.status == 200 and not result.function_error, result.body
        return {**call, "request_id": result.json()["request_id"]}

    with ThreadPoolExecutor(INVOCATIONS) as pool:
        return list(pool.map(one, calls))


def records(output: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(Logger records saying "processed", EMF blobs) in a runtime's output.

    The official client's worker processes share the test's stdout pipe, and print() writes a
    record and its newline separately, so two processes' records can end up on one line:
    every JSON object is decoded where it starts, wherever the line breaks fell.
    """
    decoder = json.JSONDecoder()
    logs, blobs = [], []
    at = 0
    while (start := output.find("{", at)) >= 0:
        try:
            record, at = decoder.raw_decode(output, start)
        except ValueError:
            at = start + 1
            continue
        if not isinstance(record, dict):
            continue
        if "_aws" in record and "Items" in record:
            blobs.append(record)
        elif record.get("message") == "processed":
            logs.append(record)
    return logs, blobs


def run_powertools(emulator_factory: Any, root: Path, xray: XrayDaemon, *,
                   official: bool = False, env: dict[str, str] | None = None) -> dict[str, Any]:
    (root / "app.py").write_text(POWERTOOLS_APP)
    emulator = emulator_factory(concurrency=N, timeout=30)
    full_env = {"LAMBDA_TASK_ROOT": str(root), "AWS_XRAY_DAEMON_ADDRESS": xray.address,
                "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR", **(env or {})}
    runtime = start_runtime(emulator, root, concurrency=N, env=full_env,
                            argv=OFFICIAL_RUNTIME if official else None)
    calls = invoke_overlapping(emulator)
    stats = emulator.stats()
    runtime.stop(grace=5.0)
    logs, blobs = records(runtime.output())
    return {"calls": calls, "logs": logs, "blobs": blobs, "max_in_flight": stats["max_in_flight"],
            "output": runtime.output()}


def per_invocation_view(run: dict[str, Any]) -> dict[str, Any]:
    """What each invocation's log record and EMF blob said, by its request id."""
    logs = {}
    for record in run["logs"]:
        logs.setdefault(record.get("function_request_id"), []).append(
            (record.get("order"), record.get("correlation_id"), record.get("deployment"),
             record.get("xray_trace_id")))
    blobs = {}
    for blob in run["blobs"]:
        blobs.setdefault(blob.get("request"), []).append(
            (blob.get("order"), blob.get("Items"), blob.get("stage")))
    return {"logs": logs, "blobs": blobs}


def expected_view(calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "logs": {c["request_id"]: [(c["order"], c["order"], "blue",
                                    c["trace"].split(";")[0][len("Root="):])] for c in calls},
        "blobs": {c["request_id"]: [(c["order"], [float(c["items"])], "test")] for c in calls},
    }


def traced(xray: XrayDaemon) -> list[tuple[str, str, str]]:
    """(annotated order, trace id, request id in the metadata) of each handler subsegment."""
    xray.wait_for(INVOCATIONS)
    return sorted((s.get("annotations", {}).get("order"), s.get("trace_id"),
                   s.get("metadata", {}).get("shop", {}).get("handler response", {})
                   .get("request_id")) for s in xray.segments if s.get("name") == "## handler")


def expected_traces(calls: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((c["order"], c["trace"].split(";")[0][len("Root="):], c["request_id"])
                  for c in calls)


def test_powertools_logger_metrics_tracer_per_invocation_like_the_official_client(
        emulator_factory, tmp_path, xray):
    ours = run_powertools(emulator_factory, tmp_path, xray)
    assert ours["max_in_flight"] == N, ours["output"][-3000:]
    assert len(ours["logs"]) == INVOCATIONS and len(ours["blobs"]) == INVOCATIONS, \
        ours["output"][-3000:]
    assert per_invocation_view(ours) == expected_view(ours["calls"])
    # Tracer: each invocation's handler subsegment is in its own trace, with its own annotation
    assert traced(xray) == expected_traces(ours["calls"])

    xray.segments.clear()
    official = run_powertools(emulator_factory, tmp_path, xray, official=True)
    assert official["max_in_flight"] == N
    assert per_invocation_view(official) == expected_view(official["calls"])
    assert traced(xray) == expected_traces(official["calls"])
    # Only cold starts differ: one per process, N there, 1 here (one init serves every slot)
    assert Counter(r["cold_start"] for r in ours["logs"]) == {True: 1, False: INVOCATIONS - 1}
    assert Counter(r["cold_start"] for r in official["logs"])[True] == N


def test_without_the_hook_powertools_state_leaks_between_invocations(
        emulator_factory, tmp_path, xray):
    leaky = run_powertools(emulator_factory, tmp_path, xray,
                           env={"LMI_GEVENT_POWERTOOLS_ISOLATION": "off"})
    assert leaky["max_in_flight"] == N
    view = per_invocation_view(leaky)
    expected = expected_view(leaky["calls"])
    wrong_logs = sum(1 for rid, seen in expected["logs"].items() if view["logs"].get(rid) != seen)
    wrong_blobs = sum(1 for rid, seen in expected["blobs"].items()
                      if view["blobs"].get(rid) != seen)
    assert wrong_logs >= N - 1 and wrong_blobs >= N - 1, (view, expected)


RESOLVER_APP = textwrap.dedent(f'''
    import time

    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    app = APIGatewayHttpResolver()


    @app.get("/orders/<order>")
    def get_order(order):
        app.append_context(order=order)
        time.sleep({WAIT})  # an I/O wait (a database call): other requests resolve meanwhile
        event = app.current_event
        return {{"order": order, "seen_path": event.path, "seen_user": event.headers["x-user"],
                "seen_request_id": app.lambda_context.aws_request_id,
                "seen_context": app.context.get("order")}}


    def handler(event, context):
        return app.resolve(event, context)
''')


def http_api_event(order: str, user: str) -> dict[str, Any]:
    path = f"/orders/{order}"
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"x-user": user}, "isBase64Encoded": False,
            "requestContext": {"http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                                        "sourceIp": "127.0.0.1", "userAgent": "test"},
                               "requestId": f"api-{order}", "stage": "$default"}}


def resolve_overlapping(emulator_factory: Any, root: Path, env: dict[str, str] | None = None
                        ) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], int]:
    """8 requests at once through a module-level resolver: (what was sent, what it read)."""
    (root / "app.py").write_text(RESOLVER_APP)
    emulator = emulator_factory(concurrency=N, timeout=30)
    runtime = start_runtime(emulator, root, concurrency=N, env=env)
    sent = [{"order": f"o{i}", "user": f"user-{i}", "request_id": f"req-{i}"}
            for i in range(INVOCATIONS)]

    def one(call: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        result = emulator.invoke(http_api_event(call["order"], call["user"]),
                                 request_id=call["request_id"], timeout=60)
        assert result.status == 200 and result.json()["statusCode"] == 200, result.body
        return call, json.loads(result.json()["body"])

    with ThreadPoolExecutor(INVOCATIONS) as pool:
        answers = list(pool.map(one, sent))
    in_flight = emulator.stats()["max_in_flight"]
    runtime.stop(grace=5.0)
    return answers, in_flight


def own_reads(answers: list[tuple[dict[str, Any], dict[str, Any]]]) -> int:
    return sum(1 for call, body in answers
               if (body["seen_path"], body["seen_user"], body["seen_request_id"],
                   body["seen_context"]) == (f"/orders/{call['order']}", call["user"],
                                             call["request_id"], call["order"]))


def test_module_level_resolver_requests_read_their_own_event_and_context(emulator_factory,
                                                                          tmp_path):
    answers, in_flight = resolve_overlapping(emulator_factory, tmp_path)
    assert in_flight == N
    assert own_reads(answers) == INVOCATIONS, answers


def test_without_the_hook_resolver_requests_read_each_others_event(emulator_factory,
                                                                    tmp_path):
    answers, in_flight = resolve_overlapping(
        emulator_factory, tmp_path, env={"LMI_GEVENT_POWERTOOLS_ISOLATION": "off"})
    assert in_flight == N
    assert own_reads(answers) <= INVOCATIONS - (N - 1), answers
