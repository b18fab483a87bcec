"""How `lmi-gevent check` varies what invocations see, and its event/env options."""

from __future__ import annotations

import json

import pytest

from lmi_gevent.check import UsageError, parse_options
from lmi_gevent.check.events import probe_events, vary_event

pytestmark = pytest.mark.timeout(10)


def test_numbers_change_and_formats_stay():
    event = {"page": "3", "user": "user-42", "count": 7, "ok": True, "ratio": 0.5,
             "day": "2024-09-30", "at": "12:30", "version": "2.0", "ip": "10.0.0.1",
             "method": "GET", "items": [{"sku": "A1"}], "zero": "007"}
    changed: list[str] = []

    variant = vary_event(event, 1, "", changed)

    assert variant == {**event, "page": "4", "user": "user-43", "count": 8,
                       "items": [{"sku": "A2"}], "zero": "008"}
    assert changed == ["page", "user", "count", "items[0].sku", "zero"]


def test_a_single_event_gets_two_distinct_variants_and_the_report_says_where():
    probe = probe_events((b'{"page": "3"}',), vary=True)

    assert [json.loads(event) for event in probe.events] == [{"page": "3"}, {"page": "4"},
                                                             {"page": "5"}]
    assert probe.derived == 2 and probe.varied == ("page",)
    assert "numbers changed at page" in probe.how


def test_an_event_without_numbers_is_replayed_and_the_report_says_what_that_misses():
    probe = probe_events((b'{"user": "alice"}',), vary=True)

    assert probe.events == (b'{"user": "alice"}',) and probe.derived == 0
    assert "no number to vary" in probe.how and "--event" in probe.how


def test_several_events_are_taken_as_given():
    given = (b'{"a": 1}', b'{"a": 2}')
    probe = probe_events(given, vary=True)
    assert probe.events == given and probe.derived == 0


def test_no_variants_replays_the_event(tmp_path):
    assert probe_events((b'{"page": 3}',), vary=False).events == (b'{"page": 3}',)


def test_event_files_json_lines_and_env_pairs(tmp_path):
    one = tmp_path / "one.json"
    one.write_text('{\n  "a": 1\n}\n')
    lines = tmp_path / "many.jsonl"
    lines.write_text('{"a": 2}\n\n{"a": 3}\n')

    options = parse_options(["app.handler", "--root", str(tmp_path), "--event", str(one),
                             "--event", str(lines), "--env", "A=1", "--env", "B=x=y",
                             "--format", "json"])

    assert [json.loads(event) for event in options.events] == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert options.env == (("A", "1"), ("B", "x=y")) and options.json is True


@pytest.mark.parametrize("content, named", [
    ('{"a": 1}\nnot json\n', "line 2"),
    ("", "not a JSON document"),
])
def test_a_bad_events_file_names_the_flag_and_the_line(tmp_path, content, named):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    with pytest.raises(UsageError) as raised:
        parse_options(["app.handler", "--root", str(tmp_path), "--event", str(bad)])
    assert str(raised.value).startswith(f"--event {bad}") and named in str(raised.value)


def test_a_bad_env_pair_names_the_flag(tmp_path):
    with pytest.raises(UsageError, match="--env takes KEY=VALUE"):
        parse_options(["app.handler", "--root", str(tmp_path), "--env", "NOEQUALS"])
