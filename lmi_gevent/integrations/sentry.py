"""Sentry's ``AwsLambdaIntegration`` on lmi-gevent (``LMI_GEVENT_SENTRY_INTEGRATION``).

The integration does its work by patching awslambdaric's ``bootstrap`` module: it wraps the
handler that ``bootstrap.handle_event_request`` receives, giving each invocation an isolation
scope of its own (tags, user, breadcrumbs), the Lambda context on its events, its exceptions
captured and a timeout warning. Under any other runtime it finds no such module, logs
"AwsLambdaIntegration disabled" at debug level and does nothing: every invocation then shares
the scope made at init, and handler exceptions never reach Sentry.

When the handler imports the integration and no ``bootstrap`` module exists, a stand-in is
registered under that name: its ``handle_event_request(client, handler)`` hands the handler
back, so once ``sentry_sdk.init()`` has patched it, :func:`wrap_handler` gets the handler as
Sentry wraps it, and the runtime calls that. The stand-in's ``LambdaRuntimeClient`` posts
nothing (lmi-gevent posts the answers); Sentry's events are sent by its transport as usual.
"""

from __future__ import annotations

import sys
from types import ModuleType

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable

BOOTSTRAP = "bootstrap"
INTEGRATION = "sentry_sdk.integrations.aws_lambda"


def install() -> None:
    """Offer the stand-in as soon as the handler imports Sentry's Lambda integration."""
    from .hooks import applied

    applied(INTEGRATION, "sentry", offer_bootstrap)


def _hand_back(lambda_runtime_client: Any, request_handler: Any, *args: Any,
               **kwargs: Any) -> Any:
    return request_handler


class LambdaRuntimeClient:
    """What the integration patches on awslambdaric's client; lmi-gevent posts the answers."""

    def post_init_error(self, *args: Any, **kwargs: Any) -> None:
        return None

    def post_invocation_result(self, *args: Any, **kwargs: Any) -> None:
        return None

    def post_invocation_error(self, *args: Any, **kwargs: Any) -> None:
        return None


def offer_bootstrap(integration: ModuleType) -> None:
    if BOOTSTRAP in sys.modules:
        return  # awslambdaric's own, or a module of the function's: leave it alone
    stand_in = ModuleType(BOOTSTRAP, "lmi-gevent's stand-in for awslambdaric's bootstrap, "
                                     "patched by Sentry's AwsLambdaIntegration")
    stand_in.handle_event_request = _hand_back  # type: ignore[attr-defined]
    stand_in.LambdaRuntimeClient = LambdaRuntimeClient  # type: ignore[attr-defined]
    stand_in.lmi_gevent = True  # type: ignore[attr-defined]
    sys.modules[BOOTSTRAP] = stand_in


def wrap_handler(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``handler`` as Sentry's integration wraps it, if it patched the stand-in; else as is."""
    stand_in = sys.modules.get(BOOTSTRAP)
    if stand_in is None or not getattr(stand_in, "lmi_gevent", False):
        return handler
    patched = getattr(stand_in, "handle_event_request", _hand_back)
    if patched is _hand_back:
        return handler  # imported but never initialised: nothing to wrap
    return patched(None, handler)
