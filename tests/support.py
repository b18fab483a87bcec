"""Helpers shared by the integration tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lmi_gevent.emulator.api import Emulator, RuntimeProcess

RUNTIME = [sys.executable, "-m", "lmi_gevent"]
OFFICIAL_RUNTIME = [sys.executable, "-m", "awslambdaric"]


def start_runtime(emulator: Emulator, root: Path, handler: str = "app.handler", *,
                  concurrency: int = 1, env: dict[str, str] | None = None,
                  argv: list[str] | None = None, wait: bool = True) -> RuntimeProcess:
    """Start lmi-gevent (or ``argv``) against ``emulator`` and wait for its polls."""
    full_env = dict(env or {})
    if concurrency > 1:
        full_env.setdefault("AWS_LAMBDA_MAX_CONCURRENCY", str(concurrency))
    runtime = emulator.start_runtime((argv or RUNTIME) + [handler], env=full_env, cwd=root)
    if wait:
        try:
            emulator.wait_for(lambda stats: stats["open_polls"] >= concurrency, timeout=20)
        except TimeoutError:
            raise AssertionError(f"runtime never polled; output:\n{runtime.output()}") from None
    return runtime


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
