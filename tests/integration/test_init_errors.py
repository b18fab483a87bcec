"""Init failures: posted once to /init/error with the type header, logged, exit non-zero."""

from __future__ import annotations

import pytest

from tests.support import init_error, start_runtime

pytestmark = pytest.mark.timeout(60)

MODULES = {
    "ok": "def handler(event, context):\n    return 'ok'\n",
    "broken_syntax": "def handler(event, context)\n    return 1\n",
    "broken_import": "import module_that_is_not_installed\n",
    "raises_at_import": "raise KeyError('SETTING_MISSING')\n",
    "exits_at_import": "import sys\nsys.exit(3)\n",
}

CASES = [
    ("nodot", "Runtime.MalformedHandlerName", "Bad handler 'nodot'"),
    ("missing_module.handler", "Runtime.ImportModuleError",
     "Unable to import module 'missing_module': No module named 'missing_module'"),
    ("broken_import.handler", "Runtime.ImportModuleError",
     "Unable to import module 'broken_import': No module named 'module_that_is_not_installed'"),
    ("ok.nothere", "Runtime.HandlerNotFound", "Handler 'nothere' missing on module 'ok'"),
    ("broken_syntax.handler", "Runtime.UserCodeSyntaxError", "Syntax error in module 'broken_syntax'"),
    ("sys.handler", "Runtime.BuiltInModuleConflict", "Cannot use built-in module sys as a handler module"),
    ("raises_at_import.handler", "KeyError", "'SETTING_MISSING'"),
    ("exits_at_import.handler", "SystemExit", "3"),
]


@pytest.mark.parametrize("handler, error_type, message", CASES, ids=[c[1] + ":" + c[0] for c in CASES])
def test_init_error_is_posted_once_logged_and_exits_non_zero(emulator_factory, task_root, handler, error_type,
                                                            message) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(timeout=10)
    runtime = start_runtime(emulator, task_root(**MODULES), handler, wait=False)
    assert runtime.wait(20) == 1, runtime.output()
    stats = emulator.stats()
    assert stats["status_codes"]["init_error"] == {"202": 1}
    assert stats["polls_opened_total"] == 0  # never polled after failing init
    posted_type, body = init_error(emulator)
    assert posted_type == error_type
    assert body["errorType"] == error_type and body["errorMessage"].startswith(message)
    assert body["requestId"] == "" and isinstance(body["stackTrace"], list)
    output = runtime.output()
    assert f"[ERROR] {error_type}: {message}" in output
    assert "LAMBDA_WARNING" in output
    # Callers learn about it too.
    result = emulator.invoke({})
    assert result.function_error == "Unhandled" and result.json()["errorType"] == error_type


def test_exception_at_import_keeps_the_user_stack(emulator_factory, task_root) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(timeout=10)
    runtime = start_runtime(emulator, task_root(**MODULES), "raises_at_import.handler", wait=False)
    runtime.wait(20)
    _, body = init_error(emulator)
    assert any("raises_at_import.py" in frame for frame in body["stackTrace"])
    assert not any("lmi_gevent" in frame for frame in body["stackTrace"][:1])


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1601", "2.5"])
def test_invalid_concurrency_is_an_init_error_naming_the_variable(emulator_factory, task_root, value) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(timeout=10)
    runtime = start_runtime(emulator, task_root(**MODULES), "ok.handler", wait=False,
                            env={"AWS_LAMBDA_MAX_CONCURRENCY": value})
    assert runtime.wait(20) == 1
    posted_type, body = init_error(emulator)
    assert posted_type == "Runtime.ConfigurationError"
    assert "AWS_LAMBDA_MAX_CONCURRENCY" in body["errorMessage"] and "1 to 1600" in body["errorMessage"]
    assert repr(value) in body["errorMessage"]
    assert "gevent" not in runtime.output().lower()  # reported before any patching


def test_invalid_http_base_path_is_an_init_error_naming_it(emulator_factory, task_root) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(timeout=10)
    runtime = start_runtime(emulator, task_root(**MODULES), "ok.handler", wait=False,
                            env={"AWS_LAMBDA_MAX_CONCURRENCY": "4", "LMI_GEVENT_HTTP_BASE_PATH": "/v1 beta"})
    assert runtime.wait(20) == 1
    posted_type, body = init_error(emulator)
    assert posted_type == "Runtime.ConfigurationError"
    assert "LMI_GEVENT_HTTP_BASE_PATH" in body["errorMessage"] and "'/v1 beta'" in body["errorMessage"]


def test_init_error_answered_403_is_tolerated(emulator_factory, task_root) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(timeout=10)
    emulator.inject("init_error", status=403)
    runtime = start_runtime(emulator, task_root(**MODULES), "missing_module.handler", wait=False,
                            env={"AWS_LAMBDA_LOG_LEVEL": "INFO"})
    assert runtime.wait(20) == 1
    output = runtime.output()
    assert "Init error already reported (403)" in output
    assert "Could not report" not in output and "Runtime API answered" not in output
