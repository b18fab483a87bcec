"""Run as a script by test_powertools_api.py: Powertools APIs beside the ones the end-to-end test
uses, 8 invocations at once on greenlets started as lmi-gevent's slots are. Prints, per API,
how many invocations saw only their own state. argv[1]: "on" installs lmi-gevent's
isolation, "off" does not."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys

from lmi_gevent.integrations.monkey import patch_all

patch_all()

from lmi_gevent.integrations import powertools  # noqa: E402
from lmi_gevent.invocation.context import REQUEST_ID  # noqa: E402

if sys.argv[1] == "on":
    powertools.install()

import gevent  # noqa: E402
from aws_lambda_powertools import Logger, Metrics  # noqa: E402
from aws_lambda_powertools.metrics import MetricUnit, single_metric  # noqa: E402

INVOCATIONS = 8
stream = io.StringIO()
logger = Logger(service="shop", logger_handler=logging.StreamHandler(stream))
logger.thread_safe_append_keys(region="eu-west-1")  # at import: every invocation's records
metrics = Metrics(namespace="Shop", service="shop")


class Context:
    function_name = "function"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:1:function:function"
    memory_limit_in_mb = 128

    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id


@metrics.log_metrics(default_dimensions={"stage": "test"})
def handler(event: dict, context: Context) -> None:
    marker = event["marker"]
    if marker == "m0":  # before it appends: the dict it removes from is the import-time one
        logger.thread_safe_remove_keys(["region"])  # this invocation's records only
    logger.thread_safe_append_keys(order=marker)
    metrics.add_metric(name="Items", unit=MetricUnit.Count, value=int(marker[1:]) + 1)
    metrics.add_metadata(key="marker", value=marker)
    with single_metric(name="Hit", unit=MetricUnit.Count, value=1, namespace="Shop") as hit:
        hit.add_dimension(name="order", value=marker)
        gevent.sleep(0.05)  # an I/O wait while every invocation holds its own state
    logger.info("done", marker=marker)


def invocation(n: int) -> None:
    REQUEST_ID.set(f"req-m{n}")  # what lmi-gevent's invoke path sets in each slot
    handler({"marker": f"m{n}"}, Context(f"req-m{n}"))


emitted = io.StringIO()
with contextlib.redirect_stdout(emitted):  # EMF blobs are printed
    jobs = [gevent.spawn(invocation, n) for n in range(INVOCATIONS)]
    gevent.joinall(jobs, raise_error=True)

decoded = [json.loads(line) for text in (stream.getvalue(), emitted.getvalue())
           for line in text.splitlines() if line.startswith("{")]
records = [r for r in decoded if r.get("message") == "done"]
blobs = [b for b in decoded if "Items" in b]
hits = [b for b in decoded if "Hit" in b]
print(json.dumps({
    "thread_safe_keys": sum(1 for r in records if r.get("order") == r["marker"]
                            and ("region" in r) == (r["marker"] != "m0")),
    "log_metrics_blobs": sum(1 for b in blobs if b.get("marker") and b["Items"] ==
                             [float(b["marker"][1:]) + 1] and b.get("stage") == "test"),
    "single_metric_blobs": sum(1 for b in hits if b.get("order") and b["Hit"] == [1.0]
                               and "marker" not in b),
}))
