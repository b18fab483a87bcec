"""A plain ``async def`` handler: the runtime awaits it on the process's one event loop, in both
modes (sequential, and concurrent with AWS_LAMBDA_MAX_CONCURRENCY > 1).

Run it on the local emulator and invoke it:
    lmi-gevent local examples/async_handler.handler --concurrency 16
    curl -d '{"names": ["a", "b", "c"]}' http://127.0.0.1:8080/2015-03-31/functions/function/invocations

Its logs, and those of the tasks it starts, carry the invocation's request id; a lock made
at import is bound to the one loop and so works in every invocation.
"""

import asyncio
import logging

logger = logging.getLogger("async_handler")
logger.setLevel(logging.INFO)
greetings = {"count": 0}
counting = asyncio.Lock()  # made at import, used by every invocation: one loop per process


async def greet(name: str) -> str:
    await asyncio.sleep(0.05)  # stands in for an awaited call (an HTTP API, a database)
    logger.info("greeted %s", name)  # logged with the invocation's request id
    return f"Hello, {name}!"


async def handler(event, context):
    names = event.get("names") or ["world"]
    greeted = await asyncio.gather(*(greet(name) for name in names))  # one task per name
    async with counting:
        greetings["count"] += len(greeted)
    return {"greetings": greeted, "request_id": context.aws_request_id,
            "greeted_by_this_process": greetings["count"]}
