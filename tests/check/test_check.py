"""`lmi-gevent check` end to end: the import probe and the real runtime on the emulator."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tests.support import in_ci

pytestmark = pytest.mark.timeout(60)

BLOCKING_APP = """
import ctypes

libc = ctypes.CDLL(None)


def handler(event, context):
    libc.usleep(300_000)
    return {"ok": True}
"""
BLOCKING_LINE = next(number for number, line in enumerate(BLOCKING_APP.splitlines(), start=1)
                     if "libc.usleep" in line)

REQUESTS_APP = """
import os

import requests

session = requests.Session()


def handler(event, context):
    return session.get(os.environ["SLOW_URL"], timeout=10).json()
"""

QUICK_APP = """
import sqlite3  # loaded, never used: a warning, not a blocker


def handler(event, context):
    return {"echo": event}
"""


def test_flags_a_handler_that_blocks_in_c(task_root, run_check):
    root = task_root(app=BLOCKING_APP)

    result = run_check("app.handler", "--root", root, "--json")

    assert result.code == 1, result.stdout
    report = result.report()
    assert report["ok"] is False
    assert set(result.kinds("blocker")) == {"stall", "no-overlap"}
    stall = report["run"]["stalls"][0]
    assert stall["site"] == f"{root / 'app.py'}:{BLOCKING_LINE}"
    assert stall["seconds"] >= 0.3
    assert stall["request_id"] in report["run"]["request_ids"][stall["phase"]]
    # Four invocations of 0.3 s in C run one after another: about 1.2 s, not 0.3 s.
    assert report["run"]["concurrent_seconds"] >= 4 * 0.3
    assert report["run"]["effective_concurrency"] < 2


def test_passes_a_requests_handler_against_a_slow_server(task_root, run_check, slow_server,
                                                         monkeypatch):
    monkeypatch.setenv("SLOW_URL", slow_server.url)
    root = task_root(app=REQUESTS_APP)

    result = run_check("app.handler", "--root", root, "--json")

    assert result.code == 0, result.stdout
    report = result.report()
    assert report["ok"] is True and report["findings"] == []
    assert report["run"]["stalls"] == [] and report["run"]["failed"] == []
    assert report["run"]["effective_concurrency"] > 2
    # The server saw the 4 concurrent invocations' requests at the same time.
    assert slow_server.requests == 1 + 1 + 1 + 4 + 4
    assert slow_server.max_in_flight == 4


def test_json_report_shape_and_warnings_do_not_fail(task_root, run_check, tmp_path):
    root = task_root(app=QUICK_APP)
    event = tmp_path / "event.json"
    event.write_text('{"order": 42}')

    result = run_check("app.handler", "--root", root, "--event", event, "--concurrency", 2,
                       "--json")

    assert result.code == 0, result.stdout
    report = result.report()
    assert set(report) == {"verdict", "handler", "root", "event", "concurrency",
                           "stall_threshold", "versions", "ok", "blockers", "warnings",
                           "findings", "import", "run", "workers"}
    assert (report["handler"], report["root"], report["event"]) == ("app.handler", str(root),
                                                                    str(event))
    assert report["verdict"] == "ready"
    assert report["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    # sqlite3 imported and never used: no finding, named as unused in the import section.
    assert (report["concurrency"], report["blockers"], report["warnings"]) == (2, 0, 0)
    assert report["findings"] == []
    assert set(report["import"]) == {"init_seconds", "error", "imported_before_patching",
                                     "non_cooperative", "hooks", "unused_risks"}
    assert report["import"]["hooks"]["settings"]["powertools_isolation"] is True
    assert [risk["module"] for risk in report["import"]["non_cooperative"]] == ["_sqlite3"]
    assert report["import"]["unused_risks"] == ["_sqlite3"]
    run = report["run"]
    assert run["invocations"] == {"warm_up": 1, "second": 1, "alone": 1, "concurrent": 2,
                                  "steady": 2}
    assert set(run) >= {"alone_seconds", "concurrent_seconds", "effective_concurrency",
                        "failed", "stalls", "request_ids", "shared_state", "small_pools",
                        "probe", "crash", "library_uses"}
    assert run["probe"]["derived"] == 2 and run["probe"]["varied"] == ["order"]


def test_human_report_names_the_stall_and_the_verdict(task_root, run_check):
    root = task_root(app=BLOCKING_APP)

    result = run_check("app.handler", "--root", root, "--concurrency", 2)

    assert result.code == 1
    assert "did NOT overlap" in result.stdout
    assert "blocked the event loop" in result.stdout
    assert f"{root / 'app.py'}:{BLOCKING_LINE} in handler" in result.stdout
    assert "libc.usleep(300_000)" in result.stdout
    assert result.stdout.rstrip().endswith("(2 blocker(s), 0 warning(s)).")


def test_report_names_the_worker_processes_and_that_globals_are_per_worker(task_root, run_check,
                                                                           monkeypatch):
    monkeypatch.setenv("LMI_GEVENT_WORKERS", "3")
    root = task_root(app=QUICK_APP)
    text = run_check("app.handler", "--root", root, "--concurrency", 7)
    assert "start 3 worker process(es) x 3/2 slot(s) (LMI_GEVENT_WORKERS=3)" in text.stdout
    assert "module globals, caches and clients are per worker process" in text.stdout
    report = run_check("app.handler", "--root", root, "--concurrency", 7, "--json").report()
    assert report["workers"] == {"count": 3, "setting": "3", "slots_per_worker": [3, 2, 2],
                                 "checked_with": 1}
    assert report["run"]["invocations"]["concurrent"] == 7  # measured in one process


@pytest.mark.parametrize("handler, source, error_type", [
    ("missing.handler", None, "Runtime.ImportModuleError"),
    ("app.nothere", "def handler(event, context):\n    return 1\n", "Runtime.HandlerNotFound"),
    ("app.handler", "raise LookupError('no DB_HOST')\n", "LookupError"),
])
def test_init_errors_fail_with_their_type(task_root, run_check, handler, source, error_type):
    root = task_root(**({"app": source} if source else {}))

    result = run_check(handler, "--root", root, "--json")

    assert result.code == 1
    report = result.report()
    assert report["import"]["error"]["errorType"] == error_type
    assert report["run"] is None  # nothing to run
    [finding] = report["findings"]
    assert finding["class"] == "init-error" and error_type in finding["message"]


def test_a_bad_setting_is_an_init_error_naming_it(task_root, run_check, monkeypatch):
    monkeypatch.setenv("LMI_GEVENT_DRAIN_TIMEOUT", "soon")
    root = task_root(app="def handler(event, context):\n    return 1\n")

    result = run_check("app.handler", "--root", root, "--json")

    assert result.code == 1
    error = result.report()["import"]["error"]
    assert error["errorType"] == "Runtime.ConfigurationError"
    assert "LMI_GEVENT_DRAIN_TIMEOUT" in error["errorMessage"]


def test_modules_imported_before_patching_are_named(task_root, run_check, tmp_path,
                                                    monkeypatch):
    early = tmp_path / "early"
    early.mkdir()
    (early / "sitecustomize.py").write_text("import ssl\n")
    monkeypatch.setenv("PYTHONPATH", str(early))
    root = task_root(app="def handler(event, context):\n    return 1\n")

    result = run_check("app.handler", "--root", root, "--concurrency", 2, "--json")

    report = result.report()
    assert report["import"]["imported_before_patching"] == ["ssl"]
    assert result.kinds("warning") == ["early-import"]
    assert result.code == 0


def test_missing_event_file_is_bad_usage_naming_event(task_root, run_check, tmp_path):
    root = task_root(app="def handler(event, context):\n    return 1\n")

    result = run_check("app.handler", "--root", root, "--event", tmp_path / "nope.json")

    assert result.code == 2
    assert result.stderr.startswith("lmi-gevent check: --event ")
    assert "nope.json" in result.stderr and result.stdout == ""


@pytest.mark.parametrize("argv, named", [
    (["app"], "HANDLER"),
    (["app.handler", "--event", "{BAD}"], "--event"),
    (["app.handler", "--concurrency", "1"], "--concurrency"),
    (["app.handler", "--concurrency", "four"], "--concurrency"),
    (["app.handler", "--threshold", "0"], "--threshold"),
    (["app.handler", "--root", "/nonexistent/dir"], "--root"),
])
def test_bad_usage_exits_2_naming_the_culprit(task_root, run_check, tmp_path, argv, named):
    root = task_root(app="def handler(event, context):\n    return 1\n")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    argv = [str(bad_json) if arg == "{BAD}" else arg for arg in argv]
    if "--root" not in argv:
        argv += ["--root", str(root)]

    result = run_check(*argv)

    assert result.code == 2
    assert named in result.stderr


def test_console_command_runs_check(task_root):
    root = task_root(app="def handler(event, context):\n    return {'ok': True}\n")

    done = subprocess.run([sys.executable, "-m", "lmi_gevent", "check", "app.handler",
                           "--concurrency", "2", "--json"], cwd=root, capture_output=True,
                          text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["root"] == str(root)
    assert report["run"]["invocations"]["concurrent"] == 2


def _mariadb_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 3306), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.services
def test_flags_mysqlclient(task_root, run_check):
    pytest.importorskip("MySQLdb", reason="mysqlclient is not installed")
    if not _mariadb_up():
        if in_ci():
            pytest.fail("MariaDB is not running on 127.0.0.1:3306 (required under CI)")
        pytest.skip("MariaDB is not running on 127.0.0.1:3306")
    root = task_root(app="""
        import MySQLdb


        def handler(event, context):
            connection = MySQLdb.connect(host="127.0.0.1", user="root", database="test")
            try:
                cursor = connection.cursor()
                cursor.execute("SELECT SLEEP(0.3)")
                return cursor.fetchall()[0][0]
            finally:
                connection.close()
        """)

    result = run_check("app.handler", "--root", root, "--json")

    assert result.code == 1, result.stdout
    assert result.kinds("warning") == ["non-cooperative"]
    assert "mysqlclient" in result.report()["findings"][-1]["message"]
    assert set(result.kinds("blocker")) == {"stall", "no-overlap"}
    stall = result.report()["run"]["stalls"][0]
    assert stall["site"].startswith(f"{root / 'app.py'}:")  # the handler's execute() line


GRPC_APP = """
import grpc

CHANNEL = grpc.insecure_channel("127.0.0.1:1")  # made at import, never called


def handler(event, context):
    return {"ok": True}
"""


def test_grpc_is_flagged_only_when_its_gevent_mode_is_off(task_root, run_check, monkeypatch):
    pytest.importorskip("grpc", reason="grpcio is not installed (it is in the test extra)")
    root = task_root(app=GRPC_APP)

    default = run_check("app.handler", "--root", root, "--json")
    monkeypatch.setenv("LMI_GEVENT_GRPC_GEVENT", "off")
    off = run_check("app.handler", "--root", root, "--json")

    assert default.code == 0 and default.report()["findings"] == [], default.stdout
    assert off.kinds("warning") == ["non-cooperative"], off.stdout
    assert "grpcio" in off.report()["findings"][0]["message"]
    assert "LMI_GEVENT_GRPC_GEVENT" in off.stdout


SHARED_STATE_APP = """
import os
import tempfile
import time

CLIENT = None        # made once, by the first invocation: fine
current_user = None  # per-invocation state in a module global: what check must name
SEEN = []            # changed in place, not rebound; but it keeps each invocation's user
os.environ["APP_MODE"] = "set once at import: fine"


def handler(event, context):
    global CLIENT, current_user
    if CLIENT is None:
        CLIENT = object()
        os.environ["APP_REGION"] = "set once by the first invocation: fine"
    current_user = event["user"]
    SEEN.append(current_user)
    os.environ["LAST_REQUEST"] = context.aws_request_id  # per invocation: named
    if event.get("chdir"):
        os.chdir(tempfile.mkdtemp())  # per invocation: named
    time.sleep(0.05)
    return {"user": current_user}
"""


def test_names_process_state_that_every_invocation_changes(task_root, run_check, tmp_path):
    root = task_root(app=SHARED_STATE_APP)
    event = tmp_path / "event.json"
    event.write_text('{"user": "u1", "chdir": true}')

    result = run_check("app.handler", "--root", root, "--event", str(event), "--json")

    assert result.code == 1, result.stdout  # shared state changes answers: blockers
    report = result.report()
    assert sorted((s["kind"], s["name"]) for s in report["run"]["shared_state"]) == [
        ("cwd", ""), ("env", "LAST_REQUEST"), ("global", "current_user"), ("value", "SEEN[1]")]
    assert sorted(result.kinds("blocker")) == ["shared-cwd", "shared-env", "shared-global",
                                               "shared-value"]
    messages = " ".join(f["message"] for f in report["findings"])
    assert "`current_user`" in messages and "`LAST_REQUEST`" in messages and "os.chdir" in messages


LEFT_STATE_APP = """
import time


class State:
    pass


class App:
    def __init__(self):
        self.state = State()
        self.settings = {"region": "us-east-1"}  # equal to an event value, not from it
        self.history = []


app = App()
PRICES = {}  # a plain cache: computed values keyed by event values


def handler(event, context):
    app.state.user_id = event["user"]["id"]        # per invocation: must be named
    app.history.append({"request": context.aws_request_id})  # per invocation: named
    PRICES[event["item"]] = len(event["item"]) * 10  # cache: fine
    time.sleep(0.05)
    return {"user": app.state.user_id, "price": PRICES[event["item"]]}
"""

CACHE_ONLY_APP = """
import time

CACHE = {}


class Client:
    def __init__(self):
        self.calls = 0
        self.region = "us-east-1"


client = Client()


def handler(event, context):
    client.calls += 1
    key = event["item"]
    if key not in CACHE:
        CACHE[key] = {"price": len(key) * 10, "fetched": time.time()}
    time.sleep(0.05)
    return CACHE[key]
"""


def test_names_invocation_values_left_in_module_level_objects(task_root, run_check, tmp_path):
    root = task_root(app=LEFT_STATE_APP)
    event = tmp_path / "event.json"
    event.write_text('{"user": {"id": "user-42"}, "item": "book", "region": "us-east-1"}')

    result = run_check("app.handler", "--root", root, "--event", str(event), "--json")

    assert result.code == 1, result.stdout  # blockers: they change answers
    left = {(s["name"].split("[")[0], s["source"]) for s in result.report()["run"]["shared_state"]
            if s["kind"] == "value"}
    assert left == {("app.state.user_id", "the event's user.id"),
                    ("app.history", "the request id")}, result.stdout
    finding = next(f for f in result.report()["findings"] if f["class"] == "shared-value"
                   and "app.state.user_id" in f["message"])
    # The second invocation (which check searches) had the first derived variant.
    assert "'user-43'" in finding["message"] and "contextvars" in finding["fix"]


def test_a_plain_shared_cache_is_not_reported(task_root, run_check, tmp_path):
    root = task_root(app=CACHE_ONLY_APP)
    event = tmp_path / "event.json"
    event.write_text('{"item": "book"}')

    result = run_check("app.handler", "--root", root, "--event", str(event), "--json")

    assert result.code == 0, result.stdout
    assert result.report()["run"]["shared_state"] == [], result.stdout
    assert result.kinds("warning") == [], result.stdout


POWERTOOLS_CHECK_APP = """
import time

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config

logger = Logger(service="shop")
DYNAMODB = boto3.client("dynamodb", region_name="us-east-1",
                        config=Config(max_pool_connections=2))  # below the slots: named


@logger.inject_lambda_context
def handler(event, context):
    time.sleep(0.05)
    logger.info("done")
    return {"ok": True}
"""


def test_report_names_active_isolation_hooks_and_a_small_pool(task_root, run_check,
                                                              monkeypatch):
    pytest.importorskip("aws_lambda_powertools")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    root = task_root(app=POWERTOOLS_CHECK_APP)

    result = run_check("app.handler", "--root", root, "--json")

    report = result.report()
    applied = report["import"]["hooks"]["applied"]
    assert applied["aws_lambda_powertools.logging.formatter"] == "powertools"
    assert applied["botocore.config"] == "pool_sizing"
    assert result.kinds("warning") == ["small-pool"], result.stdout  # no leak: isolated
    assert "max_pool_connections=2" in report["findings"][0]["message"]
    text = run_check("app.handler", "--root", root).stdout
    assert "Powertools state per invocation: on, active for aws_lambda_powertools." in text
    assert "connection pools sized for the slots: on, active for botocore.config" in text


def test_with_powertools_isolation_off_check_finds_the_logger_keys(task_root, run_check,
                                                                   monkeypatch):
    pytest.importorskip("aws_lambda_powertools")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("LMI_GEVENT_POWERTOOLS_ISOLATION", "off")
    root = task_root(app=POWERTOOLS_CHECK_APP)

    result = run_check("app.handler", "--root", root, "--json")

    places = {s["name"] for s in result.report()["run"]["shared_state"] if s["kind"] == "value"}
    assert "logger.logger_handler.formatter.log_format['function_request_id']" in places, \
        result.stdout
    assert "Powertools state per invocation: off" in run_check(
        "app.handler", "--root", root).stdout
