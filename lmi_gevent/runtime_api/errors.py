"""Error bodies and X-Ray causes, in the shape the Lambda platform and the official client use."""

from __future__ import annotations

import os
import traceback
from types import TracebackType

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any

MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"
MARSHAL_ERROR = "Runtime.MarshalError"
CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"
CONFIGURATION_ERROR = "Runtime.ConfigurationError"
RESPONSE_TOO_LARGE = "Function.ResponseSizeTooLarge"
TIMEOUT_ERROR = "Sandbox.Timedout"
SHUTDOWN_ERROR = "Runtime.ShutdownBeforeAnswer"
WORKER_EXIT_ERROR = "Runtime.ExitError"  # the platform's own type when a runtime process dies
WEDGED_ERROR = "Runtime.WorkerWedged"  # a worker whose event loop stopped running answers with it
# Errors lmi-gevent answers that the official client never logs: they have no stack, so their
# log line has no (empty) traceback header, which it prints only for its own stackless faults.
OWN_STACKLESS_ERRORS = frozenset({RESPONSE_TOO_LARGE, TIMEOUT_ERROR, SHUTDOWN_ERROR,
                                  WORKER_EXIT_ERROR, CONFIGURATION_ERROR, WEDGED_ERROR})

# lmi_gevent itself (this file is in its runtime_api/ package)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

Frame = tuple[str, int, str, str]  # (path, line, function, source line)


class RuntimeFault(Exception):
    """A failure the runtime itself reports, with a ``Runtime.*`` error type."""

    def __init__(self, error_type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack = stack


def error_body(error_type: str, message: str, stack: list[str] | None,
               request_id: str = "") -> dict[str, Any]:
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id or "",
        "stackTrace": stack or [],
    }


def user_frames(tb: TracebackType | None) -> list[Frame]:
    """The traceback's frames, without the runtime's own frames that lead into user code."""
    frames = [(f.filename, f.lineno or 0, f.name, f.line or "") for f in traceback.extract_tb(tb)]
    for index, frame in enumerate(frames):
        if not frame[0].startswith(_PACKAGE_DIR):
            return frames[index:]
    return frames


def describe_exception(exc: BaseException, request_id: str = ""
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Error body and X-Ray cause for an exception raised by user code."""
    if isinstance(exc, RuntimeFault):
        body = error_body(exc.error_type, exc.message, exc.stack, request_id)
        return body, xray_cause("LambdaValidationError", exc.message, [])
    frames = user_frames(exc.__traceback__)
    error_type = type(exc).__name__
    message = _message_of(exc)
    stack = traceback.format_list(frames)
    return error_body(error_type, message, stack, request_id), xray_cause(error_type, message, frames)


def _message_of(exc: BaseException) -> str:
    # An exception whose __str__ raises must still be answered; worded as traceback prints it.
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - any failure of user code's __str__
        return "<exception str() failed>"


def xray_cause(error_type: str, message: str, frames: list[Frame]) -> dict[str, Any]:
    """The ``Lambda-Runtime-Function-XRay-Error-Cause`` document."""
    return {
        "working_directory": os.getcwd(),
        "exceptions": [{
            "message": message,
            "type": error_type,
            "stack": [{"label": name, "path": path, "line": line}
                      for path, line, name, _ in frames],
        }],
        "paths": sorted({path for path, _, _, _ in frames}),
    }
