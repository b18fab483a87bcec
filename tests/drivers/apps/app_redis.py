"""redis-py, unmodified: BLPOP with a timeout on a key nobody pushes to."""

from __future__ import annotations

import redis
from overlap_meter import answer, waiting

CLIENT = redis.Redis(host="127.0.0.1", port=6379)  # made at init, pooled connections


def handler(event, context):
    with waiting():
        popped = CLIENT.blpop([f"{event['token']}:{context.aws_request_id}"],
                              timeout=event["seconds"])
    return answer(popped=popped)
