"""Shared fixtures: handler files in a temporary task root, an emulator, a runtime process."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable, Iterator

import pytest

from lmi_gevent.emulator.api import Emulator


@pytest.fixture
def task_root(tmp_path: Path) -> Callable[..., Path]:
    """Write handler modules into a fresh task root: ``task_root(app="def handler...")``."""
    root = tmp_path / "task"
    root.mkdir()

    def write(**modules: str) -> Path:
        for name, source in modules.items():
            path = root / (name.replace(".", "/") + ".py")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        return root

    return write


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def start(**options: object) -> Emulator:
        emulator = Emulator(**options)  # type: ignore[arg-type]
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
