"""``python -m bench.asgi``: the ASGI adapter against Mangum, and N concurrent async
invocations on one process against the sync equivalent.

    python -m bench.asgi            # ~1 min; writes docs/bench-asgi.md
    python -m bench.asgi --quick    # seconds: checks that it works (figures not meaningful)

CPU per request: one FastAPI app and a bare ASGI app (mostly the adapters' own cost), the same events (API Gateway REST v1, HTTP API v2, ALB),
``asgi_handler`` awaited on a persistent loop as the runtime's sequential mode does, and
Mangum (lifespan off) called as its users call it; CPU time (process_time) per request, the
fastest of several batches, the two taking turns.

Concurrency: one lmi-gevent process with N slots behind the emulator, N invocations at once of
a handler that waits 0.2 s, as ``async def`` (``await asyncio.sleep``) and as ``def``
(``time.sleep``, cooperative after patch_all), then of the async one whose wait is a blocking
``time.sleep`` inside ``async def``; wall time against one alone, the emulator's max in flight,
and the runtime process's CPU per invocation. Needs the ``bench`` extra (fastapi, mangum).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Callable

from .services import PROJECT_ROOT

ROUNDS, REQUESTS = 15, 500
QUICK_ROUNDS, QUICK_REQUESTS = 2, 30
BATCHES = 4

WAITING = """
import asyncio, time

async def awaits(event, context):
    await asyncio.sleep(event["seconds"])
    return {"ok": True}

async def blocks_inside_async(event, context):
    time.sleep(event["seconds"])
    return {"ok": True}

def sleeps(event, context):
    time.sleep(event["seconds"])
    return {"ok": True}
"""


def events() -> dict[str, dict[str, Any]]:
    from tests.http import events as shapes

    headers = {"Host": "api.example.com", "User-Agent": "bench/1.0", "Accept": "application/json",
               "X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.1"}
    lower = {k.lower(): v for k, v in headers.items()}
    return {
        "REST v1": shapes.rest_v1("/items/7", headers=headers, query={"q": "a b"},
                                  multi_headers={k: [v] for k, v in headers.items()},
                                  multi_query={"q": ["a b"]}),
        "HTTP API v2": shapes.http_v2("/items/7", headers=lower, raw_query="q=a%20b"),
        "ALB": shapes.alb("/items/7", headers=lower, query={"q": "a%20b"}),
    }


def handlers(app: Any) -> dict[str, Callable[[Any, Any], Any]]:
    from mangum import Mangum

    from lmi_gevent.http import asgi_handler
    from lmi_gevent.invocation.coroutines import SequentialLoop

    ours, loop = asgi_handler(app, lifespan="off"), SequentialLoop()
    return {"asgi_handler": lambda event, context: loop.run(ours(event, context)),
            "Mangum": Mangum(app, lifespan="off")}


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The least an ASGI app can do, so that the adapters' own cost is most of each figure."""
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"set-cookie", b"a=1"),
                            (b"set-cookie", b"b=2")]})
    await send({"type": "http.response.body", "body": b'{"ok": true}'})


def measure_adapters(rounds: int, requests: int) -> list[dict[str, Any]]:
    from .adapter import _Context, cpu_per_request
    from .fastapi_app import app

    rows = []
    for app_name, served in (("FastAPI", app), ("bare ASGI", bare_app)):
        called = handlers(served)
        for source, event in events().items():
            for name, handler in called.items():
                answer = handler(event, _Context())
                if answer.get("statusCode") != 200:
                    raise RuntimeError(f"{name} answered {answer.get('statusCode')} to the {source} event")
            rows.append({"source": f"{app_name}, {source}",
                         **cpu_per_request(called, event, rounds, requests)})
    return rows


def measure_concurrency(n: int, seconds: float) -> list[dict[str, Any]]:
    """N invocations at once on one process, for each kind of handler."""
    import psutil

    from lmi_gevent.emulator.api import Emulator

    rows = []
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "waiting.py"), "w", encoding="utf-8") as module:
            module.write(WAITING)
        for name in ("awaits", "sleeps", "blocks_inside_async"):
            with Emulator(concurrency=n, timeout=60) as emu:
                runtime = emu.start_runtime(
                    [sys.executable, "-m", "lmi_gevent", f"waiting.{name}"],
                    env={"AWS_LAMBDA_MAX_CONCURRENCY": str(n), "LMI_GEVENT_WORKERS": "1"}, cwd=root)
                emu.wait_for(lambda s: s["open_polls"] >= n, timeout=30)
                process = psutil.Process(runtime.pid)
                started = time.monotonic()
                emu.invoke({"seconds": seconds})
                alone = time.monotonic() - started
                emu.reset_stats()
                cpu_before = sum(process.cpu_times()[:2])
                walls, results = [], []
                for _ in range(BATCHES):  # CPU is counted in 10 ms ticks: several batches
                    started = time.monotonic()
                    results += emu.invoke_many([{"seconds": seconds}] * n, parallel=n)
                    walls.append(time.monotonic() - started)
                cpu = sum(process.cpu_times()[:2]) - cpu_before
                stats = emu.stats()
                runtime.stop()
            rows.append({"handler": name, "alone": alone, "wall": min(walls),
                         "cpu_per_invocation": cpu / len(results),
                         "answered": sum(r.status == 200 and r.function_error is None for r in results),
                         "max_in_flight": stats["max_in_flight"], "invocations": len(results)})
    return rows


def report(rows: list[dict[str, Any]], waits: list[dict[str, Any]], n: int, seconds: float,
           quick: bool) -> str:
    lines = ["# ASGI adapter benchmark", "",
             "Generated by `python -m bench.asgi`" + (" --quick (figures not meaningful)" if quick else "") + ".",
             "CPU time per request (µs) of the same app (FastAPI, and a bare ASGI app that leaves mostly "
             "the adapters' own cost) through each adapter, in one process; "
             "the ratio is Mangum's CPU over asgi_handler's (above 1.00: asgi_handler is cheaper).",
             "", "| event | asgi_handler | Mangum | Mangum / asgi_handler |", "|---|---:|---:|---:|"]
    for row in rows:
        ours, theirs = row["asgi_handler"], row["Mangum"]
        lines.append(f"| {row['source']} | {ours * 1e6:.1f} | {theirs * 1e6:.1f} | {theirs / ours:.2f} |")
    lines += ["", "## Concurrent invocations on one process", "",
              f"{n} invocations at once of a handler that waits {seconds} s, one lmi-gevent process "
              f"with AWS_LAMBDA_MAX_CONCURRENCY={n}: `async def` awaiting `asyncio.sleep`, `def` "
              "calling `time.sleep`, and `async def` calling the blocking `time.sleep`; the wall "
              f"time is the fastest of {BATCHES} batches, the runtime's CPU is over all of them.", "",
              "| handler | one alone, s | all at once, wall s | wall / alone | CPU per invocation, ms "
              "| answered | max in flight |", "|---|---:|---:|---:|---:|---:|---:|"]
    # wall: the fastest of the batches of n at once; CPU: the runtime process's, over them all
    for w in waits:
        lines.append(f"| {w['handler']} | {w['alone']:.2f} | {w['wall']:.2f} | {w['wall'] / w['alone']:.2f} "
                     f"| {w['cpu_per_invocation'] * 1e3:.2f} | {w['answered']} / {w['invocations']} | {w['max_in_flight']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.asgi", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, for smoke tests")
    parser.add_argument("--out", default=os.path.join(PROJECT_ROOT, "docs"), help="directory for bench-asgi.md")
    parser.add_argument("--concurrency", type=int, default=None, help="N (default 64; quick 8)")
    args = parser.parse_args(argv)
    sys.path.insert(0, PROJECT_ROOT)  # tests.http.events holds the event shapes
    rounds, requests = (QUICK_ROUNDS, QUICK_REQUESTS) if args.quick else (ROUNDS, REQUESTS)
    rows = measure_adapters(rounds, requests)
    n = args.concurrency or (8 if args.quick else 64)
    seconds = 0.2
    text = report(rows, measure_concurrency(n, seconds), n, seconds, args.quick)
    path = os.path.join(args.out, "bench-asgi.md")
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
