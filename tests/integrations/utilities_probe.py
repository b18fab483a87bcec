"""Run as a script by test_utilities.py: Powertools' Idempotency config and batch processor
made once at module level, 8 invocations at once on greenlets. Prints how many invocations
saw their own Lambda context (idempotency) and their own partial-batch response (batch).
argv[1]: "on" installs lmi-gevent's isolation, "off" does not."""

from __future__ import annotations

import json
import sys

from lmi_gevent.integrations.monkey import patch_all

patch_all()

from lmi_gevent.integrations import powertools  # noqa: E402
from lmi_gevent.invocation.context import REQUEST_ID  # noqa: E402

if sys.argv[1] == "on":
    powertools.install()

import gevent  # noqa: E402
from aws_lambda_powertools.utilities.batch import (  # noqa: E402
    BatchProcessor, EventType, process_partial_response)
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig  # noqa: E402

INVOCATIONS = 8
config = IdempotencyConfig(event_key_jmespath="order")
processor = BatchProcessor(event_type=EventType.SQS)


class Context:
    def __init__(self, request_id: str, remaining_ms: int) -> None:
        self.aws_request_id = request_id
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def record_handler(record: object) -> None:
    gevent.sleep(0.02)  # an I/O wait per record
    if record.body == "bad":
        raise ValueError("bad record")


def invocation(n: int) -> tuple[bool, bool]:
    REQUEST_ID.set(f"req-{n}")  # what lmi-gevent's invoke path sets in each slot
    context = Context(f"req-{n}", 1000 * n)
    config.register_lambda_context(context)  # what @idempotent does first
    gevent.sleep(0.05)
    own_context = config.lambda_context.get_remaining_time_in_millis() == 1000 * n
    # invocation n sends n+2 records, the last one failing
    records = [{"messageId": f"{n}-{i}", "body": "ok", "receiptHandle": "r",
                "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource":
                "aws:sqs", "eventSourceARN": "arn:q", "awsRegion": "us-east-1"}
               for i in range(n + 2)]
    records[-1]["body"] = "bad"
    response = process_partial_response(event={"Records": records}, context=context,
                                         record_handler=record_handler, processor=processor)
    own_batch = response == {"batchItemFailures": [{"itemIdentifier": f"{n}-{n + 1}"}]}
    return own_context, own_batch


jobs = [gevent.spawn(invocation, n) for n in range(INVOCATIONS)]
gevent.joinall(jobs, raise_error=True)
print(json.dumps({"idempotency_context": sum(job.value[0] for job in jobs),
                  "batch_response": sum(job.value[1] for job in jobs)}))
