"""hooks.PostImportHook on throwaway modules: it runs its function once, after the
module's code ran, never for other modules, survives a failed import and never breaks one."""

from __future__ import annotations

import importlib
import importlib.resources
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

import pytest

from lmi_gevent.integrations.hooks import PostImportHook

pytestmark = [pytest.mark.timeout(30)]


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Write a uniquely named package with ``__init__`` source; returns its name. Cleans up
    sys.path, sys.modules and any hook left in sys.meta_path."""
    name = f"hooked_{uuid.uuid4().hex}"
    sys.path.insert(0, str(tmp_path))
    hooks_before = list(sys.meta_path)

    def write(source: str) -> str:
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "__init__.py").write_text(source)
        (tmp_path / name / "data.txt").write_text("resource")
        importlib.invalidate_caches()
        return name

    yield write
    sys.path.remove(str(tmp_path))
    sys.meta_path[:] = hooks_before
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


def test_the_hook_sees_the_module_after_its_code_ran(package: Callable[[str], str]) -> None:
    name = package("VALUE = 42\n")
    seen: list[int] = []
    hook = PostImportHook(name, lambda module: seen.append(module.VALUE))
    hook.add()
    importlib.import_module(name)
    importlib.import_module(name)  # already imported: not run again
    assert seen == [42]
    assert hook not in sys.meta_path


def test_the_module_keeps_its_real_loader(package: Callable[[str], str]) -> None:
    name = package("")
    PostImportHook(name, lambda module: None).add()
    module = importlib.import_module(name)
    assert type(module.__loader__).__name__ == "SourceFileLoader"
    assert module.__spec__.loader is module.__loader__
    assert importlib.resources.files(module).joinpath("data.txt").read_text() == "resource"


def test_other_imports_are_left_alone(package: Callable[[str], str]) -> None:
    name = package("")
    seen: list[ModuleType] = []
    hook = PostImportHook(name, seen.append)
    hook.add()
    importlib.import_module("json.tool")
    assert seen == [] and hook in sys.meta_path


def test_a_failed_import_keeps_the_hook_for_the_next_attempt(
        package: Callable[[str], str]) -> None:
    name = package("raise RuntimeError('not yet')\n")
    seen: list[str] = []
    hook = PostImportHook(name, lambda module: seen.append(module.__name__))
    hook.add()
    with pytest.raises(RuntimeError, match="not yet"):
        importlib.import_module(name)
    assert seen == [] and hook in sys.meta_path
    package("")
    importlib.import_module(name)
    assert seen == [name] and hook not in sys.meta_path


def test_a_failing_hook_does_not_break_the_import(package: Callable[[str], str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    name = package("VALUE = 1\n")

    def broken(module: ModuleType) -> None:
        raise ValueError("hook bug")

    PostImportHook(name, broken).add()
    assert importlib.import_module(name).VALUE == 1
    assert "could not adapt" in caplog.text and "hook bug" in caplog.text


def test_a_module_nobody_can_find_is_still_not_found(package: Callable[[str], str]) -> None:
    missing = f"missing_{uuid.uuid4().hex}"
    PostImportHook(missing, lambda module: None).add()
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(missing)
