"""``python -m bench.adapter``: the WSGI adapter against apig-wsgi and serverless-wsgi, and N
concurrent response streams.

    python -m bench.adapter            # ~1 min; writes docs/bench-adapter.md
    python -m bench.adapter --quick    # seconds: checks that it works (figures not meaningful)

CPU per request: one Flask app, the same events (API Gateway REST v1, HTTP API v2, ALB with and
without multi-value headers), each adapter called in this process; CPU time (process_time) per
request (the fastest of several batches, adapters taking turns), and each adapter's ratio to
lmi_gevent.http. With Flask the app's own cost is in every figure; the bare WSGI app leaves
mostly the adapters' own cost.

Streams: the streaming example behind the emulator's Function URL with N slots, N server-sent
event streams opened at once; the wall time of all N against one, and the emulator's counts.
Needs the ``bench`` extra (apig-wsgi, serverless-wsgi, flask).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from .services import PROJECT_ROOT

ROUNDS, REQUESTS = 15, 1000
QUICK_ROUNDS, QUICK_REQUESTS = 2, 50


def flask_app() -> Any:
    from flask import Flask, jsonify, request

    app = Flask("bench")

    @app.route("/items/<int:number>/", methods=["GET", "POST"])
    def item(number: int) -> Any:
        response = jsonify(number=number, q=request.args.get("q"), agent=request.headers.get("User-Agent"),
                           size=len(request.get_data()))
        response.set_cookie("a", "1")
        response.set_cookie("b", "2")
        return response

    return app


def events() -> dict[str, dict[str, Any]]:
    from tests.http import events as shapes

    headers = {"Host": "api.example.com", "User-Agent": "bench/1.0", "Accept": "application/json",
               "X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.1"}
    return {
        "REST v1": shapes.rest_v1("/items/7/", headers=headers, query={"q": "a b"},
                                  multi_headers={k: [v] for k, v in headers.items()},
                                  multi_query={"q": ["a b"]}),
        "HTTP API v2": shapes.http_v2("/items/7/", headers={k.lower(): v for k, v in headers.items()},
                                      raw_query="q=a%20b"),
        "ALB multi-value": shapes.alb("/items/7/", multi=True, multi_headers={k.lower(): [v] for k, v in headers.items()},
                                      multi_query={"q": ["a%20b"]}),
        "ALB": shapes.alb("/items/7/", headers={k.lower(): v for k, v in headers.items()}, query={"q": "a%20b"}),
    }


def adapters(app: Any) -> dict[str, Callable[[Any, Any], Any]]:
    import serverless_wsgi
    from apig_wsgi import make_lambda_handler

    from lmi_gevent.http import wsgi_handler

    return {
        "lmi_gevent.http": wsgi_handler(app),
        "apig-wsgi": make_lambda_handler(app, binary_support=True),
        "serverless-wsgi": lambda event, context: serverless_wsgi.handle_request(app, event, context),
    }


class _Context:
    aws_request_id = "bench"
    function_name = "bench"


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The least an app can do, so that the adapters' own cost is most of each figure."""
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"), ("Set-Cookie", "a=1"),
                              ("Set-Cookie", "b=2")])
    return [b'{"ok": true}']


def cpu_per_request(handlers: dict[str, Callable[[Any, Any], Any]], event: dict[str, Any],
                    rounds: int, requests: int) -> dict[str, float]:
    """CPU seconds per request for each handler: the fastest of ``rounds`` batches of
    ``requests`` calls, the handlers taking turns batch by batch so that a busy moment of the
    machine hits them all alike (noise only ever adds time, hence the minimum)."""
    context = _Context()
    for handler in handlers.values():  # warm caches, Flask's URL map, imports
        for _ in range(min(requests, 200)):
            handler(event, context)
    best = {name: float("inf") for name in handlers}
    for _ in range(rounds):
        for name, handler in handlers.items():
            started = time.process_time()
            for _ in range(requests):
                handler(event, context)
            best[name] = min(best[name], (time.process_time() - started) / requests)
    return best


def measure_adapters(rounds: int, requests: int) -> list[dict[str, Any]]:
    rows = []
    for app_name, app in (("Flask", flask_app()), ("bare WSGI", bare_app)):
        handlers = adapters(app)
        for source, event in events().items():
            for name, handler in handlers.items():
                answer = handler(event, _Context())
                if answer.get("statusCode") != 200:
                    raise RuntimeError(f"{name} answered {answer.get('statusCode')} to the {source} event")
            rows.append({"source": f"{app_name}, {source}",
                         **cpu_per_request(handlers, event, rounds, requests)})
    return rows


def measure_streams(n: int, count: int, interval: float) -> dict[str, Any]:
    """N server-sent event streams at once through the Function URL, against one alone."""
    from lmi_gevent.emulator.api import Emulator, open_reply

    with Emulator(concurrency=n, timeout=60, function_url=True) as emu:
        emu.start_runtime([sys.executable, "-m", "lmi_gevent", "examples/streaming_app.handler"],
                          env={"AWS_LAMBDA_MAX_CONCURRENCY": str(n)}, cwd=PROJECT_ROOT)
        emu.wait_for(lambda s: s["open_polls"] >= n, timeout=30)
        host, port = emu.function_url.split("//", 1)[1].rstrip("/").rsplit(":", 1)

        def one(_: int) -> tuple[float, float, int]:
            started = time.monotonic()
            reply = open_reply(host, int(port), "GET", f"/events?count={count}&interval={interval}")
            first_at, events_seen = None, 0
            for chunk in reply.chunks():
                first_at = first_at or time.monotonic()
                events_seen += chunk.count(b"event: tick")
            reply.close()
            return (first_at or time.monotonic()) - started, time.monotonic() - started, events_seen

        alone = one(0)
        emu.reset_stats()
        started = time.monotonic()
        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(one, range(n)))
        wall = time.monotonic() - started
        stats = emu.stats()
    return {"n": n, "count": count, "interval": interval, "alone_seconds": alone[1], "wall_seconds": wall,
            "first_chunk_median": statistics.median(r[0] for r in results),
            "events_received": sum(r[2] for r in results), "max_in_flight": stats["max_in_flight"],
            "streamed_responses": stats["streamed_responses"], "stream_errors": stats["stream_errors"]}


def report(rows: list[dict[str, Any]], streams: dict[str, Any], quick: bool) -> str:
    names = ["lmi_gevent.http", "apig-wsgi", "serverless-wsgi"]
    lines = ["# WSGI adapter benchmark", "",
             "Generated by `python -m bench.adapter`" + (" --quick (figures not meaningful)" if quick else "") + ".",
             "CPU time per request (µs) of the same Flask app through each adapter, in one process; "
             "the ratio is the adapter's CPU over lmi_gevent.http's (above 1.00: lmi_gevent.http is cheaper).",
             "", "| event | " + " | ".join(names) + " | best other / lmi_gevent.http |",
             "|---|" + "---:|" * (len(names) + 1)]
    for row in rows:
        ours = row["lmi_gevent.http"]
        cells = [f"{row[name] * 1e6:.1f}" + ("" if name == names[0] else f" ({row[name] / ours:.2f}x)")
                 for name in names]
        best_other = min(row[name] for name in names[1:])
        lines.append(f"| {row['source']} | " + " | ".join(cells) + f" | {best_other / ours:.2f} |")
    s = streams
    lines += ["", "## Concurrent response streams", "",
              f"{s['n']} server-sent event streams of {s['count']} events {s['interval']} s apart, opened at once "
              "through the emulator's Function URL (examples/streaming_app.py, one lmi-gevent process, "
              f"AWS_LAMBDA_MAX_CONCURRENCY={s['n']}).", "",
              "| figure | value |", "|---|---:|",
              f"| one stream alone, s | {s['alone_seconds']:.2f} |",
              f"| all {s['n']} at once, wall s | {s['wall_seconds']:.2f} |",
              f"| wall / alone (1.0 = full overlap) | {s['wall_seconds'] / s['alone_seconds']:.2f} |",
              f"| median time to first chunk, s | {s['first_chunk_median']:.3f} |",
              f"| events received (expected {s['n'] * s['count']}) | {s['events_received']} |",
              f"| max in flight (emulator) | {s['max_in_flight']} |",
              f"| streamed responses / stream errors | {s['streamed_responses']} / {s['stream_errors']} |", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.adapter", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, for smoke tests")
    parser.add_argument("--out", default=os.path.join(PROJECT_ROOT, "docs"), help="directory for bench-adapter.md")
    parser.add_argument("--streams", type=int, default=None, help="N concurrent streams (default 64; quick 8)")
    args = parser.parse_args(argv)
    sys.path.insert(0, PROJECT_ROOT)  # tests.http.events holds the event shapes
    rounds, requests = (QUICK_ROUNDS, QUICK_REQUESTS) if args.quick else (ROUNDS, REQUESTS)
    rows = measure_adapters(rounds, requests)
    n = args.streams or (8 if args.quick else 64)
    streams = measure_streams(n, count=3 if args.quick else 10, interval=0.05 if args.quick else 0.2)
    text = report(rows, streams, args.quick)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench-adapter.md"), "w", encoding="utf-8") as out:
        out.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
