"""The ``lmi-gevent`` command line: the runtime itself, ``local`` and ``check``.

    lmi-gevent HANDLER            run HANDLER against $AWS_LAMBDA_RUNTIME_API (the bootstrap)
    lmi-gevent local HANDLER ...  run HANDLER behind an embedded Lambda emulator
    lmi-gevent check HANDLER ...  check that HANDLER's libraries cooperate with gevent

Nothing heavy is imported here: the runtime's steps (:mod:`lmi_gevent.lifecycle`) must be
able to patch the stdlib before ssl, threading, urllib3, concurrent.futures or the handler.
"""

from __future__ import annotations

import sys

from . import __version__
from . import config as settings

USAGE = """\
usage: lmi-gevent HANDLER
       lmi-gevent local HANDLER [--port 8080] [--host H] [--concurrency N] [--workers K]
                              [--timeout S] [--queue Q] [--function-url] [--env K=V ...]
                              [--root DIR]
       lmi-gevent check HANDLER [--event FILE ...] [--concurrency N] [--root DIR]
                              [--env K=V ...] [--threshold S] [--timeout S]
                              [--no-variants] [--format text|json]
       lmi-gevent --help | --version

Run a Python Lambda handler (module.function, pkg.module.function or pkg/module.function)
against the Lambda Runtime API. With AWS_LAMBDA_MAX_CONCURRENCY=N (2-1600), K worker
processes (LMI_GEVENT_WORKERS, default one per usable CPU) serve N invocations at once on
gevent greenlets; unset or 1 runs the classic sequential loop.
HANDLER defaults to $_HANDLER.

settings (environment variables):
"""


def _usage() -> str:
    lines = [USAGE]
    for setting in settings.SETTINGS:
        lines.append(f"  {setting.env}\n      {setting.doc}\n")
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "local":
        from .emulator.local import main as local_main
        return local_main(argv[1:])
    if argv and argv[0] == "check":
        from .check import main as check_main
        return check_main(argv[1:])
    if argv and argv[0] in ("-h", "--help"):
        print(_usage(), end="")
        return 0
    if argv and argv[0] == "--version":
        print(f"lmi-gevent {__version__}")
        return 0
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print(f"lmi-gevent: unexpected arguments {' '.join(argv)!r}\n\n{USAGE}",
              file=sys.stderr, end="")
        return 2
    import gc

    # The runtime's own imports make no garbage a collection could free, yet the collections
    # they trigger cost ~1.5 ms of a ~40 ms classic cold start (-X importtime, minimum of 9).
    # The lifecycle turns the collector back on before the handler module is imported.
    gc.disable()
    try:
        from .lifecycle import bootstrap
        return bootstrap(argv[0] if argv else None)
    finally:
        gc.enable()
