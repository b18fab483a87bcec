"""The command line of ``lmi-gevent check``: flags, defaults and their validation."""

from __future__ import annotations

import os
from typing import Any, NamedTuple

PROG = "lmi-gevent check"
DEFAULT_CONCURRENCY = 4
DEFAULT_TIMEOUT = 30.0
FORMATS = ("text", "json")



class UsageError(Exception):
    """Bad command line; the message names the flag or the handler at fault (exit 2)."""


class Options(NamedTuple):
    handler: str
    root: str
    events: tuple[bytes, ...]  # as given: one or more JSON documents
    event_name: str
    concurrency: int
    threshold: float
    timeout: float
    json: bool
    env: tuple[tuple[str, str], ...] = ()  # --env KEY=VALUE, in order (the last one wins)
    vary: bool = True  # derive distinct variants from a single event (--no-variants: off)

    @property
    def event(self) -> bytes:
        """The first sample event (the one a single-event run replays)."""
        return self.events[0]


def default_threshold() -> float:
    """The runtime's own stall threshold (LMI_GEVENT_STALL_THRESHOLD, else its default): check
    names exactly the blocks the runtime would warn about in production."""
    from .. import config as settings

    default = next(s.default for s in settings.SETTINGS if s.name == "stall_threshold")
    try:
        value = settings.read_setting("stall_threshold")
    except settings.ConfigError:
        return float(default)  # the bad setting itself is reported by the import step
    return float(value or default)


class ArgparseExit(Exception):
    """argparse has printed its own message (or --help); exit with ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _parser() -> Any:
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check that a Lambda handler is ready to serve many invocations in one "
                    "process: import it as lmi-gevent would, run it on the real runtime "
                    "(a warm-up, then N at once, twice, with distinct events), and report "
                    "what stalls the others in steady state, what state invocations share, "
                    "and what crashes. Exit status: 0 ready, 1 a blocker was found, 2 bad "
                    "usage.")
    parser.add_argument("handler", nargs="?", default=os.environ.get("_HANDLER"),
                        metavar="HANDLER", help="module.function (default: $_HANDLER)")
    parser.add_argument("--event", metavar="FILE", action="append", default=[],
                        help="a JSON file with a sample event, or a JSON-lines file with one "
                             "event a line; repeatable: invocations take them in turn "
                             "(default: {})")
    parser.add_argument("--no-variants", dest="vary", action="store_false",
                        help="with a single event, replay it as it is instead of also "
                             "invoking variants of it with other numbers")
    parser.add_argument("--env", metavar="KEY=VALUE", action="append", default=[],
                        help="environment variable for the handler (repeatable)")
    parser.add_argument("--concurrency", metavar="N", type=int, default=DEFAULT_CONCURRENCY,
                        help=f"invocations at once (2-1600, default {DEFAULT_CONCURRENCY})")
    parser.add_argument("--root", metavar="DIR", default=os.environ.get("LAMBDA_TASK_ROOT", "."),
                        help="the task root holding the handler's module (default: "
                             "$LAMBDA_TASK_ROOT or the current directory)")
    parser.add_argument("--threshold", metavar="SECONDS", type=float, default=None,
                        help="report blocks of the event loop longer than this (default: "
                             "LMI_GEVENT_STALL_THRESHOLD, the runtime's own threshold)")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=DEFAULT_TIMEOUT,
                        help=f"function timeout per invocation (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="text (default) or json, a machine-readable report for CI")
    parser.add_argument("--json", action="store_true", help="the same as --format json")
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
    if args.threshold is None:
        args.threshold = default_threshold()
    for flag, value in (("--threshold", args.threshold), ("--timeout", args.timeout)):
        if not 0 < value < float("inf"):
            raise UsageError(f"{flag} must be a number of seconds above 0, got {value:g}")
    if not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root}: not a directory (it must hold the handler's "
                         "module)")
    events, event_name = _read_events(args.event)
    return Options(args.handler, os.path.abspath(args.root), events, event_name,
                   args.concurrency, args.threshold, args.timeout,
                   args.json or args.format == "json",
                   tuple(_env_pair(text) for text in args.env), args.vary)


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or "\0" in text:
        raise UsageError(f"--env takes KEY=VALUE, got {text!r}")
    return key, value


def _check_handler_name(handler: str) -> None:
    from ..invocation.loader import split_handler
    from ..runtime_api.errors import RuntimeFault

    try:
        split_handler(handler)
    except RuntimeFault as fault:
        raise UsageError(f"HANDLER: {fault.message}") from None


def _read_events(paths: list[str]) -> tuple[tuple[bytes, ...], str]:
    if not paths:
        return (b"{}",), "{}"
    events: list[bytes] = []
    for path in paths:
        events += _read_event_file(path)
    return tuple(events), ", ".join(paths)


def _read_event_file(path: str) -> list[bytes]:
    """One JSON document, or JSON lines (one event a line)."""
    import json

    try:
        with open(path, "rb") as source:
            data = source.read()
    except OSError as problem:
        raise UsageError(f"--event {path}: cannot read it ({problem.strerror or problem})") \
            from None
    try:
        json.loads(data)
        return [data]
    except ValueError as problem:
        whole_problem = problem
    lines = [line.strip() for line in data.splitlines() if line.strip()]
    for number, line in enumerate(lines, start=1):
        try:
            json.loads(line)
        except ValueError as problem:
            culprit = whole_problem if len(lines) < 2 else f"line {number}: {problem}"
            raise UsageError(f"--event {path}: not a JSON document nor JSON lines "
                             f"({culprit})") from None
    if not lines:
        raise UsageError(f"--event {path}: not a JSON document ({whole_problem})")
    return lines
