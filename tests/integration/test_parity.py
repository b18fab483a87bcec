"""Same handler, same emulator, two runtimes: lmi-gevent's answers match awslambdaric 4.2.2's.

Differences that remain on purpose are asserted too, so a change to either side is noticed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import OFFICIAL_RUNTIME, RUNTIME, init_error, start_runtime

pytest.importorskip("awslambdaric")
pytestmark = pytest.mark.timeout(90)

APP = """
import collections, decimal, logging, sys, threading

Point = collections.namedtuple("Point", "x y")

def handler(event, context):
    case = event["case"] if isinstance(event, dict) else "raw"
    if case == "raw":
        return {"raw": event.decode("latin-1")}
    if case == "dict":
        return {"a": 1, "b": [True, None, 2.5, "s/ash"], "c": {"nested": "é ✓"}}
    if case == "str":
        return "plain string"
    if case == "none":
        return None
    if case == "decimal":
        return {"d": decimal.Decimal("1.10"), "big": decimal.Decimal("12345678901234567890.123"),
                "nan": decimal.Decimal("NaN")}
    if case == "namedtuple":
        return Point(1, [2, 3])
    if case == "floats":
        return [0.1, 1e100, float("inf"), -0.0, 2 ** 70]
    if case == "bytes":
        return b"\\x00\\xffraw"
    if case == "set":
        return {1}
    if case == "raise":
        def inner():
            raise ValueError("bad thing happened")
        inner()
    if case == "raise_custom":
        class AppError(Exception):
            pass
        raise AppError("custom", 42)
    if case == "thread_log":
        rid = context.aws_request_id
        worker = threading.Thread(target=lambda: logging.getLogger().warning("thread of %s", rid))
        worker.start()
        worker.join()
        return "logged"
    if case == "context":
        cc = context.client_context
        return {"rid": context.aws_request_id, "arn": context.invoked_function_arn,
                "name": context.function_name, "memory": context.memory_limit_in_mb,
                "version": context.function_version, "group": context.log_group_name,
                "stream": context.log_stream_name, "tenant": context.tenant_id,
                "custom": cc.custom if cc else None, "env": cc.env if cc else None,
                "installation": cc.client.installation_id if cc and cc.client else None,
                "w3c": context.w3c(), "identity": repr(context.identity),
                "has_remaining": context.get_remaining_time_in_millis() > 0}
    return "unknown"
"""

CASES = ["dict", "str", "none", "decimal", "namedtuple", "floats", "bytes", "set", "raise",
         "raise_custom", "thread_log"]


def collect(emulator_factory, root, argv: list[str], requests: list[dict[str, Any]]) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(timeout=10)
    runtime = start_runtime(emulator, root, argv=argv)
    answers = []
    for request in requests:
        result = emulator.invoke(**request)
        posted = emulator.answers(1)[0]
        answers.append({"status": result.status, "body": result.body,
                        "function_error": result.function_error,
                        "content_type": posted["headers"].get("content-type"),
                        "endpoint": posted["endpoint"], "echo": posted["invocation_id_echo"],
                        "xray": posted["xray_cause_present"]})
    runtime.stop()
    answers.append({"output": runtime.output()})
    return answers


@pytest.fixture(scope="module")
def both(tmp_path_factory, request):  # type: ignore[no-untyped-def]
    from lmi_gevent.emulator.api import Emulator

    root = tmp_path_factory.mktemp("parity")
    (root / "app.py").write_text(APP)
    requests = [{"payload": {"case": case}} for case in CASES]
    requests.append({"payload": b"\x01not json", "content_type": "application/octet-stream"})
    requests.append({"payload": b"{broken", "content_type": "application/json"})
    requests.append({"payload": {"case": "context"}, "tenant_id": "tenant-1",
                     "client_context": {"custom": {"k": "v"}, "env": {"e": "1"},
                                        "client": {"installation_id": "inst"},
                                        "w3c": {"traceparent": "00-aa-bb-01", "tracestate": 5}}})
    emulators: list[Emulator] = []

    def factory(**options):  # type: ignore[no-untyped-def]
        emulators.append(Emulator(**options))
        return emulators[-1]

    try:
        ours = collect(factory, root, RUNTIME, requests)
        theirs = collect(factory, root, OFFICIAL_RUNTIME, requests)
    finally:
        for emulator in emulators:
            emulator.stop()
    logs = {"logs": (ours.pop()["output"], theirs.pop()["output"])}
    names = [_case_name(r) for r in requests]
    return logs | dict(zip(names, zip(ours, theirs, strict=True), strict=True))


def _case_name(request: dict[str, Any]) -> str:
    if isinstance(request.get("payload"), dict):
        return request["payload"]["case"]
    return "raw" if request["content_type"] != "application/json" else "broken"


@pytest.mark.parametrize("case", ["dict", "str", "none", "decimal", "namedtuple", "bytes", "raw"])
def test_response_bytes_and_content_type_match(both, case) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = both[case]
    assert ours == theirs


def test_floats_are_json_equal(both) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = both["floats"]
    # ujson and simplejson may spell an exponent differently (1e+100 both; 1.5e-07 vs 1.5e-7).
    assert json.loads(ours["body"]) == json.loads(theirs["body"])
    assert ours["content_type"] == theirs["content_type"] == "application/json"


@pytest.mark.parametrize("case", ["raise", "raise_custom", "set"])
def test_error_bodies_match(both, case) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = both[case]
    assert ours["function_error"] == theirs["function_error"] == "Unhandled"
    mine, official = json.loads(ours["body"]), json.loads(theirs["body"])
    # Request ids differ per invocation; everything else (message, type, user frames) matches.
    assert mine.pop("requestId") and official.pop("requestId")
    assert mine == official
    assert ours["xray"] == theirs["xray"] is True


def test_unmarshal_error_matches_byte_for_byte(both) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = both["broken"]
    mine, official = json.loads(ours["body"]), json.loads(theirs["body"])
    assert mine["errorType"] == official["errorType"] == "Runtime.UnmarshalError"
    assert mine["errorMessage"] == official["errorMessage"]
    assert official["errorMessage"].startswith("Unable to unmarshal input: Expecting property name")


def test_context_matches(both) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = both["context"]
    mine, official = json.loads(ours["body"]), json.loads(theirs["body"])
    assert mine.pop("rid") != official.pop("rid")
    assert mine == official
    assert mine["w3c"] == {"traceparent": "00-aa-bb-01"} and mine["tenant"] == "tenant-1"


def test_both_echo_the_invocation_id(both) -> None:  # type: ignore[no-untyped-def]
    assert all(ours["echo"] == theirs["echo"] == "ok" for name, (ours, theirs) in both.items() if name != "logs")


def test_unhandled_error_log_lines_match(both) -> None:  # type: ignore[no-untyped-def]
    def error_lines(output: str) -> list[str]:
        return [line for line in output.split("\n") if line.startswith("[ERROR] ")]

    ours, theirs = (error_lines(output) for output in both["logs"])
    assert len(ours) == len(theirs) == 4  # raise, raise_custom, set, broken
    for mine, official in zip(ours, theirs, strict=True):
        if "UnmarshalError" not in mine:
            assert mine == official


def test_a_thread_the_handler_starts_logs_with_the_request_id(both) -> None:  # type: ignore[no-untyped-def]
    # The official client keeps the request id process-wide; a thread's records carry it.
    for output in both["logs"]:
        lines = [line.split("\t") for line in output.split("\n") if "\tthread of " in line]
        assert len(lines) == 1, output
        level, _, request_id, message = lines[0]
        assert level == "[WARNING]" and message == f"thread of {request_id}" and request_id


INIT_CASES = {
    "nodot": "Runtime.MalformedHandlerName",
    "missing.handler": "Runtime.ImportModuleError",
    "app.missing": "Runtime.HandlerNotFound",
    "syntax.handler": "Runtime.UserCodeSyntaxError",
    "sys.handler": "Runtime.BuiltInModuleConflict",
    "raises.handler": "KeyError",
}


@pytest.mark.parametrize("handler", list(INIT_CASES))
def test_init_errors_match(emulator_factory, task_root, handler) -> None:  # type: ignore[no-untyped-def]
    root = task_root(app=APP, syntax="def handler(e, c)\n  pass\n", raises="raise KeyError('x')\n")
    seen = {}
    for name, argv in (("ours", RUNTIME), ("theirs", OFFICIAL_RUNTIME)):
        emulator = emulator_factory(timeout=10)
        runtime = start_runtime(emulator, root, handler, argv=argv, wait=False)
        code = runtime.wait(20)
        posted_type, body = init_error(emulator)
        seen[name] = (code != 0, posted_type, body)
    (our_failed, our_type, our_body), (their_failed, their_type, their_body) = seen["ours"], seen["theirs"]
    assert our_failed and their_failed
    assert our_type == their_type == INIT_CASES[handler]  # the Error-Type header
    assert our_body["errorType"] == their_body["errorType"]
    if handler != "nodot":  # our malformed-name message explains the expected form instead
        assert our_body["errorMessage"] == their_body["errorMessage"]
        assert len(our_body["stackTrace"]) == len(their_body["stackTrace"])
