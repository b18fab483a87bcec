"""The function's own SIGTERM and SIGINT handlers: recorded, and run once the drain is over.

Under awslambdaric a handler module may register ``signal.signal(SIGTERM, flush_and_exit)``
(AWS's graceful-shutdown pattern) and it runs when the platform stops the process. Here the
runtime owns those two signals (they start the drain), so installing the function's handler
would silently replace ours, or ours would silently replace it. Instead :func:`install` wraps
``signal.signal`` and ``signal.getsignal`` before the handler's module is imported — at the
C module ``_signal`` they call, so that every way in (``signal.signal``, ``from signal import
signal``, gevent's ``signal.signal``) meets the wrapper, and a classic cold start does not
import ``signal`` (it builds three enums: ~0.4 ms of a ~35 ms start): the
function's registrations for SIGTERM/SIGINT are recorded (``getsignal`` returns them, as it
would under awslambdaric) and :func:`run_function_handler` calls the recorded handler after
every invocation in flight was answered, in the main thread (the main greenlet in concurrent
mode), where it may block, log and exit. Every other signal is installed as asked.

Stdlib only: used by both modes (docs/design.md, invariant 2).
"""

from __future__ import annotations

import _signal
import logging
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing is not imported on a classic cold start
if TYPE_CHECKING:
    from typing import Any, Callable

log = logging.getLogger("lmi_gevent")

STOP_SIGNALS = (_signal.SIGTERM, _signal.SIGINT)

_real_signal: Callable[..., Any] = _signal.signal
_real_getsignal: Callable[..., Any] = _signal.getsignal
_recorded: dict[int, Any] = {}


def install() -> None:
    """Record the function's SIGTERM/SIGINT registrations from now on (idempotent)."""
    global _real_signal, _real_getsignal
    if _signal.signal is _record:
        return
    _real_signal, _real_getsignal = _signal.signal, _signal.getsignal
    for signum in STOP_SIGNALS:
        _recorded[signum] = _real_getsignal(signum)
    _signal.signal = _record
    _signal.getsignal = _getsignal


def uninstall() -> None:
    """Give the function's recorded handlers back to the process (a forked child is no
    runtime: it keeps the handlers the function asked for)."""
    recorded = dict(_recorded) or {_signal.SIGTERM: _signal.SIG_DFL,
                                   _signal.SIGINT: _signal.default_int_handler}
    if _signal.signal is _record:
        _signal.signal, _signal.getsignal = _real_signal, _real_getsignal
    for signum, handler in recorded.items():
        _real_signal(signum, handler)


def runtime_signal(signum: int, handler: Any) -> Any:
    """The runtime's own registration: installed for real, never recorded."""
    return _real_signal(signum, handler)


def _record(signum: int, handler: Any) -> Any:
    if signum not in _recorded:
        return _real_signal(signum, handler)
    if not (callable(handler) or handler in (_signal.SIG_IGN, _signal.SIG_DFL)):
        raise TypeError("signal handler must be signal.SIG_IGN, signal.SIG_DFL, or a callable "
                        "object")
    previous, _recorded[signum] = _recorded[signum], handler
    return previous


def _getsignal(signum: int) -> Any:
    if signum in _recorded:
        return _recorded[signum]
    return _real_getsignal(signum)


def function_handler(signum: int) -> Callable[[int, Any], Any] | None:
    """The handler the function registered for ``signum``, if it registered one to run."""
    handler = _recorded.get(signum)
    if not callable(handler) or handler is _signal.default_int_handler:
        return None  # SIG_DFL, SIG_IGN and Python's own SIGINT default: the runtime stops
    return handler


def run_function_handler(signum: int | None) -> int | None:
    """After the drain: call the function's handler for ``signum`` as the signal would have.

    Returns the exit code it asked for with ``sys.exit`` (None if it returned); an exception
    it raises is logged and makes the exit code 1. Nothing is running any more, so it may
    block, log or exit without losing an answer.
    """
    handler = function_handler(signum) if signum is not None else None
    if handler is None:
        return None
    import signal  # the stop is over: its enums cost nothing now

    name = signal.Signals(signum).name  # type: ignore[arg-type]
    log.info("Running the function's %s handler %s after the drain.", name,
             getattr(handler, "__qualname__", repr(handler)))
    try:
        handler(signum, sys._getframe())  # type: ignore[arg-type]
    except SystemExit as leaving:
        code = leaving.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)  # sys.exit("message"), as the interpreter would
        return 1
    except BaseException:  # noqa: BLE001 - the runtime is stopping: report and exit 1
        log.exception("The function's %s handler raised", name)
        return 1
    return None
