"""A FastAPI app on Lambda Managed Instances: ``async def`` and ``def`` endpoints, an
``httpx.AsyncClient`` made once per process in the lifespan, and a streamed endpoint.

Run it behind a local Function URL and open http://127.0.0.1:8080/ in a browser:
    lmi-gevent local examples/fastapi_app.handler --function-url --concurrency 16

The lifespan runs once per worker process before it takes its first invocation; the client it
makes is bound to that process's one event loop and reused by every invocation
(docs/async.md). ``UPSTREAM_URL`` is where ``/upstream`` forwards to.
"""

import asyncio
import contextlib
import os
import time

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from lmi_gevent.http import asgi_handler

UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "https://checkip.amazonaws.com/")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    async with httpx.AsyncClient(timeout=10) as client:
        yield {"client": client}  # request.state.client in every invocation


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def index(request: Request):
    context = request.scope["aws.context"]
    return {"message": "Hello from FastAPI on Lambda", "request_id": context.aws_request_id}


@app.get("/upstream")
async def upstream(request: Request):
    reply = await request.state.client.get(UPSTREAM_URL)
    return {"status": reply.status_code, "body": reply.text[:200]}


@app.get("/wait")
async def wait(seconds: float = 0.5):
    await asyncio.sleep(seconds)
    return {"waited": seconds}


@app.get("/blocking")
def blocking(seconds: float = 0.5):
    time.sleep(seconds)  # a def endpoint: Starlette runs it off the loop
    return {"slept": seconds}


@app.get("/events")
async def events(count: int = 5, interval: float = 0.5):
    async def ticks():
        for number in range(count):
            yield f"data: tick {number}\n\n"
            await asyncio.sleep(interval)

    return StreamingResponse(ticks(), media_type="text/event-stream")


# Function URL with InvokeMode RESPONSE_STREAM (examples/template.yaml): /events arrives as sent.
handler = asgi_handler(app, streaming=True)
