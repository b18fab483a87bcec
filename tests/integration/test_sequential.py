"""The real `lmi-gevent` process in sequential mode, against the emulator over loopback."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import struct
import time
from pathlib import Path

import pytest

from tests.support import RUNTIME, start_runtime, wait_delivered

pytestmark = pytest.mark.timeout(60)

APP = """
import decimal, json, logging, os, sys

logger = logging.getLogger("app")

def handler(event, context):
    action = event.get("action") if isinstance(event, dict) else "raw"
    if action == "raw":
        return {"type": type(event).__name__, "hex": event.hex()}
    if action == "echo":
        return event
    if action == "sleep":
        import time
        time.sleep(event["seconds"])
        return {"slept": event["seconds"]}
    if action == "context":
        cc = context.client_context
        return {"request_id": context.aws_request_id, "arn": context.invoked_function_arn,
                "name": context.function_name, "version": context.function_version,
                "memory": context.memory_limit_in_mb, "group": context.log_group_name,
                "stream": context.log_stream_name, "tenant": context.tenant_id,
                "custom": cc.custom if cc else None, "w3c": context.w3c(),
                "remaining": context.get_remaining_time_in_millis(),
                "trace_env": os.environ.get("_X_AMZN_TRACE_ID"), "trace_ctx": context.xray_trace_id}
    if action == "bytes":
        return b"\\x00\\x01binary"
    if action == "decimal":
        return {"price": decimal.Decimal("19.90")}
    if action == "set":
        return {1, 2}
    if action == "raise":
        raise ValueError("boom " + context.aws_request_id)
    if action == "exit":
        sys.exit(7)
    if action == "big":
        return "x" * (7 * 1024 * 1024)
    if action == "log":
        print("printed line")
        logger.warning("warned %s", context.aws_request_id)
        logger.debug("debug detail")
        context.log("context log line\\n")
        return "logged"
    return {"unknown": action}
"""


@pytest.fixture
def app(task_root) -> Path:  # type: ignore[no-untyped-def]
    # patched.handler: the same handler in a module that monkey-patches with gevent itself, as
    # legacy gevent code does; sequential mode must still stop cleanly (signal handlers then
    # run in gevent's hub).
    return task_root(app=APP, patched="from gevent import monkey\nmonkey.patch_all()\n"
                                      "from app import handler\n")


# The signal tests run against both.
HANDLERS = pytest.mark.parametrize("handler", ["app.handler", "patched.handler"])


def printed_traceback(output: str) -> bool:
    """A traceback printed to stderr (one in a log record is joined with \\r, not \\n)."""
    return any(line.startswith("Traceback") for line in output.split("\n"))


@pytest.fixture
def served(emulator_factory, app):  # type: ignore[no-untyped-def]
    emulator = emulator_factory(timeout=10)
    runtime = start_runtime(emulator, app)
    return emulator, runtime


def test_json_event_and_response_round_trip(served) -> None:  # type: ignore[no-untyped-def]
    emulator, runtime = served
    result = emulator.invoke({"action": "echo", "nested": {"list": [1, 2.5, "é"]}})
    assert result.status == 200 and result.function_error is None, runtime.output()
    assert result.body == b'{"action": "echo", "nested": {"list": [1, 2.5, "\\u00e9"]}}'
    answer = emulator.answers(1)[0]
    assert answer["headers"]["content-type"] == "application/json"
    assert answer["invocation_id_echo"] == "ok"


def test_non_json_event_arrives_as_bytes(served) -> None:  # type: ignore[no-untyped-def]
    emulator, _ = served
    result = emulator.invoke(b"\x00\xffraw", content_type="application/octet-stream")
    assert result.json() == {"type": "bytes", "hex": "00ff726177"}


def test_bytes_return_is_sent_raw_as_application_unknown(served) -> None:  # type: ignore[no-untyped-def]
    emulator, _ = served
    result = emulator.invoke({"action": "bytes"})
    assert result.body == b"\x00\x01binary"
    assert emulator.answers(1)[0]["headers"]["content-type"] == "application/unknown"


def test_decimal_return_is_an_exact_number(served) -> None:  # type: ignore[no-untyped-def]
    emulator, _ = served
    assert emulator.invoke({"action": "decimal"}).body == b'{"price": 19.90}'


def test_context_fields_and_process_wide_trace_env(served) -> None:  # type: ignore[no-untyped-def]
    emulator, _ = served
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    context = {"custom": {"user": "u1"}, "w3c": {"traceparent": "00-abc-01", "junk": "x"}}
    body = emulator.invoke({"action": "context"}, client_context=context, tenant_id="tenant-7",
                           trace_id=trace).json()
    assert body["custom"] == {"user": "u1"} and body["w3c"] == {"traceparent": "00-abc-01"}
    assert body["tenant"] == "tenant-7"
    assert body["trace_env"] == trace and body["trace_ctx"] == trace
    assert body["arn"].endswith(":function:function") and body["name"] == "function"
    assert (body["version"], body["memory"]) == ("$LATEST", "1024")
    assert body["group"] == "/aws/lambda/function" and body["stream"]
    assert 0 < body["remaining"] <= 10_000
    # Empty headers: no client context, no tenant; a fresh trace id per invocation.
    bare = emulator.invoke({"action": "context"}).json()
    assert bare["custom"] is None and bare["w3c"] == {} and bare["tenant"] is None
    assert bare["trace_env"] != trace and bare["trace_env"] == bare["trace_ctx"]


def test_handler_exception_is_an_error_answer_and_an_error_log(served) -> None:  # type: ignore[no-untyped-def]
    emulator, runtime = served
    result = emulator.invoke({"action": "raise"})
    body = result.json()
    assert result.function_error == "Unhandled"
    assert body["errorType"] == "ValueError" and body["errorMessage"] == f"boom {body['requestId']}"
    assert len(body["stackTrace"]) == 1 and "app.py\", line" in body["stackTrace"][0]
    answer = emulator.answers(1)[0]
    assert answer["error_type_header"] == "ValueError" and answer["xray_cause_present"]
    assert emulator.invoke({"action": "echo"}).status == 200  # still serving
    output = runtime.output()  # written before the answer it preceded
    line = next(line for line in output.split("\n") if line.startswith("[ERROR] ValueError"))
    assert line.startswith(f"[ERROR] ValueError: boom {body['requestId']}\rTraceback (most recent call last):\r")


def test_sys_exit_in_the_handler_is_an_error_answer_not_an_exit(served) -> None:  # type: ignore[no-untyped-def]
    emulator, runtime = served
    body = emulator.invoke({"action": "exit"}).json()
    assert (body["errorType"], body["errorMessage"]) == ("SystemExit", "7")
    assert emulator.invoke({"action": "echo"}).status == 200 and runtime.returncode is None


def test_unmarshal_and_marshal_errors(served) -> None:  # type: ignore[no-untyped-def]
    emulator, _ = served
    bad = emulator.invoke(b"{not json").json()
    assert bad["errorType"] == "Runtime.UnmarshalError"
    assert bad["errorMessage"].startswith("Unable to unmarshal input: Expecting property name")
    unserialisable = emulator.invoke({"action": "set"}).json()
    assert unserialisable["errorType"] == "Runtime.MarshalError"
    assert unserialisable["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"


def test_response_over_6_mib_becomes_a_size_error(served) -> None:  # type: ignore[no-untyped-def]
    emulator, _ = served
    result = emulator.invoke({"action": "big"})
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "Function.ResponseSizeTooLarge"
    assert emulator.invoke({"action": "echo"}).status == 200


def test_text_logs_carry_the_request_id(served) -> None:  # type: ignore[no-untyped-def]
    emulator, runtime = served
    request_id = emulator.invoke({"action": "log"}).headers.get("x-amzn-requestid") or \
        emulator.answers(1)[0]["request_id"]
    emulator.invoke({"action": "echo"})  # a later invocation flushes nothing of the earlier one
    output = runtime.output()
    assert "printed line\n" in output and "context log line\n" in output
    warning = next(line for line in output.splitlines() if "warned" in line)
    level, stamp, rid, message = warning.split("\t")
    assert (level, rid, message) == ("[WARNING]", request_id, f"warned {request_id}")
    assert "debug detail" not in output  # no AWS_LAMBDA_LOG_LEVEL: Python's default WARNING


def test_json_logs_and_log_level(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(timeout=10)
    runtime = start_runtime(emulator, app, env={"AWS_LAMBDA_LOG_FORMAT": "JSON",
                                                "AWS_LAMBDA_LOG_LEVEL": "DEBUG"})
    emulator.invoke({"action": "log"}, tenant_id="tenant-j")
    request_id = emulator.answers(1)[0]["request_id"]
    emulator.invoke({"action": "raise"})
    output = runtime.output()  # written before the answer it preceded
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    mine = [r for r in records if r.get("logger") == "app"]
    assert {r["level"] for r in mine} == {"WARNING", "DEBUG"}
    assert all(r["requestId"] == request_id and r["tenantId"] == "tenant-j" for r in mine)
    error = next(r for r in records if r.get("errorType") == "ValueError")
    assert error["level"] == "ERROR" and error["stackTrace"]


def test_framed_telemetry_fd(emulator_factory, app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(timeout=10)
    frames_file = tmp_path / "frames.bin"
    # The platform hands the runtime an inherited fd; a shell redirect does the same here.
    argv = ["sh", "-c", f'exec 3>"{frames_file}"; exec "$@"', "sh", *RUNTIME]
    runtime = start_runtime(emulator, app, argv=argv, env={"_LAMBDA_TELEMETRY_LOG_FD": "3",
                                                          "AWS_LAMBDA_LOG_LEVEL": "INFO"})
    emulator.invoke({"action": "log"})
    emulator.invoke({"action": "raise"})
    runtime.send_signal(15)
    runtime.wait(10)
    data = frames_file.read_bytes()
    frames = []
    while data:
        kind, length, micros = struct.unpack(">IIQ", data[:16])
        frames.append((kind, data[16:16 + length].decode()))
        data = data[16 + length:]
    kinds = {message.split("\t")[0].split(" ")[0]: kind for kind, message in frames}
    assert kinds["[WARNING]"] == 0xA55A0013 and kinds["[ERROR]"] == 0xA55A0017
    assert any("context log line" in message and kind == 0xA55A0003 for kind, message in frames)
    # print() goes to stdout, not to the telemetry fd, as with the official client.
    assert "printed line" in runtime.output()
    assert all("printed line" not in message for _, message in frames)
    assert "_LAMBDA_TELEMETRY_LOG_FD" not in os.environ


def test_task_root_first_on_sys_path_and_slash_handler_form(emulator_factory, task_root, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = task_root(**{"pkg/__init__": "", "where": "WHERE = 'task root'\n",
                        "pkg/deep/mod": "import where\ndef fn(event, context):\n    return where.WHERE\n"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "where.py").write_text("WHERE = 'PYTHONPATH'\n")
    emulator = emulator_factory(timeout=10)
    # cwd is not the task root: only LAMBDA_TASK_ROOT can make the handler importable.
    env = {"LAMBDA_TASK_ROOT": str(root),
           "PYTHONPATH": os.pathsep.join([str(elsewhere), os.environ.get("PYTHONPATH", "")])}
    runtime = emulator.start_runtime(RUNTIME + ["pkg/deep/mod.fn"], env=env, cwd=elsewhere.parent)
    emulator.wait_for(lambda s: s["open_polls"] >= 1 or s["init_error"] is not None, timeout=20)
    assert emulator.invoke({}).body == b'"task root"', runtime.output()


def test_missing_runtime_api_exits_2_with_a_clear_message(app) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    env = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_RUNTIME_API"}
    result = subprocess.run(RUNTIME + ["app.handler"], cwd=app, env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "AWS_LAMBDA_RUNTIME_API" in result.stderr and "is not set" in result.stderr


def test_handler_falls_back_to_underscore_handler(emulator_factory, app) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(timeout=10)
    runtime = emulator.start_runtime(RUNTIME, env={"_HANDLER": "app.handler"}, cwd=app)
    emulator.wait_for(lambda s: s["open_polls"] == 1, timeout=20)
    assert emulator.invoke({"action": "echo"}).status == 200, runtime.output()


def test_cli_help_lists_every_setting_and_version() -> None:
    import subprocess
    from lmi_gevent import __version__, config
    help_text = subprocess.run(RUNTIME + ["--help"], capture_output=True, text=True, timeout=30).stdout
    assert all(setting.env in help_text for setting in config.SETTINGS)
    version = subprocess.run(RUNTIME + ["--version"], capture_output=True, text=True, timeout=30).stdout
    assert version.strip() == f"lmi-gevent {__version__}"
    bad = subprocess.run(RUNTIME + ["a.b", "extra"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unexpected arguments" in bad.stderr


@HANDLERS
def test_sigterm_while_waiting_exits_cleanly(emulator_factory, app, handler) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(timeout=10)
    runtime = start_runtime(emulator, app, handler)
    assert emulator.invoke({"action": "echo"}).status == 200
    emulator.wait_for(lambda s: s["open_polls"] == 1, timeout=10)
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(10) == 0
    assert not printed_traceback(runtime.output())


@HANDLERS
def test_sigint_while_running_finishes_and_answers_first(emulator_factory, app, handler) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(timeout=30)
    runtime = start_runtime(emulator, app, handler, env={"AWS_LAMBDA_LOG_LEVEL": "INFO"})
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(emulator.invoke, {"action": "sleep", "seconds": 0.5}, timeout=20)
        wait_delivered(emulator, 1)
        runtime.send_signal(signal.SIGINT)  # Ctrl-C in `lmi-gevent local`
        result = pending.result(timeout=20)
    assert result.status == 200 and result.json() == {"slept": 0.5}
    assert runtime.wait(10) == 0
    assert "Stopped after answering the invocation in flight" in runtime.output()
    assert not printed_traceback(runtime.output())
    assert emulator.stats()["polls_opened_total"] == 1  # no poll after the signal


@HANDLERS
def test_signal_after_an_invocation_arrived_unread_still_answers_it(emulator_factory, app, handler) -> None:  # type: ignore[no-untyped-def]
    # The platform wrote an invocation to the socket, but the process had not been scheduled
    # to read it when the signal came (CI saw this as a lost invocation). SIGSTOP makes the
    # moment certain: the bytes wait in the socket buffer while the signal is pending.
    emulator = emulator_factory(timeout=30)
    runtime = start_runtime(emulator, app, handler, env={"AWS_LAMBDA_LOG_LEVEL": "INFO"})
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        os.kill(runtime.pid, signal.SIGSTOP)
        try:
            pending = pool.submit(emulator.invoke, {"action": "echo", "n": 1}, timeout=20)
            wait_delivered(emulator, 1)
            runtime.send_signal(signal.SIGINT)
        finally:
            os.kill(runtime.pid, signal.SIGCONT)
        result = pending.result(timeout=20)
    assert result.status == 200 and result.json() == {"action": "echo", "n": 1}, runtime.output()
    assert runtime.wait(10) == 0
    assert "Stopped after answering the invocation in flight" in runtime.output()
    assert not printed_traceback(runtime.output())
    assert emulator.stats()["polls_opened_total"] == 1


@HANDLERS
def test_second_signal_cuts_the_running_invocation_with_an_answer(emulator_factory, app, handler) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(timeout=60)
    runtime = start_runtime(emulator, app, handler)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(emulator.invoke, {"action": "sleep", "seconds": 30}, timeout=20)
        wait_delivered(emulator, 1)
        runtime.send_signal(signal.SIGTERM)
        time.sleep(0.2)  # let the first signal be handled before the second one
        runtime.send_signal(signal.SIGTERM)
        result = pending.result(timeout=20)
    assert runtime.wait(10) == 0
    assert result.json()["errorType"] == "Runtime.ShutdownBeforeAnswer"
    assert not printed_traceback(runtime.output())
