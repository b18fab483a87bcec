"""``module.function`` -> the handler callable, failing with the official init error types."""

from __future__ import annotations

import importlib
import sys

from ..runtime_api.errors import (
    BUILT_IN_MODULE_CONFLICT,
    HANDLER_NOT_FOUND,
    IMPORT_MODULE_ERROR,
    MALFORMED_HANDLER_NAME,
    USER_CODE_SYNTAX_ERROR,
    RuntimeFault,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable

    Handler = Callable[[Any, Any], Any]


def split_handler(name: str) -> tuple[str, str]:
    """``pkg/module.fn`` or ``pkg.module.fn`` -> (``pkg.module``, ``fn``)."""
    module, dot, function = name.rpartition(".")
    if not dot or not module:
        raise RuntimeFault(
            MALFORMED_HANDLER_NAME,
            f"Bad handler '{name}': expected 'module.function' (e.g. app.handler), "
            "with the module path relative to LAMBDA_TASK_ROOT")
    return module, function


def load_handler(name: str) -> Handler:
    """Import the handler's module and return the handler.

    Raises :class:`RuntimeFault` for the runtime's own init errors; any other exception raised
    by the module's top-level code propagates and is reported under its own class name.
    """
    module_path, function = split_handler(name)
    module_name = module_path.replace("/", ".")
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise RuntimeFault(BUILT_IN_MODULE_CONFLICT,
                           f"Cannot use built-in module {module_path} as a handler module")
    try:
        module = importlib.import_module(module_name)
    except ImportError as problem:
        raise RuntimeFault(IMPORT_MODULE_ERROR,
                           f"Unable to import module '{module_path}': {problem}") from problem
    except SyntaxError as problem:
        trace = [f'  File "{problem.filename}" Line {problem.lineno}\n    {problem.text}']
        raise RuntimeFault(USER_CODE_SYNTAX_ERROR,
                           f"Syntax error in module '{module_path}': {problem}", trace) from problem
    handler = getattr(module, function, None)
    if handler is None:
        raise RuntimeFault(HANDLER_NOT_FOUND,
                           f"Handler '{function}' missing on module '{module_path}'")
    if not callable(handler):
        raise RuntimeFault(HANDLER_NOT_FOUND,
                           f"Handler '{function}' on module '{module_path}' is not callable "
                           f"(it is a {type(handler).__name__})")
    return handler
