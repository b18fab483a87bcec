"""The runtimes under test and how each is started against the emulator.

All get the same handler module, the same environment and the same command shape
(``python -m <runtime> bench.handlers.<function>``); only the module differs, and for
lmi-gevent the worker processes: ``lmi-gevent`` is one process (LMI_GEVENT_WORKERS=1),
``lmi-gevent K=auto`` one worker per usable CPU.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import metadata


@dataclass(frozen=True)
class Runtime:
    """A runtime interface client as the bench starts it."""

    name: str  # as it appears in the tables
    module: str  # run with ``python -m``
    distribution: str  # for the version in the report
    env: dict[str, str] = field(default_factory=dict)  # on top of environment()

    def argv(self, handler: str) -> list[str]:
        return [sys.executable, "-m", self.module, handler]

    def version(self) -> str:
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return "not installed"


LMI_GEVENT = Runtime("lmi-gevent", "lmi_gevent", "lmi-gevent", {"LMI_GEVENT_WORKERS": "1"})
LMI_WORKERS = Runtime("lmi-gevent K=auto", "lmi_gevent", "lmi-gevent",
                      {"LMI_GEVENT_WORKERS": "auto"})
AWSLAMBDARIC = Runtime("awslambdaric", "awslambdaric", "awslambdaric")
RUNTIMES = (LMI_GEVENT, LMI_WORKERS, AWSLAMBDARIC)
SEQUENTIAL_RUNTIMES = (LMI_GEVENT, AWSLAMBDARIC)  # no workers without concurrency


def order(round_number: int, runtimes: tuple[Runtime, ...] = RUNTIMES) -> tuple[Runtime, ...]:
    """A/B, then B/A: whichever runs first in a round does not always meet the same
    state of a shared, noisy machine (caches, another tenant's burst)."""
    return runtimes if round_number % 2 == 0 else runtimes[::-1]


def environment(concurrency: int | None) -> dict[str, str]:
    """Variables on top of the emulator's usual Lambda ones.

    ``concurrency`` None is classic Lambda (one invocation at a time); a number is a
    Managed Instances environment with AWS_LAMBDA_MAX_CONCURRENCY=N.
    """
    env = {
        # The fetch handler talks to 127.0.0.1 only; a proxy from the caller's shell
        # must not capture those requests (or send them off the machine).
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    if concurrency is not None:
        env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(concurrency)
        env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "lambda-managed-instances"
    return env
