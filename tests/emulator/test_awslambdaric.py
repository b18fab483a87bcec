"""End to end against the official runtime (awslambdaric), to keep the emulator honest."""

from __future__ import annotations

import sys
import textwrap

import pytest

pytest.importorskip("awslambdaric")
pytestmark = pytest.mark.timeout(60)

HANDLER = textwrap.dedent('''
    import time

    def echo(event, context):
        custom = context.client_context.custom if context.client_context else None
        return {"event": event, "request_id": context.aws_request_id, "custom": custom,
                "tenant": getattr(context, "tenant_id", None),
                "arn": context.invoked_function_arn}

    def fail(event, context):
        raise ValueError("bad input")

    def slow(event, context):
        time.sleep(0.3)
        return event
''')


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "app.py").write_text(HANDLER)
    return tmp_path


def start_ric(emu, app_dir, handler, env=None):
    return emu.start_runtime([sys.executable, "-m", "awslambdaric", handler], cwd=app_dir,
                             env={"LAMBDA_TASK_ROOT": str(app_dir), **(env or {})})


def test_awslambdaric_round_trip_with_context(emulator_factory, app_dir):
    emu = emulator_factory(timeout=10)
    runtime = start_ric(emu, app_dir, "app.echo")
    result = emu.invoke({"n": 1}, client_context={"custom": {"user": "u1"}}, tenant_id="t-1")
    assert result.status == 200, runtime.output()
    body = result.json()
    assert body["event"] == {"n": 1}
    assert body["custom"] == {"user": "u1"}
    assert body["tenant"] == "t-1"
    assert body["arn"].endswith(":function:function")
    answer = emu.answers(1)[0]
    assert answer["request_id"] == body["request_id"]
    assert answer["invocation_id_echo"] == "ok"


def test_awslambdaric_error_reaches_the_caller(emulator_factory, app_dir):
    emu = emulator_factory(timeout=10)
    start_ric(emu, app_dir, "app.fail")
    result = emu.invoke({})
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "ValueError"
    assert result.json()["errorMessage"] == "bad input"
    answer = emu.answers(1)[0]
    # The official client's native transport sends no Error-Type header on invocation errors.
    assert answer["error_type_header"] is None
    assert answer["xray_cause_present"] is True


def test_awslambdaric_init_error_is_recorded_once(emulator_factory, app_dir):
    emu = emulator_factory(timeout=10)
    runtime = start_ric(emu, app_dir, "missing_module.handler")
    stats = emu.wait_for(lambda s: s["init_error"] is not None, timeout=20)
    assert stats["init_error"]["type"] == "Runtime.ImportModuleError"
    assert runtime.wait(20) != 0
    result = emu.invoke()
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "Runtime.ImportModuleError"


def test_awslambdaric_concurrent_workers_stay_within_n(emulator_factory, app_dir):
    emu = emulator_factory(concurrency=3, timeout=10)
    start_ric(emu, app_dir, "app.slow", env={"AWS_LAMBDA_MAX_CONCURRENCY": "3"})
    emu.wait_for(lambda s: s["open_polls"] == 3, timeout=30)
    results = emu.invoke_many([{"i": i} for i in range(9)], parallel=9)
    assert sorted(r.json()["i"] for r in results) == list(range(9))
    stats = emu.stats()
    assert stats["max_in_flight"] == 3
    assert stats["capacity_exceeded"] == 0
    assert stats["invocation_id_missing"] == 0 and stats["invocation_id_mismatches"] == 0
