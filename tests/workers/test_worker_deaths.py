"""The supervisor's verdict on a worker that died: init failure, replacement, or giving up.

Driven without worker processes: the dead worker is a record, the platform an emulator.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from lmi_gevent import config as settings
from lmi_gevent.emulator.api import Emulator
from lmi_gevent.workers import scoreboard
from lmi_gevent.workers.assignment import INIT_ERROR_EXIT, WEDGED_EXIT
from lmi_gevent.workers.supervisor import Supervisor, Worker

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    started = Emulator(timeout=10)
    yield started
    started.stop()


def supervisor(address: str, **env: str) -> Supervisor:
    config, problems = settings.load({"AWS_LAMBDA_RUNTIME_API": address,
                                      "AWS_LAMBDA_MAX_CONCURRENCY": "4",
                                      "LMI_GEVENT_WORKER_RESTART_INITIAL": "0.01", **env})
    assert not problems
    return Supervisor("app.handler", config, 2)


def dead(index: int, *, replacement: bool = False, lived: float = 0.0) -> Worker:
    worker = Worker(index, 2, SimpleNamespace(pid=4000 + index), replacement)  # type: ignore[arg-type]
    worker.started = time.monotonic() - lived
    return worker


def beat(board: Any, index: int) -> None:
    scoreboard.WorkerRecord(os.dup(board.fd), index, board.slot_tables[index]).beat()


def test_a_death_before_any_worker_served_is_one_init_error(emulator: Emulator) -> None:
    boss = supervisor(emulator.runtime_api)
    try:
        boss._worker_ended(dead(0), -signal.SIGSEGV)
        boss._worker_ended(dead(1), -signal.SIGSEGV)  # the other one too: nothing more posted
        assert boss.exit_code == 1 and not boss.due
        recorded = emulator.stats()["init_error"]
        assert recorded["type"] == "Runtime.ExitError"
        message = json.loads(recorded["body"])["errorMessage"]
        assert ("Runtime exited with error: signal: segmentation fault while loading the handler "
                "app.handler (worker 0") in message
        assert emulator.stats()["status_codes"]["init_error"] == {"202": 1}
    finally:
        boss.scoreboard.close()


@pytest.mark.parametrize("code", [0, 7, -signal.SIGKILL])
def test_a_death_after_some_worker_served_is_replaced_not_reported(emulator: Emulator, code: int) -> None:
    boss = supervisor(emulator.runtime_api)
    try:
        beat(boss.scoreboard, 1)  # worker 1 reached serving: init is over
        boss._worker_ended(dead(0), code)
        assert boss.exit_code is None and 0 in boss.due
        assert emulator.stats()["init_error"] is None
    finally:
        boss.scoreboard.close()


def test_a_first_worker_that_reported_its_init_error_stops_all_without_a_second_post(emulator: Emulator) -> None:
    boss = supervisor(emulator.runtime_api)
    try:
        boss._worker_ended(dead(0), INIT_ERROR_EXIT)
        assert boss.exit_code == 1
        assert emulator.stats()["init_error"] is None  # the worker posts it, not the supervisor
    finally:
        boss.scoreboard.close()


def test_replacements_dying_young_make_it_give_up_after_the_limit(emulator: Emulator, caplog: Any) -> None:
    boss = supervisor(emulator.runtime_api, LMI_GEVENT_WORKER_RESTART_LIMIT="2")
    try:
        beat(boss.scoreboard, 1)
        caplog.set_level(logging.ERROR, logger="lmi_gevent")
        for attempt in range(1, 4):
            boss._worker_ended(dead(0, replacement=True), -signal.SIGSEGV)
            assert boss.exit_code == (1 if attempt == 3 else None), attempt
        giving_up = [r.getMessage() for r in caplog.records if "Giving up" in r.getMessage()]
        assert giving_up == ["Giving up: worker 0 died young 3 times in a row (last: killed by "
                             "SIGSEGV); exiting 1 so the platform replaces the execution "
                             "environment (LMI_GEVENT_WORKER_RESTART_LIMIT=2)."]
    finally:
        boss.scoreboard.close()


def test_a_worker_that_lived_and_served_resets_the_count(emulator: Emulator) -> None:
    boss = supervisor(emulator.runtime_api, LMI_GEVENT_WORKER_RESTART_LIMIT="2",
                      LMI_GEVENT_WORKER_RESTART_MAX="0.05")
    try:
        for _ in range(5):
            boss._worker_ended(dead(0, replacement=True), 1)
            boss.young_deaths[0] = min(boss.young_deaths[0], 2)  # stay at the edge
            beat(boss.scoreboard, 0)
            boss._worker_ended(dead(0, replacement=True, lived=1.0), 1)  # lived and served
            assert boss.young_deaths[0] == 0 and boss.exit_code is None
    finally:
        boss.scoreboard.close()


def test_a_worker_that_left_because_it_was_wedged_is_replaced_at_once(emulator: Emulator) -> None:
    boss = supervisor(emulator.runtime_api, LMI_GEVENT_WORKER_RESTART_LIMIT="1")
    try:
        beat(boss.scoreboard, 0)
        for _ in range(3):  # a wedge needs an invocation: it never counts as a crash loop
            boss._worker_ended(dead(0, replacement=True), WEDGED_EXIT)
        assert boss.exit_code is None and boss.young_deaths[0] == 0
        assert boss.due[0] - time.monotonic() < 1.0
    finally:
        boss.scoreboard.close()


@pytest.mark.parametrize(("code", "words"), [
    (-signal.SIGSEGV, "signal: segmentation fault"), (-signal.SIGKILL, "signal: killed"),
    (-signal.SIGABRT, "signal: aborted"), (-signal.SIGBUS, "signal: bus error"),
    (3, "exit status 3"), (0, "exit status 0"),
])
def test_a_workers_end_is_told_in_the_platforms_words(code: int, words: str) -> None:
    # What Lambda's own ExitError messages print (a Go process state), so that a dead
    # worker's answers read like the platform's for a dead runtime.
    from lmi_gevent.workers.supervisor import exit_error

    assert exit_error(code) == words
