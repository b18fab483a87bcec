"""The command line of ``lmi-gevent check``: flags, defaults and their validation."""

from __future__ import annotations

import os
from typing import Any, NamedTuple

PROG = "lmi-gevent check"
DEFAULT_CONCURRENCY = 4
DEFAULT_THRESHOLD = 0.05  # low, to catch blocks that would add up under real load
DEFAULT_TIMEOUT = 30.0



class UsageError(Exception):
    """Bad command line; the message names the flag or the handler at fault (exit 2)."""


class Options(NamedTuple):
    handler: str
    root: str
    event: bytes
    event_name: str
    concurrency: int
    threshold: float
    timeout: float
    json: bool


class ArgparseExit(Exception):
    """argparse has printed its own message (or --help); exit with ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _parser() -> Any:
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check that a Lambda handler's libraries cooperate with gevent: import it "
                    "as lmi-gevent would, run a sample event N times at once on the real "
                    "runtime, and report what blocks. Exit status: 0 fine, 1 a blocker "
                    "was found, 2 bad usage.")
    parser.add_argument("handler", nargs="?", default=os.environ.get("_HANDLER"),
                        metavar="HANDLER", help="module.function (default: $_HANDLER)")
    parser.add_argument("--event", metavar="FILE",
                        help="JSON file with the sample event (default: {})")
    parser.add_argument("--concurrency", metavar="N", type=int, default=DEFAULT_CONCURRENCY,
                        help=f"invocations at once (2-1600, default {DEFAULT_CONCURRENCY})")
    parser.add_argument("--root", metavar="DIR", default=os.environ.get("LAMBDA_TASK_ROOT", "."),
                        help="the task root holding the handler's module (default: "
                             "$LAMBDA_TASK_ROOT or the current directory)")
    parser.add_argument("--threshold", metavar="SECONDS", type=float, default=DEFAULT_THRESHOLD,
                        help="report blocks of the event loop longer than this "
                             f"(default {DEFAULT_THRESHOLD:g})")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=DEFAULT_TIMEOUT,
                        help=f"function timeout per invocation (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (for CI)")
    return parser


def parse_options(argv: list[str]) -> Options:
    """Parse and validate ``argv``; raises UsageError naming what is wrong."""
    from ..config import MAX_CONCURRENCY_LIMIT

    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse printed its message (or --help)
        raise ArgparseExit(int(stop.code or 0)) from None
    if not args.handler:
        raise UsageError("HANDLER is missing: pass one (e.g. `lmi-gevent check app.handler`) "
                         "or set _HANDLER")
    _check_handler_name(args.handler)
    if not 2 <= args.concurrency <= MAX_CONCURRENCY_LIMIT:
        raise UsageError(f"--concurrency must be from 2 to {MAX_CONCURRENCY_LIMIT} (concurrent "
                         f"mode), got {args.concurrency}")
    for flag, value in (("--threshold", args.threshold), ("--timeout", args.timeout)):
        if not 0 < value < float("inf"):
            raise UsageError(f"{flag} must be a number of seconds above 0, got {value:g}")
    if not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root}: not a directory (it must hold the handler's "
                         "module)")
    event, event_name = _read_event(args.event)
    return Options(args.handler, os.path.abspath(args.root), event, event_name,
                   args.concurrency, args.threshold, args.timeout, args.json)


def _check_handler_name(handler: str) -> None:
    from ..invocation.loader import split_handler
    from ..runtime_api.errors import RuntimeFault

    try:
        split_handler(handler)
    except RuntimeFault as fault:
        raise UsageError(f"HANDLER: {fault.message}") from None


def _read_event(path: str | None) -> tuple[bytes, str]:
    import json

    if path is None:
        return b"{}", "{}"
    try:
        with open(path, "rb") as source:
            data = source.read()
    except OSError as problem:
        raise UsageError(f"--event {path}: cannot read it ({problem.strerror or problem})") \
            from None
    try:
        json.loads(data)
    except ValueError as problem:
        raise UsageError(f"--event {path}: not a JSON document ({problem})") from None
    return data, path
