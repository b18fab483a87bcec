"""The Runtime API and Invoke API behaviour a runtime and a caller see, driven by hand."""

from __future__ import annotations

import json
import random
import re
import time
import uuid

import pytest

from lmi_gevent.emulator.api import Emulator

from .conftest import Answer, RuntimeConnection

pytestmark = pytest.mark.timeout(30)

MIB = 1024 * 1024


def test_invoke_round_trip_carries_every_next_header(emu, runtime_conn, background):
    before_ms = time.time() * 1000
    caller = background(emu.invoke, {"hello": "world"})
    inv = runtime_conn.next()
    assert json.loads(inv.body) == {"hello": "world"}
    headers = inv.headers
    assert uuid.UUID(inv.request_id).version == 4
    assert uuid.UUID(inv.invocation_id).version == 4
    assert inv.invocation_id != inv.request_id
    deadline = int(headers["lambda-runtime-deadline-ms"])
    assert before_ms + 9_000 <= deadline <= time.time() * 1000 + 10_000  # timeout=10 s
    assert headers["lambda-runtime-invoked-function-arn"] == "arn:aws:lambda:us-east-1:012345678912:function:function"
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0",
                        headers["lambda-runtime-trace-id"])
    assert headers["lambda-runtime-client-context"] == ""
    assert headers["lambda-runtime-cognito-identity"] == ""
    assert headers["content-type"] == "application/json"
    assert "lambda-runtime-aws-tenant-id" not in headers

    status, _ = runtime_conn.answer(inv, body=b"<ok/>", headers={"Content-Type": "application/xml"})
    assert status == 202
    result = caller.result(10)
    assert (result.status, result.body, result.function_error) == (200, b"<ok/>", None)
    assert result.headers["content-type"] == "application/xml"
    stats = emu.stats()
    assert (stats["dispatched"], stats["responses"], stats["answered"]) == (1, 1, 1)
    assert stats["status_codes"]["response"] == {"202": 1}
    assert emu.answers(1)[0]["invocation_id_echo"] == "ok"


def test_each_invocation_gets_a_fresh_trace_id(emu, fake_runtimes):
    runtime = fake_runtimes(emu)
    emu.invoke()
    emu.invoke()
    first, second = (d.headers["lambda-runtime-trace-id"] for d in runtime.received)
    assert first != second


def test_error_answer_sets_function_error_and_is_recorded(emu, runtime_conn, background):
    caller = background(emu.invoke)
    inv = runtime_conn.next()
    error = json.dumps({"errorType": "ValueError", "errorMessage": "boom", "requestId": inv.request_id,
                        "stackTrace": []}).encode()
    status, _ = runtime_conn.answer(inv, "error", error, {
        "Lambda-Runtime-Function-Error-Type": "ValueError",
        "Lambda-Runtime-Function-XRay-Error-Cause": json.dumps({"exceptions": []}),
    })
    assert status == 202
    result = caller.result(10)
    assert result.status == 200
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "ValueError"
    stats = emu.stats()
    assert (stats["errors"], stats["errors_with_type_header"], stats["errors_with_xray_cause"]) == (1, 1, 1)
    last = emu.answers(1)[0]
    assert (last["endpoint"], last["error_type_header"], last["xray_cause_present"]) == ("error", "ValueError", True)


def test_client_context_tenant_and_trace_pass_through(emu, fake_runtimes):
    runtime = fake_runtimes(emu)
    context = {"custom": {"k": "v\nwith a line break"}, "env": {"a": 1}, "client": {"app_title": "t"}}
    emu.invoke(client_context=context, tenant_id="tenant-7", trace_id="Root=1-abc;Sampled=1")
    headers = runtime.received[0].headers
    assert json.loads(headers["lambda-runtime-client-context"]) == context
    assert headers["lambda-runtime-aws-tenant-id"] == "tenant-7"
    assert headers["lambda-runtime-trace-id"] == "Root=1-abc;Sampled=1"


def test_bad_client_context_is_refused(emu):
    result = emu._request("POST", "/2015-03-31/functions/function/invocations", b"{}",
                          {"X-Amz-Client-Context": "not base64!"})
    assert result.status == 400
    assert result.json()["errorType"] == "InvalidRequestContentException"


def test_content_type_and_raw_body_pass_through(emu, fake_runtimes):
    runtime = fake_runtimes(emu)
    result = emu.invoke(b"\x00\xffraw", content_type="application/octet-stream")
    assert result.body == b"\x00\xffraw"
    assert runtime.received[0].headers["content-type"] == "application/octet-stream"


def test_unknown_and_duplicate_request_ids_get_400(emu, runtime_conn, background):
    caller = background(emu.invoke)
    inv = runtime_conn.next()
    status, body = runtime_conn.post(f"invocation/{uuid.uuid4()}/response")
    assert (status, json.loads(body)["errorType"]) == (400, "InvalidRequestID")
    assert runtime_conn.answer(inv)[0] == 202
    status, body = runtime_conn.answer(inv, "error")
    assert (status, json.loads(body)["errorType"]) == (400, "InvalidRequestID")
    assert caller.result(10).status == 200
    stats = emu.stats()
    assert stats["invalid_request_ids"] == 2
    assert stats["status_codes"]["error"] == {"400": 1}


def test_answer_after_deadline_gets_410_and_the_caller_a_timeout(emulator_factory, background):
    emu = emulator_factory(timeout=0.3)
    conn = RuntimeConnection(emu.runtime_api)
    caller = background(emu.invoke)
    inv = conn.next()
    result = caller.result(10)
    assert result.status == 200 and result.function_error == "Unhandled"
    assert result.json() == {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 0.30 seconds"}
    # On LMI a timed-out invocation keeps its slot until the runtime answers.
    assert emu.stats()["in_flight"] == 1
    status, body = conn.answer(inv)
    assert (status, json.loads(body)["errorType"]) == (410, "InvokeTimeout")
    stats = emu.stats()
    assert (stats["timed_out"], stats["late_answers"], stats["in_flight"]) == (1, 1, 0)
    assert conn.answer(inv)[0] == 400  # answered once already
    conn.hang_up()


def test_oversized_response_gets_413_and_the_caller_a_size_error(emu, runtime_conn, background):
    caller = background(emu.invoke)
    inv = runtime_conn.next()
    status, body = runtime_conn.answer(inv, body=b"x" * (6 * MIB + 101))
    assert (status, json.loads(body)["errorType"]) == (413, "RequestEntityTooLarge")
    result = caller.result(10)
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "Function.ResponseSizeTooLarge"
    assert emu.stats()["oversized_responses"] == 1


def test_response_at_the_size_limit_is_accepted(emu, runtime_conn, background):
    caller = background(emu.invoke)
    inv = runtime_conn.next()
    assert runtime_conn.answer(inv, body=b"x" * (6 * MIB + 100))[0] == 202
    assert len(caller.result(10).body) == 6 * MIB + 100


def test_oversized_error_gets_413_and_the_invocation_stays_open(emu, runtime_conn, background):
    caller = background(emu.invoke)
    inv = runtime_conn.next()
    assert runtime_conn.answer(inv, "error", b"e" * (MIB + 1))[0] == 413
    assert runtime_conn.answer(inv, "error", b'{"errorType":"Small"}')[0] == 202
    assert caller.result(10).json() == {"errorType": "Small"}
    assert emu.stats()["oversized_errors"] == 1


def test_wrong_invocation_id_gets_410_and_missing_one_is_counted(emu, runtime_conn, background):
    caller = background(emu.invoke)
    inv = runtime_conn.next()
    # Follows RIE's Managed Instances server: a wrong echo is a stale answer (410) and the
    # invocation stays open; a missing echo is accepted.
    status, _ = runtime_conn.answer(inv, headers={"Lambda-Runtime-Invocation-Id": "stale"}, echo_id=False)
    assert status == 410
    assert runtime_conn.answer(inv, echo_id=False)[0] == 202
    assert caller.result(10).status == 200
    stats = emu.stats()
    assert (stats["invocation_id_mismatches"], stats["invocation_id_missing"]) == (1, 1)
    assert [a["invocation_id_echo"] for a in emu.answers(2)] == ["mismatch", "missing"]


def test_init_error_fails_waiting_and_later_callers_and_a_second_one_gets_403(emu, runtime_conn, background):
    waiting = [background(emu.invoke) for _ in range(2)]
    emu.wait_for(lambda s: s["queued"] == 2)
    error = {"errorType": "Runtime.ImportModuleError", "errorMessage": "No module named 'app'",
             "requestId": "", "stackTrace": []}
    headers = {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"}
    assert runtime_conn.post("init/error", json.dumps(error).encode(), headers)[0] == 202
    for caller in waiting:
        result = caller.result(10)
        assert result.function_error == "Unhandled"
        assert result.json()["errorType"] == "Runtime.ImportModuleError"
    assert emu.invoke().json()["errorMessage"] == "No module named 'app'"
    status, body = runtime_conn.post("init/error", json.dumps(error).encode(), headers)
    assert (status, json.loads(body)["errorType"]) == (403, "InvalidStateTransition")
    stats = emu.stats()
    assert stats["init_error"]["type"] == "Runtime.ImportModuleError"
    assert json.loads(stats["init_error"]["body"]) == error
    assert stats["rejected_init_failed"] == 3
    assert stats["status_codes"]["init_error"] == {"202": 1, "403": 1}


def test_full_queue_answers_429_at_once(emulator_factory, background, fake_runtimes):
    emu = emulator_factory(queue=2)
    waiting = [background(emu.invoke, {"i": i}) for i in range(2)]
    emu.wait_for(lambda s: s["queued"] == 2)
    started = time.monotonic()
    rejected = emu.invoke()
    assert time.monotonic() - started < 5  # an answer, not a hang
    assert rejected.status == 429
    assert rejected.json()["errorType"] == "TooManyRequestsException"
    fake_runtimes(emu)
    assert sorted(f.result(10).json()["i"] for f in waiting) == [0, 1]
    stats = emu.stats()
    assert (stats["rejected_queue_full"], stats["max_queued"], stats["responses"]) == (1, 2, 2)
    assert stats["status_codes"]["invoke"] == {"200": 2, "429": 1}


def test_strict_mode_rejects_when_no_poll_is_open(emulator_factory, fake_runtimes):
    emu = emulator_factory(strict=True)
    rejected = emu.invoke()
    assert (rejected.status, rejected.json()["errorType"]) == (400, "Runtime.Unavailable")
    fake_runtimes(emu)
    emu.wait_for(lambda s: s["open_polls"] == 1)
    assert emu.invoke({"a": 1}).json() == {"a": 1}
    assert emu.stats()["rejected_unavailable"] == 1


def test_open_polls_are_counted_and_a_hung_up_poll_stops_counting(emu, background):
    conns = [RuntimeConnection(emu.runtime_api) for _ in range(3)]
    for conn in conns:
        conn.start_next()
    emu.wait_for(lambda s: s["open_polls"] == 3)
    conns[0].hang_up()
    stats = emu.wait_for(lambda s: s["open_polls"] == 2)
    assert stats["polls_disconnected"] == 1 and stats["max_open_polls"] == 3
    callers = [background(emu.invoke, {"n": n}) for n in range(2)]
    delivered = [conn.finish_next() for conn in conns[1:]]
    for conn, inv in zip(conns[1:], delivered, strict=True):
        assert conn.answer(inv, body=inv.body)[0] == 202
    assert sorted(c.result(10).json()["n"] for c in callers) == [0, 1]
    closes = emu.events(kind="poll_close")
    assert [e["reason"] for e in closes] == ["disconnect"]
    for conn in conns[1:]:
        conn.hang_up()


def test_caller_that_hangs_up_while_queued_is_dropped(emu, fake_runtimes):
    import http.client

    host, port = emu.invoke_url.split("//")[1].split(":")
    caller = http.client.HTTPConnection(host, int(port), timeout=10)
    caller.request("POST", "/2015-03-31/functions/function/invocations", body=b"{}")
    emu.wait_for(lambda s: s["queued"] == 1)
    caller.sock.close()
    caller.close()
    emu.wait_for(lambda s: s["queued"] == 0 and s["abandoned"] == 1)
    runtime = fake_runtimes(emu)
    assert emu.invoke({"x": 2}).json() == {"x": 2}
    assert [json.loads(d.body) for d in runtime.received] == [{"x": 2}]


def test_invocation_written_but_never_read_is_requeued(emu, fake_runtimes, background):
    doomed = RuntimeConnection(emu.runtime_api)
    doomed.start_next()
    emu.wait_for(lambda s: s["open_polls"] == 1)
    caller = background(emu.invoke, {"n": 1})
    emu.wait_for(lambda s: s["status_codes"]["next"].get("200") == 1)  # written to doomed
    doomed.hang_up()  # dies with the answer unread: its kernel resets the connection
    emu.wait_for(lambda s: s["requeued"] == 1 and s["queued"] == 1 and s["in_flight"] == 0)
    runtime = fake_runtimes(emu)
    assert caller.result(10).json() == {"n": 1}
    assert [json.loads(d.body) for d in runtime.received] == [{"n": 1}]
    requeue = emu.events(kind="requeue")
    assert len(requeue) == 1 and requeue[0]["request_id"] == runtime.received[0].request_id


def test_invocations_are_not_lost_when_polls_hang_up_as_they_arrive(emu, fake_runtimes, background):
    """Races a runtime's death against a dispatch many times: every invocation must still be
    answered through the surviving runtime, whichever side wins each race."""
    fake_runtimes(emu, slots=1)
    emu.wait_for(lambda s: s["open_polls"] == 1)
    jitter = random.Random(4)
    for round_ in range(30):
        doomed = RuntimeConnection(emu.runtime_api)
        doomed.start_next()
        emu.wait_for(lambda s: s["open_polls"] == 2)
        caller = background(emu.invoke, {"round": round_})
        time.sleep(jitter.random() * 0.001)
        doomed.hang_up()
        assert caller.result(10).json() == {"round": round_}
    stats = emu.stats()
    assert stats["responses"] == 30 and stats["timed_out"] == 0
    assert stats["polls_disconnected"] + stats["requeued"] >= 1


def test_fault_on_next_answers_the_status_then_polls_resume(emu, runtime_conn, background):
    emu.inject("next", status=500, count=2)
    assert runtime_conn.get_status("/2018-06-01/runtime/invocation/next") == 500
    assert runtime_conn.get_status("/2018-06-01/runtime/invocation/next") == 500
    caller = background(emu.invoke, {"ok": 1})
    inv = runtime_conn.next()
    assert runtime_conn.answer(inv, body=inv.body)[0] == 202
    assert caller.result(10).json() == {"ok": 1}
    stats = emu.stats()
    assert stats["status_codes"]["next"] == {"200": 1, "500": 2}
    assert stats["faults_applied"] == 2 and stats["faults_pending"] == {}


def test_fault_reset_on_response_drops_the_connection_and_keeps_the_invocation(emu, runtime_conn, background):
    import http.client

    emu.inject("response", reset=True)
    caller = background(emu.invoke, {"ok": 2})
    inv = runtime_conn.next()
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        runtime_conn.answer(inv, body=inv.body)
    assert emu.stats()["in_flight"] == 1
    retry = RuntimeConnection(emu.runtime_api)
    assert retry.answer(inv, body=inv.body)[0] == 202
    assert caller.result(10).json() == {"ok": 2}
    retry.hang_up()


def test_fault_status_on_error_and_init_error(emu, runtime_conn, background):
    emu.inject("error", status=502)
    emu.inject("init_error", status=500)
    caller = background(emu.invoke)
    inv = runtime_conn.next()
    assert runtime_conn.answer(inv, "error")[0] == 502
    assert runtime_conn.answer(inv, "error")[0] == 202
    assert caller.result(10).function_error == "Unhandled"
    assert runtime_conn.post("init/error")[0] == 500
    assert emu.stats()["init_error"] is None


def test_bad_fault_spec_is_refused(emu):
    with pytest.raises(ValueError):
        emu.inject("next")
    from lmi_gevent.emulator.api import EmulatorError

    with pytest.raises(EmulatorError, match="endpoint must be one of"):
        emu.inject("nope", status=500)


def test_max_in_flight_counts_n_busy_slots(emu, fake_runtimes):
    import threading

    release = threading.Event()

    def slow(inv):
        release.wait(10)
        return Answer(body=inv.body)

    fake_runtimes(emu, slots=4, handler=slow)
    emu.wait_for(lambda s: s["open_polls"] == 4)
    results = []
    thread = threading.Thread(target=lambda: results.extend(emu.invoke_many(range(8), parallel=8)))
    thread.start()
    emu.wait_for(lambda s: s["in_flight"] == 4 and s["queued"] == 4)
    release.set()
    thread.join(20)
    assert sorted(r.json() for r in results) == list(range(8))
    stats = emu.stats()
    assert (stats["max_in_flight"], stats["max_polls_plus_in_flight"], stats["capacity_exceeded"]) == (4, 4, 0)


def test_more_polls_than_n_are_flagged(emulator_factory, fake_runtimes):
    emu = emulator_factory(concurrency=2)
    fake_runtimes(emu, slots=3)
    stats = emu.wait_for(lambda s: s["open_polls"] == 3)
    assert stats["capacity_exceeded"] >= 1 and stats["max_polls_plus_in_flight"] == 3


def test_markers_split_the_timeline(emu):
    marker = emu.mark("signal sent")
    assert marker["kind"] == "marker" and marker["name"] == "signal sent"
    assert emu.events(since=marker["t"], kind="poll_open") == []
    conn = RuntimeConnection(emu.runtime_api)
    conn.start_next()
    emu.wait_for(lambda s: s["open_polls"] == 1)
    after = emu.events(since=marker["t"])
    assert [e["kind"] for e in after] == ["poll_open"]
    assert after[0]["t"] > marker["t"] and after[0]["t"] <= time.monotonic()
    conn.hang_up()


def test_reset_stats_zeroes_counters_and_keeps_present_state(emu, fake_runtimes):
    fake_runtimes(emu, slots=2)
    emu.wait_for(lambda s: s["open_polls"] == 2)
    emu.invoke()
    emu.wait_for(lambda s: s["open_polls"] == 2)  # the slot that answered polls again
    emu.reset_stats()
    stats = emu.stats()
    assert stats["dispatched"] == 0 and stats["polls_opened_total"] == 0
    assert stats["open_polls"] == 2 and stats["max_open_polls"] == 2
    assert emu.events() == [] and emu.answers() == []


def test_unknown_paths_get_404(emu, runtime_conn):
    assert runtime_conn.get_status("/2018-06-01/runtime/nothing") == 404
    assert runtime_conn.get_status("/2018-06-01/runtime/restore/next") == 404
    assert emu._request("GET", "/elsewhere").status == 404
    assert emu._request("GET", "/_lmi/nothing").status == 404
    stats = emu.stats()
    assert stats["status_codes"]["other"] == {"404": 3}


def test_event_invocations_are_accepted_without_waiting(emu, fake_runtimes):
    runtime = fake_runtimes(emu)
    result = emu._request("POST", "/2015-03-31/functions/function/invocations", b'{"e": 1}',
                          {"X-Amz-Invocation-Type": "Event"})
    assert result.status == 202
    emu.wait_for(lambda s: s["responses"] == 1)
    assert json.loads(runtime.received[0].body) == {"e": 1}


def test_cpu_time_is_reported(emu):
    stats = emu.stats()
    assert stats["cpu_user_seconds"] >= 0 and stats["cpu_system_seconds"] >= 0
    assert stats["uptime_seconds"] > 0


def test_emulator_fails_clearly_with_a_broken_interpreter(tmp_path):
    from lmi_gevent.emulator.api import EmulatorError

    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\nexit 3\n")
    fake_python.chmod(0o755)
    with pytest.raises(EmulatorError, match="exited with 3"):
        Emulator(python=str(fake_python))


def test_cognito_identity_and_chosen_request_id_pass_through(emu, fake_runtimes):
    runtime = fake_runtimes(emu)
    identity = {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1", "extra": "dropped"}
    result = emu.invoke(request_id="my-request-1", cognito_identity=identity)
    assert result.headers["x-amzn-requestid"] == "my-request-1"
    headers = runtime.received[0].headers
    assert headers["lambda-runtime-aws-request-id"] == "my-request-1"
    assert json.loads(headers["lambda-runtime-cognito-identity"]) == {
        "cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}


def test_a_request_id_already_live_is_refused(emu, background):
    first = background(emu.invoke, request_id="same")
    emu.wait_for(lambda s: s["queued"] == 1)
    second = emu.invoke(request_id="same")
    assert (second.status, second.json()["errorType"]) == (400, "DuplicatedInvokeId")
    conn = RuntimeConnection(emu.runtime_api)
    inv = conn.next()
    assert inv.request_id == "same"
    assert conn.answer(inv)[0] == 202
    assert first.result(10).status == 200
    conn.hang_up()


def test_emulator_process_exits_0_on_sigterm(emulator_factory):
    emu = emulator_factory()
    process = emu._process
    emu.stop()
    assert process.returncode == 0


def test_garbage_on_the_wire_gets_400_and_is_counted(emu):
    import socket

    host, port = emu.runtime_api.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert emu.stats()["bad_requests"] == 1


def test_chunked_and_expect_continue_bodies_are_read(emu, runtime_conn, background):
    import socket

    caller = background(emu.invoke)
    inv = runtime_conn.next()
    host, port = emu.runtime_api.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall((f"POST /2018-06-01/runtime/invocation/{inv.request_id}/response HTTP/1.1\r\n"
                      f"Lambda-Runtime-Invocation-Id: {inv.invocation_id}\r\n"
                      "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n").encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 202 ")
    assert caller.result(10).body == b"hello world"


@pytest.mark.parametrize("caller_type, runtime_type", [
    ("application/x-www-form-urlencoded", "application/json"),  # curl -d's default
    ("application/x-www-form-urlencoded; charset=utf-8", "application/json"),
    ("", "application/json"),
    ("application/json", "application/json"),
    ("text/plain", "text/plain"),  # named explicitly: passed through, as RIE does
])
def test_the_payload_reaches_the_runtime_as_json_unless_another_type_is_named(
        emu, runtime_conn, background, caller_type, runtime_type):
    caller = background(emu.invoke, b'{"a": 1}', content_type=caller_type)
    inv = runtime_conn.next()
    assert inv.headers["content-type"] == runtime_type
    assert runtime_conn.answer(inv, body=inv.body)[0] == 202
    assert caller.result(10).json() == {"a": 1}
