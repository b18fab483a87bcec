"""Run as a script by test_libraries.py: libraries with per-invocation state, 8 invocations at
once on greenlets started as lmi-gevent's slots are (each in a copy of the main context, with
its request id set). Prints, per case, how many of the 8 saw only their own values.
argv[1] picks the case family: "logging" (structlog, logging filters and adapters),
"sentry-integration" or "sentry-decorator"."""

from __future__ import annotations

import json
import logging
import sys

from lmi_gevent.integrations.monkey import patch_all

patch_all()

import gevent  # noqa: E402

from lmi_gevent.invocation.context import REQUEST_ID  # noqa: E402

INVOCATIONS = 8


def run(case: object) -> int:
    """Run ``case(marker)`` 8 times at once; how many returned True (saw only their own)."""
    def invocation(marker: str) -> bool:
        REQUEST_ID.set(f"req-{marker}")
        return bool(case(marker))

    jobs = [gevent.spawn(invocation, f"m{n}") for n in range(INVOCATIONS)]
    gevent.joinall(jobs, raise_error=True)
    return sum(job.value for job in jobs)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def logging_cases() -> dict[str, int]:
    import contextvars

    import structlog

    lines: list[dict] = []
    structlog.configure(processors=[structlog.contextvars.merge_contextvars,
                                    lambda _, __, event: lines.append(event) or ""],
                        logger_factory=structlog.ReturnLoggerFactory())
    log = structlog.get_logger()

    def structlog_contextvars(marker: str) -> bool:
        structlog.contextvars.clear_contextvars()  # as structlog says, at each request's start
        structlog.contextvars.bind_contextvars(order=marker)
        gevent.sleep(0.05)
        log.info("done", marker=marker)
        return all(line["order"] == marker for line in lines if line["marker"] == marker)

    shared = logging.getLogger("shop")
    shared.propagate = False
    shared.setLevel(logging.INFO)
    records = Records()
    shared.addHandler(records)

    class OrderFilter(logging.Filter):  # made per invocation, added to a shared logger
        def __init__(self, order: str) -> None:
            super().__init__()
            self.order = order

        def filter(self, record: logging.LogRecord) -> bool:
            record.order = self.order
            return True

    def filter_per_invocation(marker: str) -> bool:
        own = OrderFilter(marker)
        shared.addFilter(own)
        gevent.sleep(0.05)
        shared.info("done %s", marker)
        shared.removeFilter(own)
        return _own(records, marker)

    order: contextvars.ContextVar[str | None] = contextvars.ContextVar("order", default=None)

    class ContextOrderFilter(logging.Filter):  # one, reading a context variable: the fix
        def filter(self, record: logging.LogRecord) -> bool:
            record.order = order.get()
            return True

    def contextvar_filter(marker: str) -> bool:
        order.set(marker)
        gevent.sleep(0.05)
        shared.info("done %s", marker)
        return _own(records, marker)

    adapter = logging.LoggerAdapter(shared, {"order": None})  # module level, extra mutated

    def shared_adapter(marker: str) -> bool:
        adapter.extra["order"] = marker
        gevent.sleep(0.05)
        adapter.info("done %s", marker)
        return _own(records, marker)

    def adapter_per_invocation(marker: str) -> bool:
        own = logging.LoggerAdapter(shared, {"order": marker})
        gevent.sleep(0.05)
        own.info("done %s", marker)
        return _own(records, marker)

    seen = {"structlog_contextvars": run(structlog_contextvars),
            "logging_filter_added_per_invocation": run(filter_per_invocation)}
    records.records.clear()
    shared.filters.clear()
    shared.addFilter(ContextOrderFilter())
    seen["logging_filter_reading_a_contextvar"] = run(contextvar_filter)
    shared.filters.clear()
    records.records.clear()
    seen["logging_adapter_shared"] = run(shared_adapter)
    records.records.clear()
    seen["logging_adapter_per_invocation"] = run(adapter_per_invocation)
    return seen


def _own(records: Records, marker: str) -> bool:
    mine = [r for r in records.records if r.args == (marker,)]
    return bool(mine) and all(getattr(r, "order", None) == marker for r in mine)


def sentry_case(decorated: bool) -> dict[str, int]:
    import sentry_sdk
    from sentry_sdk.integrations.aws_lambda import AwsLambdaIntegration
    from sentry_sdk.integrations.serverless import serverless_function
    from sentry_sdk.transport import Transport

    events: list[dict] = []

    class Captured(Transport):  # nothing leaves the process
        def capture_envelope(self, envelope: object) -> None:
            for item in envelope.items:
                if item.type == "event":
                    events.append(item.payload.json)

    sentry_sdk.init(dsn="https://key@127.0.0.1/1", transport=Captured,
                    integrations=[AwsLambdaIntegration()], default_integrations=False)

    def handler(marker: str) -> None:
        sentry_sdk.set_tag("order", marker)
        gevent.sleep(0.05)
        sentry_sdk.capture_message(f"done {marker}")

    if decorated:
        handler = serverless_function(handler)

    def case(marker: str) -> bool:
        handler(marker)
        return True

    run(case)
    sentry_sdk.flush()
    own = sum(1 for event in events
              if event.get("tags", {}).get("order") == event["message"].split()[-1])
    # The integration adds the invocation's Lambda context to each event when it wraps the
    # handler; it does so only when it finds awslambdaric's bootstrap module.
    wrapped = sum(1 for event in events if "lambda" in event.get("extra", {}))
    return {"own_tags": own, "events": len(events), "wrapped_by_integration": wrapped}


if sys.argv[1] == "logging":
    print(json.dumps(logging_cases()))
else:
    print(json.dumps(sentry_case(decorated=sys.argv[1] == "sentry-decorator")))
