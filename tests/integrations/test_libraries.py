"""Other libraries with per-invocation state, 8 invocations at once (the table "Per-invocation
state" in docs/compatibility.md is built from these counts): structlog's contextvars and a
logging filter reading a context variable are per invocation as they are; a logging filter
added per invocation to a shared logger, a module-level LoggerAdapter whose extra is changed
per invocation, and Sentry's scope without a per-invocation isolation scope are not (the
real runtime gives Sentry's integration what it needs: test_sentry.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import run_python

pytestmark = pytest.mark.timeout(90)

PROBE = (Path(__file__).parent / "libraries_probe.py").read_text()


def test_logging_libraries_under_concurrency():
    pytest.importorskip("structlog")
    assert run_python(PROBE, "logging") == {
        "structlog_contextvars": 8,                 # each slot's context: isolated as is
        "logging_filter_reading_a_contextvar": 8,   # the fix for the next one
        "logging_filter_added_per_invocation": 1,   # every record gets the last filter's
        "logging_adapter_per_invocation": 8,        # the fix for the next one
        "logging_adapter_shared": 1,                # its extra is the last invocation's
    }


def test_sentry_lambda_integration_without_a_bootstrap_does_nothing_and_tags_leak():
    pytest.importorskip("sentry_sdk")
    # The integration looks for awslambdaric's bootstrap module to wrap the handler; without
    # one (this probe does not offer lmi-gevent's stand-in, see test_sentry.py), invocations
    # share the isolation scope set at init.
    assert run_python(PROBE, "sentry-integration") == {
        "own_tags": 1, "events": 8, "wrapped_by_integration": 0}


def test_sentry_serverless_decorator_gives_each_invocation_its_scope():
    pytest.importorskip("sentry_sdk")
    assert run_python(PROBE, "sentry-decorator") == {
        "own_tags": 8, "events": 8, "wrapped_by_integration": 0}
