"""Property, against the real runtime over loopback: any event body with any content type
gets exactly one answer — the handler's, or ``Runtime.UnmarshalError`` worded as the official
client words it (simplejson) — and the runtime stays up, in both modes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import simplejson
from hypothesis import given, settings, strategies as st

from lmi_gevent.emulator.api import Emulator
from tests.support import start_runtime

pytestmark = pytest.mark.timeout(180)

APP = '''
def handler(event, context):
    if isinstance(event, bytes):
        return {"kind": "bytes", "size": len(event)}
    return {"kind": type(event).__name__}
'''
json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8).map(lambda value: json.dumps(value).encode())
bodies = json_bodies | st.binary(max_size=100) | json_bodies.map(lambda b: b[:-1])
caller_types = st.sampled_from(["application/json", "application/x-www-form-urlencoded", "",
                                "text/plain", "application/octet-stream"]) | \
    st.from_regex(r"[a-z]{1,8}/[a-z0-9.+-]{1,12}", fullmatch=True)
# Lambda's Invoke API delivers JSON: no type, or curl's form default, reaches the runtime as JSON.
JSON_TYPES = ("application/json", "application/x-www-form-urlencoded", "")


@pytest.fixture(scope="module", params=[1, 4], ids=["sequential", "concurrent"])
def live(request, tmp_path_factory) -> Iterator[Emulator]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("task")
    (root / "app.py").write_text(APP)
    with Emulator(concurrency=request.param, timeout=30) as emulator:
        runtime = start_runtime(emulator, root, concurrency=request.param)
        yield emulator
        assert runtime.returncode is None, runtime.output()  # alive after every example
        stats = emulator.stats()
        assert stats["timed_out"] == 0 and stats["answered"] == stats["invocations_received"]


@settings(max_examples=40)
@given(body=bodies, caller_type=caller_types)
def test_any_event_gets_one_clear_answer(live: Emulator, body: bytes, caller_type: str) -> None:
    result = live.invoke(body, content_type=caller_type)
    assert result.status == 200, result
    if caller_type not in JSON_TYPES:
        assert result.function_error is None and result.json() == {"kind": "bytes", "size": len(body)}
        return
    try:
        expected = simplejson.loads(body)
    except Exception as official:  # noqa: BLE001 - whatever the official client's decoder says
        assert result.function_error == "Unhandled", result
        error = result.json()
        assert error["errorType"] == "Runtime.UnmarshalError"
        assert error["errorMessage"] == f"Unable to unmarshal input: {official}"
    else:
        assert result.function_error is None and result.json() == {"kind": type(expected).__name__}
