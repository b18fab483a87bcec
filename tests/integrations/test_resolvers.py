"""Every Powertools event-handler resolver, made once at module level, under 8 concurrent
requests: each request reads its own ``current_event``, ``lambda_context`` and context with
lmi-gevent's isolation, and most read another request's without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import run_python

pytest.importorskip("aws_lambda_powertools")
pytestmark = pytest.mark.timeout(90)

PROBE = (Path(__file__).parent / "resolvers_probe.py").read_text()
RESOLVERS = {"rest", "http_api", "http_api_router", "function_url", "alb", "vpc_lattice", "vpc_lattice_v2",
             "bedrock_agent", "appsync", "appsync_events", "bedrock_agent_function"}


def test_every_resolver_request_reads_its_own_state_with_isolation():
    own = run_python(PROBE, "on")
    assert own == {name: 8 for name in RESOLVERS}


def test_without_isolation_every_resolver_mixes_requests_up():
    own = run_python(PROBE, "off")
    assert set(own) == RESOLVERS
    assert all(count < 8 for count in own.values()), own
