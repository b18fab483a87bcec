"""The runtime-side watch of `lmi-gevent check`, without processes: where globals are written,
and which module-level containers accumulate."""

from __future__ import annotations

import textwrap
import types

import pytest

from lmi_gevent.diagnostics.shared_state import GrowingContainers, global_writes

pytestmark = pytest.mark.timeout(10)

SOURCE = textwrap.dedent("""
    page = 0
    user = None


    def handler(event, context):
        global page
        page = event["page"]
        def inner():
            global user
            user = event["user"]
        inner()


    class Service:
        def reset(self):
            global page
            del page
""")


def _module(source: str, name: str = "watched_app") -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = f"/task/{name}.py"
    exec(compile(source, module.__file__, "exec"), vars(module))
    return module


def _line(text: str) -> str:
    number = next(n for n, line in enumerate(SOURCE.splitlines(), start=1) if text in line)
    return f"/task/watched_app.py:{number}"


def test_global_writes_name_each_site_in_functions_nested_code_and_methods():
    writes = global_writes(_module(SOURCE))

    assert {name: sorted(sites) for name, sites in writes.items()} == {
        "page": sorted([_line('page = event["page"]'), _line("del page")]),
        "user": [_line('user = event["user"]')]}


def test_a_cache_keyed_by_the_event_stops_growing_and_is_not_reported():
    module = _module("CACHE = {}\n")
    containers = GrowingContainers(module)
    for event in ({"k": 1}, {"k": 2}, {"k": 1}, {"k": 2}, {"k": 1}):
        new = containers.before(event)
        module.CACHE[event["k"]] = event["k"] * 10
        assert containers.after(new) == []


def test_an_accumulator_grows_on_replayed_events_and_is_reported_once():
    module = _module("LOG = []\n")
    containers = GrowingContainers(module)
    grown = []
    for event in ({"k": 1}, {"k": 1}, {"k": 1}, {"k": 1}):
        new = containers.before(event)
        module.LOG.append(f"seen {event['k']}")
        grown += containers.after(new)
        containers.reported.update(name for name, _, _ in grown)

    assert grown == [("LOG", 1, 2)]  # the first replay already grew it; reported once


def test_growth_while_a_new_event_is_in_flight_is_not_judged():
    module = _module("CACHE = {}\n")
    containers = GrowingContainers(module)
    containers.after(containers.before({"k": 1}))
    replay = containers.before({"k": 1})
    first_of_k2 = containers.before({"k": 2})  # still running when the replay ends
    module.CACHE[2] = 20
    assert containers.after(replay) == []
    assert containers.after(first_of_k2) == []
