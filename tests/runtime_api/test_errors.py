from __future__ import annotations

import os
import sys

from lmi_gevent.runtime_api import errors


def raise_from_user_code() -> BaseException:
    namespace: dict = {}
    exec(compile("def user():\n    raise KeyError('missing')\n", "/var/task/app.py", "exec"), namespace)
    try:
        namespace["user"]()
    except KeyError as exc:
        return exc
    raise AssertionError("no exception")


def test_error_body_has_the_four_official_fields() -> None:
    body = errors.error_body("T", "m", None, "rid")
    assert body == {"errorMessage": "m", "errorType": "T", "requestId": "rid", "stackTrace": []}


def test_describe_exception_reports_type_message_and_user_frames() -> None:
    body, cause = errors.describe_exception(raise_from_user_code(), "rid-1")
    assert body["errorType"] == "KeyError" and body["errorMessage"] == "'missing'"
    assert body["requestId"] == "rid-1"
    assert body["stackTrace"][-1] == '  File "/var/task/app.py", line 2, in user\n'
    assert cause["exceptions"][0]["type"] == "KeyError"
    assert cause["exceptions"][0]["stack"][-1] == {"label": "user", "path": "/var/task/app.py", "line": 2}
    assert "/var/task/app.py" in cause["paths"]
    assert cause["working_directory"] == os.getcwd()


def test_runtime_frames_leading_into_user_code_are_trimmed() -> None:
    # The runtime frame that catches the exception comes first in a traceback; it is dropped.
    package_file = os.path.join(os.path.dirname(os.path.dirname(errors.__file__)), "invocation", "invoker.py")
    namespace: dict = {"sys": sys}
    exec(compile("def user():\n    raise ValueError('x')\n", "/var/task/app.py", "exec"), namespace)
    exec(compile("def call(f):\n    try:\n        f()\n    except ValueError:\n"
                 "        return sys.exc_info()[2]\n", package_file, "exec"), namespace)
    frames = errors.user_frames(namespace["call"](namespace["user"]))
    assert [f[0] for f in frames] == ["/var/task/app.py"]


def test_runtime_fault_is_described_as_a_validation_error() -> None:
    fault = errors.RuntimeFault("Runtime.MarshalError", "Unable to marshal response: x")
    body, cause = errors.describe_exception(fault, "rid")
    assert body["errorType"] == "Runtime.MarshalError" and body["stackTrace"] == []
    assert cause["exceptions"][0]["type"] == "LambdaValidationError"


def test_an_exception_whose_str_raises_is_still_described() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    try:
        raise Unprintable()
    except Unprintable as exc:
        body, cause = errors.describe_exception(exc, "rid")
    assert (body["errorType"], body["errorMessage"]) == ("Unprintable", "<exception str() failed>")
    assert cause["exceptions"][0]["message"] == "<exception str() failed>"
