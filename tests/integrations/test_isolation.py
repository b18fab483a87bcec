"""InvocationAttribute: values written during an invocation belong to it; values written at
import are every invocation's starting point; containers are copied per invocation; class-level
assignments are per invocation too. Invocations are simulated by setting the request id."""

from __future__ import annotations

import abc
import contextvars
from typing import Any, Callable

import pytest

from lmi_gevent.invocation.context import REQUEST_ID
from lmi_gevent.integrations.isolation import deep_fork, isolate_attributes, isolate_class_attributes
from tests.support import run_python


def in_invocation(request_id: str, work: Callable[[], Any]) -> Any:
    """``work()`` as invocation ``request_id`` would run it: in a copy of the import-time
    context, with its request id set (what a slot does)."""
    def run() -> Any:
        REQUEST_ID.set(request_id)
        return work()

    return contextvars.copy_context().run(run)


def make_formatter() -> type:
    class Formatter:
        def __init__(self) -> None:
            self.keys = {"service": "shop"}
            self.level = "INFO"

    isolate_attributes(Formatter, ["keys", "level"])
    return Formatter


def test_import_time_values_are_seen_and_invocation_writes_stay_in_their_invocation():
    formatter = make_formatter()()
    formatter.keys["deployment"] = "blue"  # at import

    def invocation_a() -> dict:
        formatter.keys.update(request_id="a")
        formatter.level = "DEBUG"
        return dict(formatter.keys)

    assert in_invocation("a", invocation_a) == {"service": "shop", "deployment": "blue",
                                                "request_id": "a"}
    assert in_invocation("b", lambda: (dict(formatter.keys), formatter.level)) == (
        {"service": "shop", "deployment": "blue"}, "INFO")
    assert formatter.keys == {"service": "shop", "deployment": "blue"}  # outside: untouched


def test_a_new_request_id_in_the_same_context_starts_clean():
    formatter = make_formatter()()

    def two_invocations_in_one_slot() -> tuple[dict, dict]:
        REQUEST_ID.set("first")
        formatter.keys["request_id"] = "first"
        first = dict(formatter.keys)
        REQUEST_ID.set("second")
        return first, dict(formatter.keys)

    first, second = contextvars.copy_context().run(two_invocations_in_one_slot)
    assert first == {"service": "shop", "request_id": "first"}
    assert second == {"service": "shop"}


def test_what_the_handler_spawns_shares_its_invocation_state():
    formatter = make_formatter()()

    def handler_that_fans_out() -> tuple[str, str]:
        # the spawned work (a copy of the handler's context) touches the object first
        contextvars.copy_context().run(setattr, formatter, "level", "DEBUG")
        return formatter.level, in_invocation("other", lambda: formatter.level)

    assert in_invocation("a", handler_that_fans_out) == ("DEBUG", "INFO")


def test_objects_sharing_a_container_keep_sharing_it_within_an_invocation():
    shared: dict = {}

    class Front:
        def __init__(self) -> None:
            self.metric_set = shared

    class Provider:
        def __init__(self) -> None:
            self.metric_set = shared

    isolate_attributes(Front, ["metric_set"], deep_fork)
    isolate_attributes(Provider, ["metric_set"], deep_fork)
    front, provider = Front(), Provider()

    def add_through_one_read_through_the_other() -> dict:
        front.metric_set["Items"] = [1]
        return dict(provider.metric_set)

    assert in_invocation("a", add_through_one_read_through_the_other) == {"Items": [1]}
    assert shared == {}


def test_an_object_made_during_an_invocation_keeps_what_it_was_given():
    Formatter = make_formatter()
    made = in_invocation("a", Formatter)  # a lazily made object, published by invocation a
    assert in_invocation("b", lambda: made.keys) == {"service": "shop"}


def test_class_level_assignments_are_per_invocation():
    class BaseRouter(abc.ABC):  # Powertools' routers are ABCs: their metaclass can be derived
        current_event: Any

    class Resolver(BaseRouter):
        def resolve(self, event: str) -> str:
            BaseRouter.current_event = event
            return self.current_event

    isolate_class_attributes(BaseRouter, ["current_event"])
    app = Resolver()
    assert in_invocation("a", lambda: app.resolve("event-a")) == "event-a"

    def read_without_writing() -> Any:
        try:
            return app.current_event
        except AttributeError:
            return "none"

    assert in_invocation("b", read_without_writing) == "none"
    BaseRouter.current_event = "at import"
    assert in_invocation("c", lambda: (app.current_event, BaseRouter.current_event)) == (
        "at import", "at import")


HOOKS_PROBE = """
import json, sys
from lmi_gevent.integrations.monkey import patch_all
patch_all()
from lmi_gevent.config import Config
from lmi_gevent import integrations
integrations.install(Config(max_concurrency=4), 4)
import email.message  # a handler importing none of the adapted libraries
libraries = ("aws_lambda_powertools", "botocore", "requests", "urllib3")
before = sorted(name for name in libraries if name in sys.modules)
from lmi_gevent.integrations.hooks import APPLIED
untouched = dict(APPLIED)
from aws_lambda_powertools import Logger
import requests
print(json.dumps({"before": before, "applied_before": untouched,
                  "applied_after": sorted(APPLIED)}))
"""


def test_hooks_import_nothing_and_apply_when_the_handler_imports_the_library():
    pytest.importorskip("aws_lambda_powertools")
    seen = run_python(HOOKS_PROBE)
    assert seen["before"] == [] and seen["applied_before"] == {}
    assert {"aws_lambda_powertools.logging.formatter", "requests.adapters",
            "urllib3.poolmanager"} <= set(seen["applied_after"])
