"""The platform-side faults of the emulator (inject()): resets and closes around posts and
polls, probabilistic faults, and the count of repeated answers that tells a safe retry from
a second, different answer."""

from __future__ import annotations

import http.client

import pytest

from lmi_gevent.emulator.api import EmulatorError

from .conftest import RuntimeConnection

LOST = (ConnectionError, http.client.HTTPException)


def test_reset_after_accept_keeps_the_answer_and_a_repeat_is_refused(emu, runtime_conn, background):
    emu.inject("response", reset=True, accepted=True)
    caller = background(emu.invoke, {"ok": 1})
    inv = runtime_conn.next()
    with pytest.raises(LOST):
        runtime_conn.answer(inv, body=inv.body)
    assert caller.result(10).json() == {"ok": 1}  # taken before the connection was reset
    retry = RuntimeConnection(emu.runtime_api)
    assert retry.answer(inv, body=inv.body)[0] == 400  # the platform already has it
    retry.hang_up()
    stats = emu.stats()
    assert stats["responses"] == 1 and stats["repeated_answers"] == 1
    assert stats["repeated_answers_different"] == 0
    assert stats["faults_response_reset_accepted"] == 1


def test_a_different_second_answer_is_counted(emu, runtime_conn, background):
    caller = background(emu.invoke, {"ok": 2})
    inv = runtime_conn.next()
    assert runtime_conn.answer(inv, body=inv.body)[0] == 202
    assert runtime_conn.answer(inv, "error", body=b'{"errorType":"X"}')[0] == 400
    assert caller.result(10).json() == {"ok": 2}
    stats = emu.stats()
    assert stats["repeated_answers"] == 1 and stats["repeated_answers_different"] == 1


def test_close_after_202_answers_then_closes(emu, runtime_conn, background):
    emu.inject("response", close=True, accepted=True)
    caller = background(emu.invoke, {"ok": 3})
    inv = runtime_conn.next()
    assert runtime_conn.answer(inv, body=inv.body)[0] == 202
    assert caller.result(10).json() == {"ok": 3}
    # The server closed after the 202: the kept-alive connection fails on its next use.
    with pytest.raises(LOST):
        runtime_conn.next()


def test_close_before_next_answers_dispatches_nothing(emu, runtime_conn, background):
    emu.inject("next", close=True)
    with pytest.raises(LOST):
        runtime_conn.next()
    stats = emu.stats()
    assert stats["dispatched"] == 0 and stats["open_polls"] == 0
    assert stats["faults_next_close"] == 1
    fresh = RuntimeConnection(emu.runtime_api)
    caller = background(emu.invoke, {"ok": 4})
    inv = fresh.next()
    assert fresh.answer(inv, body=inv.body)[0] == 202
    assert caller.result(10).json() == {"ok": 4}
    fresh.hang_up()


def test_a_5xx_on_any_endpoint(emu, runtime_conn, background):
    emu.inject("invoke", status=503)
    assert emu.invoke({}).status == 503
    emu.inject("response", status=502)
    caller = background(emu.invoke, {"ok": 5})
    inv = runtime_conn.next()
    assert runtime_conn.answer(inv, body=inv.body)[0] == 502
    assert runtime_conn.answer(inv, body=inv.body)[0] == 202  # a 502 did not take the answer
    assert caller.result(10).json() == {"ok": 5}
    assert emu.stats()["repeated_answers"] == 0


def test_a_rate_fails_that_share_of_calls_until_cleared(emu, fake_runtimes):
    fake_runtimes(emu, slots=2)
    emu.inject("invoke", status=503, rate=0.25, seed=7)
    statuses = [emu.invoke({"i": i}).status for i in range(200)]
    failed = statuses.count(503)
    assert 20 < failed < 80 and statuses.count(200) == 200 - failed  # binomial(200, 0.25)
    assert emu.stats()["faults_pending"]["invoke"][0]["remaining"] is None
    emu.clear_faults()
    assert [emu.invoke({}).status for _ in range(20)] == [200] * 20


def test_bad_new_fault_specs_are_refused(emu):
    with pytest.raises(ValueError):
        emu.inject("next", reset=True, close=True)
    with pytest.raises(EmulatorError, match="accepted"):
        emu.inject("next", close=True, accepted=True)
    with pytest.raises(EmulatorError, match="rate"):
        emu.inject("next", status=500, rate=1.5)
