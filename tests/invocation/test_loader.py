from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lmi_gevent.runtime_api import errors
from lmi_gevent.invocation.loader import load_handler, split_handler


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def fault_of(name: str) -> errors.RuntimeFault:
    with pytest.raises(errors.RuntimeFault) as caught:
        load_handler(name)
    return caught.value


@pytest.mark.parametrize("name, expected", [("app.handler", ("app", "handler")),
                                            ("pkg.mod.fn", ("pkg.mod", "fn")),
                                            ("pkg/mod.fn", ("pkg/mod", "fn"))])
def test_handler_forms(name: str, expected: tuple[str, str]) -> None:
    assert split_handler(name) == expected


@pytest.mark.parametrize("name", ["handler", "", ".fn"])
def test_malformed_handler_name(name: str) -> None:
    fault = fault_of(name)
    assert fault.error_type == "Runtime.MalformedHandlerName" and f"'{name}'" in fault.message


def test_loads_module_function_and_nested_package_forms(modules: Path) -> None:
    (modules / "lg_app.py").write_text("def handler(e, c):\n    return 'flat'\n")
    (modules / "lg_pkg" / "sub").mkdir(parents=True)
    (modules / "lg_pkg" / "sub" / "mod.py").write_text("def fn(e, c):\n    return 'nested'\n")
    assert load_handler("lg_app.handler")(None, None) == "flat"
    assert load_handler("lg_pkg.sub.mod.fn")(None, None) == "nested"
    assert load_handler("lg_pkg/sub/mod.fn")(None, None) == "nested"


def test_missing_module_is_an_import_module_error(modules: Path) -> None:
    fault = fault_of("lg_nowhere.handler")
    assert fault.error_type == "Runtime.ImportModuleError"
    assert fault.message == "Unable to import module 'lg_nowhere': No module named 'lg_nowhere'"


def test_failing_import_inside_the_module_is_an_import_module_error(modules: Path) -> None:
    (modules / "lg_dep.py").write_text("import lg_not_installed\n")
    fault = fault_of("lg_dep.handler")
    assert fault.error_type == "Runtime.ImportModuleError" and "lg_not_installed" in fault.message


def test_syntax_error_is_a_user_code_syntax_error_with_location(modules: Path) -> None:
    (modules / "lg_syntax.py").write_text("def handler(e, c)\n    return 1\n")
    fault = fault_of("lg_syntax.handler")
    assert fault.error_type == "Runtime.UserCodeSyntaxError"
    assert fault.message.startswith("Syntax error in module 'lg_syntax': ")
    assert fault.stack and "lg_syntax.py\" Line 1" in fault.stack[0]


def test_missing_function_is_handler_not_found(modules: Path) -> None:
    (modules / "lg_nofn.py").write_text("x = 1\n")
    fault = fault_of("lg_nofn.handler")
    assert fault.error_type == "Runtime.HandlerNotFound"
    assert fault.message == "Handler 'handler' missing on module 'lg_nofn'"


def test_non_callable_handler_is_handler_not_found(modules: Path) -> None:
    (modules / "lg_notcallable.py").write_text("handler = 42\n")
    fault = fault_of("lg_notcallable.handler")
    assert fault.error_type == "Runtime.HandlerNotFound" and "not callable" in fault.message


def test_builtin_module_name_conflicts() -> None:
    fault = fault_of("sys.handler")
    assert fault.error_type == "Runtime.BuiltInModuleConflict"
    assert fault.message == "Cannot use built-in module sys as a handler module"


def test_other_exceptions_at_import_propagate_with_their_own_type(modules: Path) -> None:
    (modules / "lg_raises.py").write_text("raise RuntimeError('no config')\n")
    with pytest.raises(RuntimeError, match="no config"):
        load_handler("lg_raises.handler")
