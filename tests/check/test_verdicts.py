"""The judgement parts of `lmi-gevent check`, without processes: overlap and module risks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lmi_gevent.check import loaded_risks, overlap_verdict

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("alone, together, expected", [
    (0.30, 0.31, True),    # 4 at once took as long as one: they overlapped
    (0.30, 0.74, True),    # some queueing, still well under the half-way line (0.75)
    (0.30, 0.76, False),   # past half-way between 1x and 4x
    (0.30, 1.21, False),   # one after another
    (0.001, 0.004, None),  # too quick to tell
    (None, 0.5, None),     # a phase timed out
    (0.3, None, None),
])
def test_overlap_is_judged_against_one_invocation_alone(alone, together, expected):
    run = {"alone_seconds": alone, "concurrent_seconds": together}
    assert overlap_verdict(run, 4) is expected


def _psycopg2(wait_callback: object) -> SimpleNamespace:
    return SimpleNamespace(extensions=SimpleNamespace(get_wait_callback=lambda: wait_callback))


def test_psycopg2_is_a_risk_only_without_a_wait_callback():
    assert [r["module"] for r in loaded_risks({"psycopg2": _psycopg2(None)})] == ["psycopg2"]
    assert loaded_risks({"psycopg2": _psycopg2(lambda connection: None)}) == []


def test_each_loaded_risk_is_named_with_its_fix():
    found = loaded_risks({"MySQLdb": object(), "requests": object(), "_sqlite3": object()})
    assert [risk["module"] for risk in found] == ["MySQLdb", "_sqlite3"]
    assert "PyMySQL" in found[0]["fix"] and found[0]["library"] == "mysqlclient (MySQLdb)"


def test_a_module_that_cannot_be_inspected_counts_as_blocking():
    broken = SimpleNamespace(extensions=SimpleNamespace(get_wait_callback=lambda: 1 / 0))
    assert [r["module"] for r in loaded_risks({"psycopg2": broken})] == ["psycopg2"]
