"""``python -m lmi_gevent.emulator``: run the Runtime API + Invoke API until SIGTERM/SIGINT.

Prints one JSON line on stdout once both sockets listen, e.g.
``{"runtime_api": "127.0.0.1:40123", "invoke_url": "http://127.0.0.1:40124", "pid": 4242}``,
which is how ``lmi_gevent.emulator.api.Emulator`` learns the ports it got.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

import gevent
from gevent.event import Event

from .server import EmulatorServer, Settings

PARENT_CHECK_SECONDS = 0.5


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lmi_gevent.emulator",
                                     description="Local Lambda Runtime API + Invoke API for tests.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--runtime-port", type=port, default=0, help="Runtime API port (0 = free port)")
    parser.add_argument("--invoke-port", type=port, default=0, help="Invoke API port (0 = free port)")
    parser.add_argument("--concurrency", type=positive_int, default=1,
                        help="N, the runtime's allowed concurrency (measured, not enforced)")
    parser.add_argument("--timeout", type=positive_float, default=30.0, help="function timeout, seconds")
    parser.add_argument("--queue", type=int, default=None,
                        help="invocations allowed to wait for a poll (default max(100, 4N))")
    parser.add_argument("--strict", action="store_true",
                        help="no queue: reject an invoke with 400 Runtime.Unavailable when no poll is open")
    parser.add_argument("--function-name", default="function")
    parser.add_argument("--max-events", type=positive_int, default=20000,
                        help="events kept in the timeline (oldest dropped first)")
    parser.add_argument("--max-answers", type=positive_int, default=200,
                        help="runtime answers kept for /_lmi/answers")
    parser.add_argument("--function-url-port", type=port, default=None,
                        help="also serve a Function URL on this port (0 = free port)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started this one dies (used by api.Emulator)")
    return parser


def watch_parent(stopping: Event) -> None:
    """Stop once the parent is gone (re-parented), so a killed test run leaves nothing behind."""
    parent = os.getppid()

    def check() -> None:
        while os.getppid() == parent:
            gevent.sleep(PARENT_CHECK_SECONDS)
        stopping.set()

    gevent.spawn(check)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.queue is not None and args.queue < 0:
        build_parser().error("--queue must be 0 or more")
    settings = Settings(concurrency=args.concurrency, timeout=args.timeout, queue=args.queue,
                        strict=args.strict, function_name=args.function_name,
                        max_events=args.max_events, max_answers=args.max_answers)
    server = EmulatorServer(settings, host=args.host, runtime_port=args.runtime_port,
                            invoke_port=args.invoke_port, function_url_port=args.function_url_port)
    server.start()
    stopping = Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stopping.set)
    if args.exit_with_parent:
        watch_parent(stopping)
    ready = {"runtime_api": server.runtime_api, "invoke_url": server.invoke_url, "pid": os.getpid(),
             "function_url": server.function_url}
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    stopping.wait()
    server.stop(timeout=0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
