"""Powertools APIs beside those of the end-to-end test, 8 invocations at once: the Logger's
``thread_safe_*`` keys (import-time keys kept, a removal staying in its invocation), Metrics'
``log_metrics`` with default dimensions and metadata, and ``single_metric``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import run_python

pytest.importorskip("aws_lambda_powertools")
pytestmark = pytest.mark.timeout(90)

PROBE = (Path(__file__).parent / "powertools_probe.py").read_text()


def test_thread_safe_keys_metrics_and_single_metric_per_invocation_with_isolation():
    assert run_python(PROBE, "on") == {"thread_safe_keys": 8, "log_metrics_blobs": 8,
                                       "single_metric_blobs": 8}


def test_without_isolation_keys_and_metrics_leak_but_single_metric_does_not():
    # single_metric makes a provider per use: per invocation as it is. A thread_safe removal
    # before any append edits the import-time dict every slot's context shares.
    assert run_python(PROBE, "off") == {"thread_safe_keys": 1, "log_metrics_blobs": 0,
                                        "single_metric_blobs": 8}
