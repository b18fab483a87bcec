"""lmi_gevent.integrations.psycopg2: when the psycopg2 wait callback gets registered (each scenario in a
fresh patched interpreter, since it is about import state), and every caveat the module
documents, checked against PostgreSQL."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support import run_python

from .conftest import DriverRun, require_module

pytestmark = [pytest.mark.timeout(60)]


PATCHED = """\
from gevent import monkey; monkey.patch_all()
import json, sys
from lmi_gevent.integrations import hooks as import_hooks, psycopg2 as cooperation
def ours():
    import psycopg2.extensions
    return getattr(psycopg2.extensions.get_wait_callback(), "lmi_gevent", False)
def hooks():
    return sum(isinstance(f, import_hooks.PostImportHook) and f.name == "psycopg2"
               for f in sys.meta_path)
"""


def scenario(body: str) -> Any:
    return run_python(PATCHED + textwrap.dedent(body))


@pytest.fixture(autouse=True, scope="module")
def _psycopg2() -> None:
    require_module("psycopg2", "install the test extra: pip install -e '.[test]'")


def test_install_does_not_import_psycopg2() -> None:
    seen = scenario("""
        cooperation.install()
        print(json.dumps({"imported": "psycopg2" in sys.modules, "hooks": hooks()}))
    """)
    assert seen == {"imported": False, "hooks": 1}


def test_importing_psycopg2_after_install_registers_the_callback_and_removes_the_hook() -> None:
    seen = scenario("""
        cooperation.install()
        import psycopg2
        print(json.dumps({"ours": ours(), "hooks": hooks(),
                          "loader": type(psycopg2.__loader__).__name__,
                          "spec_loader": type(psycopg2.__spec__.loader).__name__}))
    """)
    # The package sees its real loader, not our wrapper.
    assert seen == {"ours": True, "hooks": 0, "loader": "SourceFileLoader",
                    "spec_loader": "SourceFileLoader"}


def test_importing_a_submodule_first_registers_the_callback() -> None:
    seen = scenario("""
        cooperation.install()
        import psycopg2.extras
        print(json.dumps({"ours": ours(), "hooks": hooks()}))
    """)
    assert seen == {"ours": True, "hooks": 0}


def test_psycopg2_imported_before_install_is_registered_at_once() -> None:
    seen = scenario("""
        import psycopg2
        cooperation.install()
        print(json.dumps({"ours": ours(), "hooks": hooks()}))
    """)
    assert seen == {"ours": True, "hooks": 0}


def test_a_wait_callback_chosen_by_the_handler_is_kept() -> None:
    seen = scenario("""
        import psycopg2.extensions
        def theirs(connection):
            raise AssertionError("never called here")
        psycopg2.extensions.set_wait_callback(theirs)
        cooperation.install()
        print(json.dumps({"kept": psycopg2.extensions.get_wait_callback() is theirs}))
    """)
    assert seen == {"kept": True}


def test_installing_twice_adds_one_hook() -> None:
    seen = scenario("""
        cooperation.install()
        cooperation.install()
        print(json.dumps({"hooks": hooks()}))
    """)
    assert seen == {"hooks": 1}


@pytest.mark.parametrize("concurrency,setting,registered", [
    (1, None, False),   # the classic loop: no gevent, so no gevent wait callback
    (2, None, True),    # concurrent mode: on by default
    (2, "off", False),  # the opt-out
])
def test_the_runtime_registers_the_callback_in_concurrent_mode_only(
        driver_run: DriverRun, concurrency: int, setting: str | None, registered: bool) -> None:
    env = {} if setting is None else {"LMI_GEVENT_PSYCOPG2_WAIT_CALLBACK": setting}
    driver_run.start("app_psycopg2_state.handler", env, concurrency=concurrency)
    assert driver_run.emulator is not None
    result = driver_run.emulator.invoke({})
    assert result.status == 200 and not result.function_error, result.body
    assert result.json() == {"wait_callback": registered, "ours": registered}


# --- the documented caveats, against PostgreSQL -------------------------------------------

@pytest.fixture(scope="module")
def caveats(postgres: str) -> dict[str, Any]:
    script = (Path(__file__).parent / "psycopg2_caveats.py").read_text()
    return run_python(script, postgres)


@pytest.mark.services
def test_named_cursors_work(caveats: dict[str, Any]) -> None:
    assert caveats["named_cursor"] == sum(range(1, 101))


@pytest.mark.services
def test_cancel_from_another_greenlet_stops_the_query_and_keeps_the_connection(
        caveats: dict[str, Any]) -> None:
    assert caveats["cancel"] == {"query": "QueryCanceled: canceling statement due to user request",
                                 "after": 1}


@pytest.mark.services
@pytest.mark.parametrize("check,method", [("copy_out", "copy_expert"), ("copy_in", "copy_from"),
                                          ("large_object", "lobject")])
def test_copy_and_large_objects_are_refused(caveats: dict[str, Any], check: str,
                                            method: str) -> None:
    assert caveats[check] == f"ProgrammingError: {method} cannot be used with an asynchronous callback."


@pytest.mark.services
def test_copy_works_again_without_the_callback(caveats: dict[str, Any]) -> None:
    assert caveats["copy_out_opted_out"] == "1\n2\n3\n"


@pytest.mark.services
def test_a_connection_shared_by_two_greenlets_fails_fast(caveats: dict[str, Any]) -> None:
    assert caveats["shared_connection"] == [
        "ProgrammingError: execute cannot be used while an asynchronous query is underway", "ok"]


@pytest.mark.services
def test_an_interrupted_query_closes_its_connection_and_runs_on_in_the_server(
        caveats: dict[str, Any]) -> None:
    assert caveats["interrupted"] == {"closed": 2,
                                      "next_use": "InterfaceError: connection already closed",
                                      "server_still_running": 1}


@pytest.mark.services
def test_connect_timeout_is_enforced(caveats: dict[str, Any]) -> None:
    assert caveats["connect_timeout"] == (
        "OperationalError: timeout expired: no connection within connect_timeout=1s")


@pytest.mark.services
def test_async_connections_are_unaffected(caveats: dict[str, Any]) -> None:
    assert caveats["async_connection"] == 42


@pytest.mark.services
def test_connections_made_before_install_cooperate(caveats: dict[str, Any]) -> None:
    assert caveats["made_before_install"] == {"connections": 3, "peak": 3}
