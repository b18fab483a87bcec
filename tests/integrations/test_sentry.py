"""Sentry's AwsLambdaIntegration through the real runtime, 8 invocations at N=4, beside
awslambdaric: with lmi-gevent's bootstrap stand-in the integration wraps the handler, so each
event carries its own invocation's tag and Lambda context, and a handler exception reaches
Sentry; without it the integration does nothing and the tags leak."""

from __future__ import annotations

import json
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support import OFFICIAL_RUNTIME, start_runtime

pytest.importorskip("sentry_sdk")
pytestmark = pytest.mark.timeout(90)

N = 4
INVOCATIONS = 8
MARK = "SENTRY-EVENT "

SENTRY_APP = textwrap.dedent(f'''
    import json
    import time

    import sentry_sdk
    from sentry_sdk.integrations.aws_lambda import AwsLambdaIntegration
    from sentry_sdk.transport import Transport


    class PrintedTransport(Transport):  # nothing leaves the machine: events go to stdout
        def capture_envelope(self, envelope):
            for item in envelope.items:
                if item.type == "event":
                    print("{MARK}" + json.dumps(item.payload.json, default=str), flush=True)


    sentry_sdk.init(dsn="https://key@127.0.0.1/1", transport=PrintedTransport,
                    integrations=[AwsLambdaIntegration(timeout_warning=False)],
                    default_integrations=False)


    def handler(event, context):
        sentry_sdk.set_tag("order", event["order"])
        time.sleep(0.3)  # the other invocations set their tags meanwhile
        if event.get("fail"):
            raise ValueError("failed " + event["order"])
        sentry_sdk.capture_message("done " + event["order"])
        return {{"request_id": context.aws_request_id}}
''')


def sentry_events(emulator_factory: Any, root: Path, *, official: bool = False,
                  env: dict[str, str] | None = None) -> tuple[list[dict], dict[str, str], int]:
    (root / "app.py").write_text(SENTRY_APP)
    emulator = emulator_factory(concurrency=N, timeout=30)
    runtime = start_runtime(emulator, root, concurrency=N,
                            env={"LAMBDA_TASK_ROOT": str(root), **(env or {})},
                            argv=OFFICIAL_RUNTIME if official else None)
    orders = [f"o{i}" for i in range(INVOCATIONS)]

    def one(order: str) -> tuple[str, str]:
        result = emulator.invoke({"order": order, "fail": order == "o7"}, timeout=60)
        return order, result.json().get("request_id") or result.json().get("requestId")

    with ThreadPoolExecutor(INVOCATIONS) as pool:
        request_ids = dict(pool.map(one, orders))
    in_flight = emulator.stats()["max_in_flight"]
    runtime.stop(grace=5.0)
    return printed_events(runtime.output()), request_ids, in_flight


def printed_events(output: str) -> list[dict]:
    """The events the transport printed. The official client's worker processes share the
    test's stdout pipe and print() writes the newline apart, so a line may hold two events."""
    decoder = json.JSONDecoder()
    events, at = [], 0
    while (start := output.find(MARK, at)) >= 0:
        event, at = decoder.raw_decode(output, start + len(MARK))
        events.append(event)
    return events


def summary(events: list[dict], request_ids: dict[str, str]) -> dict[str, Any]:
    own = 0
    for event in events:
        if event.get("level") == "error":
            order = event["exception"]["values"][-1]["value"].split()[-1]
        else:
            order = event["message"].split()[-1]
        lambda_extra = event.get("extra", {}).get("lambda", {})
        own += (event.get("tags", {}).get("order") == order
                and lambda_extra.get("aws_request_id") == request_ids[order])
    errors = [e["exception"]["values"][-1]["value"] for e in events if e.get("level") == "error"]
    return {"events": len(events), "own": own, "errors": errors}


def test_sentry_integration_wraps_each_invocation_like_the_official_client(emulator_factory,
                                                                           tmp_path):
    events, ids, in_flight = sentry_events(emulator_factory, tmp_path)
    assert in_flight == N
    ours = summary(events, ids)
    assert ours == {"events": INVOCATIONS, "own": INVOCATIONS, "errors": ["failed o7"]}, events

    events, ids, _ = sentry_events(emulator_factory, tmp_path, official=True)
    assert summary(events, ids) == ours


def test_without_the_stand_in_the_integration_does_nothing(emulator_factory, tmp_path):
    events, ids, in_flight = sentry_events(emulator_factory, tmp_path,
                                           env={"LMI_GEVENT_SENTRY_INTEGRATION": "off"})
    assert in_flight == N
    # No Lambda context on any event, tags shared, and the handler's exception never captured
    assert summary(events, ids) == {"events": INVOCATIONS - 1, "own": 0, "errors": []}


def test_sequential_mode_gets_the_integration_too(emulator_factory, tmp_path):
    (tmp_path / "app.py").write_text(SENTRY_APP)
    emulator = emulator_factory(concurrency=1, timeout=30)
    runtime = start_runtime(emulator, tmp_path, env={"LAMBDA_TASK_ROOT": str(tmp_path)})
    result = emulator.invoke({"order": "o1"}, timeout=60)
    runtime.stop(grace=5.0)
    [event] = printed_events(runtime.output())
    assert event["extra"]["lambda"]["aws_request_id"] == result.json()["request_id"]
    assert event["tags"]["order"] == "o1"
