from __future__ import annotations

import contextvars
import io
import json
import logging
import os
import re
import struct

import pytest

from lmi_gevent.invocation import logs
from lmi_gevent.invocation.context import REQUEST_ID, TENANT_ID


@pytest.fixture
def capture() -> logging.Logger:
    logger = logging.getLogger("lmi-gevent-test")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.handlers.clear()


def attach(logger: logging.Logger, formatter: logging.Formatter) -> io.StringIO:
    stream = io.StringIO()
    handler = logs.LambdaLogHandler(logs.StreamSink(stream))
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    return stream


def in_invocation(request_id: str | None, tenant: str | None, fn) -> None:  # type: ignore[no-untyped-def]
    def run() -> None:
        REQUEST_ID.set(request_id)
        TENANT_ID.set(tenant)
        fn()
    contextvars.Context().run(run)


def test_text_record_has_level_timestamp_request_id_and_message(capture: logging.Logger) -> None:
    stream = attach(capture, logs.TextFormatter())
    in_invocation("rid-1", None, lambda: capture.info("hello %s", "world"))
    assert re.fullmatch(r"\[INFO\]\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\trid-1\thello world\n", stream.getvalue())


def test_text_record_outside_an_invocation_has_an_empty_request_id(capture: logging.Logger) -> None:
    stream = attach(capture, logs.TextFormatter())
    in_invocation(None, None, lambda: capture.warning("boot"))
    assert stream.getvalue().split("\t")[2] == ""


def test_json_record_fields(capture: logging.Logger) -> None:
    stream = attach(capture, logs.JsonFormatter())
    in_invocation("rid-2", "tenant-x", lambda: capture.warning("careful", extra={"order": 7}))
    record = json.loads(stream.getvalue())
    assert record["level"] == "WARNING" and record["message"] == "careful"
    assert record["logger"] == "lmi-gevent-test" and record["requestId"] == "rid-2"
    assert record["tenantId"] == "tenant-x" and record["order"] == 7
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["timestamp"])
    assert "stackTrace" not in record and "location" not in record


def test_json_record_with_exception_and_dict_message(capture: logging.Logger) -> None:
    stream = attach(capture, logs.JsonFormatter())

    def log_it() -> None:
        try:
            raise ValueError("bad value")
        except ValueError:
            capture.exception({"event": "failed", "n": 1})
    in_invocation("rid-3", None, log_it)
    record = json.loads(stream.getvalue())
    assert record["message"] == {"event": "failed", "n": 1}
    assert record["errorType"] == "ValueError" and record["errorMessage"] == "bad value"
    assert record["level"] == "ERROR" and record["stackTrace"]
    assert record["location"].endswith(":log_it:" + str(record["location"].rsplit(":", 1)[1]))
    assert "tenantId" not in record


def test_custom_levels_fold_onto_standard_ones(capture: logging.Logger) -> None:
    stream = attach(capture, logs.JsonFormatter())
    in_invocation("r", None, lambda: capture.log(25, "between"))
    assert json.loads(stream.getvalue())["level"] == "INFO"


def read_frames(fd: int) -> list[tuple[int, int, str]]:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    frames = []
    while data:
        kind, length, micros = struct.unpack(">IIQ", data[:16])
        frames.append((kind, micros, data[16:16 + length].decode()))
        data = data[16 + length:]
    return frames


@pytest.mark.parametrize("json_format, per_level, expected", [
    (False, False, [0xA55A0003, 0xA55A0003, 0xA55A0017]),
    (False, True, [0xA55A000F, 0xA55A0013, 0xA55A0017]),
    (True, True, [0xA55A000E, 0xA55A0012, 0xA55A0016]),
])
def test_framed_sink_frame_types(json_format: bool, per_level: bool, expected: list[int]) -> None:
    read_end, write_end = os.pipe()
    sink = logs.FramedSink(write_end, json_format, per_level)
    sink.write("info line\n", logging.INFO)
    sink.write("warn line\n", logging.WARNING)
    logs.FunctionLog(sink, json_format).unhandled_error(
        {"errorMessage": "m", "errorType": "T", "requestId": "r", "stackTrace": ["  File \"a.py\", line 1, in f\n    x()\n"]})
    sink.close()
    frames = read_frames(read_end)
    os.close(read_end)
    assert [kind for kind, _, _ in frames] == expected
    assert frames[0][2] == "info line\n"
    assert all(abs(micros / 1e6 - frames[0][1] / 1e6) < 60 for _, micros, _ in frames)
    if not json_format:
        # In a frame the error keeps real newlines: a frame is one record already.
        assert frames[2][2].split("\n")[:2] == ["[ERROR] T: m", "Traceback (most recent call last):"]


def test_unhandled_error_text_is_one_line_joined_by_carriage_returns() -> None:
    stream = io.StringIO()
    logs.FunctionLog(logs.StreamSink(stream), json_format=False).unhandled_error(
        {"errorMessage": "boom", "errorType": "ValueError", "requestId": "r",
         "stackTrace": ['  File "/var/task/app.py", line 3, in handler\n    raise ValueError("boom")\n']})
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    assert text.split("\r") == ["[ERROR] ValueError: boom", "Traceback (most recent call last):",
                                '\u00a0\u00a0File "/var/task/app.py", line 3, in handler',
                                '\u00a0\u00a0\u00a0\u00a0raise ValueError("boom")\n']


def test_unhandled_error_json_is_one_record() -> None:
    stream = io.StringIO()
    logs.FunctionLog(logs.StreamSink(stream), json_format=True).unhandled_error(
        {"errorMessage": "boom", "errorType": "E", "requestId": "r", "stackTrace": []})
    record = json.loads(stream.getvalue())
    assert record["level"] == "ERROR" and record["errorType"] == "E" and record["requestId"] == "r"
    assert list(record)[:2] == ["timestamp", "level"]


@pytest.mark.parametrize("error_type, header", [
    ("Function.ResponseSizeTooLarge", False), ("Sandbox.Timedout", False),
    ("Runtime.ShutdownBeforeAnswer", False), ("Runtime.ExitError", False),
    # awslambdaric's own stackless faults: it prints the empty header, so we do too
    ("Runtime.MarshalError", True), ("Runtime.UnmarshalError", True)])
def test_a_stackless_error_line_has_the_traceback_header_only_where_the_official_client_has_it(
        error_type: str, header: bool) -> None:
    stream = io.StringIO()
    logs.FunctionLog(logs.StreamSink(stream), json_format=False).unhandled_error(
        {"errorMessage": "m", "errorType": error_type, "requestId": "r", "stackTrace": []})
    expected = [f"[ERROR] {error_type}: m"] + (["Traceback (most recent call last):"] if header else [])
    assert stream.getvalue().rstrip("\n").split("\r") == expected
