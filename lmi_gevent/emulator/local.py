"""``lmi-gevent local HANDLER``: run a handler behind a local Invoke API, with the runtime as a
child process, so a user can curl it (and try N-way concurrency) on a laptop.

    lmi-gevent local app.handler --concurrency 8
    curl -XPOST http://127.0.0.1:8080/2015-03-31/functions/function/invocations \
         -H 'Content-Type: application/json' -d '{}'

    lmi-gevent local app.handler --function-url     # then: curl -N http://127.0.0.1:8080/any/path

The child is ``[sys.executable, "-m", "lmi_gevent", HANDLER]``. For tests only, another
command can stand in for it: the ``runtime_cmd`` argument of ``main``, or the environment
variable ``LMI_GEVENT_LOCAL_RUNTIME_CMD`` (split like a shell line; ``{handler}`` in it is
replaced by HANDLER, else HANDLER is appended).

Ctrl-C / SIGTERM are forwarded to the child's process group so the user sees the drain; a
second one kills it. The child never outlives this command: it is killed on every exit path
and, on Linux, also when this process dies without a chance to clean up.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

RUNTIME_CMD_ENV = "LMI_GEVENT_LOCAL_RUNTIME_CMD"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
# After a forwarded signal the child gets this long to drain before it is killed.
DRAIN_GRACE_SECONDS = 30.0
# After it posted an init error the child should exit by itself; it gets this long.
INIT_ERROR_EXIT_SECONDS = 3.0
# A runtime that dies is started again, as the platform starts a new one; one that keeps dying
# this soon without taking an invocation is waited for longer each time, and given up on.
QUICK_DEATH_SECONDS = 5.0
QUICK_DEATHS_LIMIT = 5
PROG = "lmi-gevent local"


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` returns 2 rather than exit."""

    def error(self, message: str) -> Any:
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def _bounded_int(flag: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{flag} must be between {low} and {high}, got {value}")
        return value

    return parse


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--timeout takes seconds, got {text!r}") from None
    if not 0 < value <= 900:
        raise argparse.ArgumentTypeError(f"--timeout must be above 0 and at most 900 seconds, got {value}")
    return value


def _workers(text: str) -> str:
    if text.strip().lower() == "auto":
        return "auto"
    return str(_bounded_int("--workers", 1, 1600)(text))


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or "\0" in text:
        raise argparse.ArgumentTypeError(f"--env takes KEY=VALUE, got {text!r}")
    return key, value


def _root(text: str) -> str:
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: not a directory (it must hold the "
                                         "handler's module)")
    return os.path.abspath(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog=PROG, description="Run a Lambda handler behind a local Invoke API.")
    parser.add_argument("handler", metavar="HANDLER", help="module.function, e.g. app.handler")
    parser.add_argument("--port", type=_bounded_int("--port", 0, 65535), default=8080,
                        help="Invoke API port (default 8080; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="Invoke API address (default 127.0.0.1; it has no authentication)")
    parser.add_argument("--concurrency", type=_bounded_int("--concurrency", 1, 1600), default=1,
                        help="AWS_LAMBDA_MAX_CONCURRENCY for the runtime (default 1)")
    parser.add_argument("--workers", type=_workers, default=None, metavar="K|auto",
                        help="LMI_GEVENT_WORKERS for the runtime: worker processes sharing the N "
                             "slots (default: the environment's, else auto = usable CPUs)")
    parser.add_argument("--timeout", type=_timeout, default=30.0, help="function timeout in seconds (default 30)")
    parser.add_argument("--queue", type=_bounded_int("--queue", 0, 1_000_000), default=None,
                        help="invocations that may wait for a free slot before a 429 (default max(100, 4N))")
    parser.add_argument("--function-url", action="store_true",
                        help="serve --port as a Function URL: every HTTP request becomes a payload "
                             "2.0 event and the answer a real HTTP response, streamed when the "
                             "handler streams (the Invoke API moves to a free loopback port)")
    parser.add_argument("--env", type=_env_pair, action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment variable for the runtime (repeatable)")
    parser.add_argument("--root", type=_root, default=None, metavar="DIR",
                        help="the task root holding the handler's module: LAMBDA_TASK_ROOT and "
                             "the runtime's working directory (default: the current directory)")
    return parser


def host_warning(host: str) -> str | None:
    """The warning to print for a bind address reachable from other machines, if any."""
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (f"{PROG}: warning: --host {host} exposes the Invoke API beyond this machine; "
            "it has no authentication, anyone who can reach it can run your function.")


def runtime_command(handler: str, override: Sequence[str] | None = None) -> list[str]:
    """The child's argv: the real runtime, or a stand-in named by argument or environment."""
    if override is None and os.environ.get(RUNTIME_CMD_ENV):
        override = shlex.split(os.environ[RUNTIME_CMD_ENV])
    if not override:
        return [sys.executable, "-m", "lmi_gevent", handler]
    if any("{handler}" in part for part in override):
        return [part.replace("{handler}", handler) for part in override]
    return [*override, handler]


def runtime_environment(args: argparse.Namespace, runtime_api: str) -> dict[str, str]:
    """os.environ + what Lambda sets for a runtime + ``--env`` pairs (which win)."""
    env = dict(os.environ)
    env.pop("AWS_LAMBDA_MAX_CONCURRENCY", None)  # --concurrency decides, not the shell
    env.update({
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": "function",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/function",
        "AWS_LAMBDA_LOG_STREAM_NAME": "$LATEST/local",
        "LAMBDA_TASK_ROOT": getattr(args, "root", None) or os.getcwd(),
        "PYTHONUNBUFFERED": "1",  # logs reach the terminal as they happen
    })
    env.setdefault("AWS_REGION", "us-east-1")
    env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
    if args.concurrency > 1:
        env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(args.concurrency)
        env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "lambda-managed-instances"
    if args.workers is not None:
        env["LMI_GEVENT_WORKERS"] = args.workers
    env.update(dict(args.env))
    return env


def main(argv: list[str], *, runtime_cmd: Sequence[str] | None = None) -> int:
    """Run until the runtime exits; returns the exit code for the command line."""
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        build_parser().print_usage(sys.stderr)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    warning = host_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    return _Session(args, runtime_command(args.handler, runtime_cmd)).run()


def _exit_code(returncode: int) -> int:
    """A child killed by signal N exits the way a shell reports it: 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_name(returncode: int) -> str:
    """How the log names an exit: ``signal SIGSEGV`` or ``code 3``."""
    return f"signal {_signal_name(-returncode)}" if returncode < 0 else f"code {returncode}"


def exit_error(returncode: int) -> str:
    """The platform's words for it in a Runtime.ExitError: ``signal: segmentation fault``,
    ``exit status 3`` (a process state, as its Go runtime interface prints one)."""
    if returncode >= 0:
        return f"exit status {returncode}"
    description = signal.strsignal(-returncode) if hasattr(signal, "strsignal") else None
    return f"signal: {(description or _signal_name(-returncode)).lower()}"


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGKILL the child if this process dies unexpectedly."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the hook ran
            os._exit(1)

    return hook


class _Session:
    """One run: servers up, child started, then wait for the child, an init error or signals."""

    def __init__(self, args: argparse.Namespace, command: list[str]) -> None:
        self.args = args
        self.command = command
        self.child: Any = None
        self.signals_forwarded = 0
        self.drain_deadline: float | None = None
        self.server: Any = None
        self.started_at = 0.0
        self.counts_at_start: dict[str, int] = {}
        self.quick_deaths = 0

    def run(self) -> int:
        # gevent is imported only here: the emulator is no part of the runtime's import path.
        from gevent.event import Event

        from .server import EmulatorServer, Settings

        settings = Settings(concurrency=self.args.concurrency, timeout=self.args.timeout, queue=self.args.queue)
        if self.args.function_url:
            server = EmulatorServer(settings, host=self.args.host, invoke_port=0, runtime_host="127.0.0.1",
                                    function_url_port=self.args.port)
        else:
            server = EmulatorServer(settings, host=self.args.host, invoke_port=self.args.port,
                                    runtime_host="127.0.0.1")
        try:
            server.start()
        except OSError as exc:
            print(f"{PROG}: error: cannot listen on --host {self.args.host} --port {self.args.port}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
            return 1
        self.wake = Event()
        self.init_error: dict[str, Any] | None = None
        server.sandbox.init_error_listeners.append(self._on_init_error)
        try:
            return self._supervise(server)
        finally:
            self._kill_child()
            server.stop(timeout=0.5)

    def _start_child(self) -> bool:
        import gevent
        from gevent import subprocess as gsubprocess

        try:
            self.child = gsubprocess.Popen(
                self.command, env=runtime_environment(self.args, self.server.runtime_api),
                cwd=self.args.root, stdin=gsubprocess.DEVNULL, start_new_session=True,
                preexec_fn=_die_with_parent())
        except OSError as exc:
            print(f"{PROG}: error: cannot start the runtime {self.command[0]!r}: {exc}", file=sys.stderr)
            return False
        self.started_at = time.monotonic()
        stats = self.server.sandbox.stats()
        self.counts_at_start = {name: stats[name] for name in ("polls_opened_total", "dispatched")}
        waiter = gevent.spawn(self.child.wait)
        waiter.link(lambda _: self.wake.set())
        return True

    def _supervise(self, server: Any) -> int:
        import gevent

        self.server = server
        if not self._start_child():
            return 1
        handlers = [gevent.signal_handler(sig, self._forward, sig) for sig in (signal.SIGINT, signal.SIGTERM)]
        try:
            url = server.invoke_url + INVOKE_PATH
            if server.function_url:
                print(f"{PROG}: {self.args.handler} (concurrency {self.args.concurrency}) — "
                      f"Function URL {server.function_url} — try: curl -N {server.function_url}",
                      flush=True)
            else:
                print(f"{PROG}: {self.args.handler} (concurrency {self.args.concurrency}) — "
                      f"try: curl -s -XPOST {url} -H 'Content-Type: application/json' -d '{{}}'", flush=True)
            return self._wait_for_end()
        finally:
            for handler in handlers:
                handler.cancel()

    def _wait_for_end(self) -> int:
        while True:
            if self.init_error is not None:
                return self._after_init_error()
            if self.child.poll() is not None:
                if self.signals_forwarded or not self._restart_after_death(self.child.returncode):
                    return self._after_exit(self.child.returncode)
                continue
            remaining = None
            if self.drain_deadline is not None:
                remaining = self.drain_deadline - time.monotonic()
                if remaining <= 0:
                    print(f"{PROG}: runtime still running {DRAIN_GRACE_SECONDS:.0f} s after the signal; "
                          "killing it", file=sys.stderr)
                    self._kill_child()
                    return 1
            self.wake.wait(remaining)
            self.wake.clear()

    def _after_init_error(self) -> int:
        error = self.init_error or {}
        print(f"{PROG}: init error {error.get('type')}: {error.get('message')}", file=sys.stderr)
        from gevent.subprocess import TimeoutExpired

        try:
            self.child.wait(timeout=INIT_ERROR_EXIT_SECONDS)
        except TimeoutExpired:  # the runtime lingers after its init error: kill it
            self._kill_child()
        code = _exit_code(self.child.returncode) if self.child.returncode is not None else 1
        return code or 1

    def _after_exit(self, returncode: int) -> int:
        if not self.signals_forwarded or returncode != 0:
            print(f"{PROG}: runtime exited with {exit_name(returncode)}", file=sys.stderr)
        return _exit_code(returncode)

    def _restart_after_death(self, returncode: int) -> bool:
        """The runtime died by itself: answer what it held, as the platform does, and start it
        again (False: it died in init, or keeps dying at once — the command ends instead)."""
        stats = self.server.sandbox.stats()
        polled, took_work = (stats[name] > self.counts_at_start[name]
                             for name in ("polls_opened_total", "dispatched"))
        answered = self.server.sandbox.runtime_exited(exit_error(returncode), fail_queue=not polled)
        if not polled:
            print(f"{PROG}: the runtime died in init ({exit_name(returncode)}) before it asked "
                  f"for an invocation; {answered} waiting invocation(s) answered with "
                  "Runtime.ExitError", file=sys.stderr)
            return False
        quick = time.monotonic() - self.started_at < QUICK_DEATH_SECONDS and not took_work
        self.quick_deaths = self.quick_deaths + 1 if quick else 0
        if self.quick_deaths >= QUICK_DEATHS_LIMIT:
            print(f"{PROG}: the runtime died {self.quick_deaths} times in a row within "
                  f"{QUICK_DEATH_SECONDS:.0f} s of starting; giving up", file=sys.stderr)
            return False
        print(f"{PROG}: runtime exited with {exit_name(returncode)}; {answered} invocation(s) "
              "it held answered with Runtime.ExitError; starting it again", file=sys.stderr,
              flush=True)
        if self.quick_deaths:
            self.wake.clear()
            self.wake.wait(min(QUICK_DEATH_SECONDS, 0.25 * 2 ** self.quick_deaths))
            if self.signals_forwarded or self.init_error is not None:
                return False
        return self._start_child()

    def _on_init_error(self, error: dict[str, Any]) -> None:
        self.init_error = error
        self.wake.set()

    def _forward(self, sig: int) -> None:
        self.signals_forwarded += 1
        if self.signals_forwarded > 1:
            print(f"{PROG}: second signal; killing the runtime", file=sys.stderr)
            self._kill_child()
            return
        print(f"{PROG}: {signal.Signals(sig).name} forwarded to the runtime; waiting for it to drain "
              "(again to kill it)", file=sys.stderr, flush=True)
        self.drain_deadline = time.monotonic() + DRAIN_GRACE_SECONDS
        self._signal_group(sig)
        self.wake.set()

    def _signal_group(self, sig: int) -> None:
        # The child leads its own process group, so this reaches any workers it forked too
        # (as Lambda signals the whole group), and a terminal's Ctrl-C reaches it only once.
        try:
            os.killpg(self.child.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill_child(self) -> None:
        if self.child is None:
            return
        from gevent.subprocess import TimeoutExpired

        self._signal_group(signal.SIGKILL)
        try:
            self.child.wait(timeout=5)
        except TimeoutExpired:  # unkillable (D state): nothing more can be done from here
            print(f"{PROG}: runtime pid {self.child.pid} did not die after SIGKILL", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
