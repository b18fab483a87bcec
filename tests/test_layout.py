"""The package's layout rules (tools/layout_check.py): no import cycle, no reach into another
module's private names, an emulator independent of the runtime. The checker itself is tested on
small packages made here."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("layout_check", ROOT / "tools" / "layout_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "lmi_gevent" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_package_has_no_import_cycle_and_no_private_reach() -> None:
    assert load_checker().problems() == []


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    root = write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import thing\n",
        "sub/__init__.py": "",
        "b.py": "def thing():\n    from .sub import c\n",
        "sub/c.py": "from .. import a\n",
    })
    assert load_checker().problems(root) == [
        "import cycle: lmi_gevent.a <-> lmi_gevent.b <-> lmi_gevent.sub.c"]


def test_imports_under_type_checking_make_no_cycle(tmp_path: Path) -> None:
    root = write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import thing\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n"
                "def thing(): ...\n",
    })
    assert load_checker().problems(root) == []


def test_private_names_of_another_module_are_found(tmp_path: Path) -> None:
    root = write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "_HIDDEN = 1\ndef _helper(): ...\n",
        "b.py": "from .a import _HIDDEN\n",
        "c.py": "from . import a\nvalue = a._helper()\nname = a.__name__\n",
    })
    assert load_checker().problems(root) == [
        "lmi_gevent.b imports the private _HIDDEN from lmi_gevent.a",
        "lmi_gevent.c reads the private lmi_gevent.a._helper (line 2)",
    ]


def test_the_emulator_may_not_import_the_runtime(tmp_path: Path) -> None:
    root = write_package(tmp_path, {
        "__init__.py": "",
        "streaming.py": "SEPARATOR = bytes(8)\n",
        "emulator/__init__.py": "",
        "emulator/wire.py": "",
        "emulator/relay.py": "from . import wire\nfrom ..streaming import SEPARATOR\n",
    })
    assert load_checker().problems(root) == [
        "lmi_gevent.emulator.relay imports lmi_gevent.streaming, outside the emulator"]
