"""Powertools utilities that keep an invocation's state on a module-level object: Idempotency's
config (the registered Lambda context) and the batch processor (records, successes,
failures). 8 invocations at once: each its own with lmi-gevent's isolation, mixed without."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import run_python

pytest.importorskip("aws_lambda_powertools")
pytest.importorskip("jmespath")
pytestmark = pytest.mark.timeout(90)

PROBE = (Path(__file__).parent / "utilities_probe.py").read_text()


def test_idempotency_and_batch_state_is_per_invocation_with_isolation():
    assert run_python(PROBE, "on") == {"idempotency_context": 8, "batch_response": 8}


def test_without_isolation_idempotency_and_batch_state_is_shared():
    seen = run_python(PROBE, "off")
    assert seen["idempotency_context"] < 8 and seen["batch_response"] < 8, seen
