"""Powertools for AWS Lambda (Python) 3.x, per invocation (``LMI_GEVENT_POWERTOOLS_ISOLATION``).

Powertools keeps each invocation's state on objects made once at import, which is right with a
process per slot (the official client) and wrong when one process serves several invocations
at once. Each hook below runs the moment the handler imports the Powertools module it names
and makes that state per invocation with :mod:`lmi_gevent.integrations.isolation`:

* Logger: the formatter's keys (``append_keys``, ``remove_keys``, ``inject_lambda_context``'s
  request id, cold start and correlation id, ``clear_state``). Keys appended at import stay
  visible to every invocation. The ``thread_safe_*`` keys already live in a context variable;
  only their removal is made copy-on-write, as it edited the dict the slots share in place.
* Metrics (CloudWatch EMF): the metric, dimension and metadata sets, default dimensions,
  dimension sets and timestamp of ``Metrics`` (whose sets are class-level, shared by every
  instance) and of its provider (also ``EphemeralMetrics`` and ``single_metric``).
* Event handler: ``current_event``, ``lambda_context`` (assigned on the router classes),
  ``context`` (``append_context``) and the middleware frames of the REST/HTTP API/ALB/
  Function URL/VPC Lattice/Bedrock agent resolvers (one ``BaseRouter``), AppSync GraphQL and
  AppSync Events resolvers, and the Bedrock agent function resolver.

* Idempotency: the Lambda context ``register_lambda_context`` stores on the config (its
  remaining time sets the in-progress record's expiry).
* Batch processing: the records, handler, context, successes, failures and response a
  module-level ``BatchProcessor`` (and the SQS FIFO one's group state) keeps per batch.

Tracer needs nothing: the X-Ray SDK keeps its entities thread-local, which the patching makes
greenlet-local, and reads the trace id from ``_X_AMZN_TRACE_ID``, which lmi-gevent keeps per
invocation. Parameters keeps only a cache of values fetched by name, the same for every
invocation, so it is shared as it is across invocations of one process.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable

from .hooks import applied
from .isolation import deep_fork, isolate_attributes, isolate_class_attributes

_PACKAGE = "aws_lambda_powertools"
_EVENT_HANDLER = f"{_PACKAGE}.event_handler"
ROUTER_STATE = ("current_event", "lambda_context")


def isolate_logger_keys(formatter: ModuleType) -> None:
    isolate_attributes(formatter.LambdaPowertoolsFormatter, ["log_format"])
    context_keys = formatter._get_context

    def remove_context_keys(keys: Any) -> None:
        # Powertools pops from the dict in place; every slot's context holds the same one.
        keep = dict(context_keys().get())
        for key in keys:
            keep.pop(key, None)
        context_keys().set(keep)

    setattr(formatter, "remove_context_keys", remove_context_keys)  # noqa: B010 - a module attribute mypy cannot see


def isolate_emf_provider(cloudwatch: ModuleType) -> None:
    isolate_attributes(cloudwatch.AmazonCloudWatchEMFProvider,
                       ["metric_set", "dimension_set", "default_dimensions", "metadata_set",
                        "dimension_sets", "timestamp"], deep_fork)


def isolate_metrics(metrics: ModuleType) -> None:
    isolate_attributes(metrics.Metrics,
                       ["metric_set", "dimension_set", "default_dimensions", "metadata_set"],
                       deep_fork)


def isolate_api_gateway(api_gateway: ModuleType) -> None:
    base = api_gateway.BaseRouter
    isolate_class_attributes(base, [*ROUTER_STATE, "processed_stack_frames"])
    isolate_attributes(base, ["context"])
    isolate_attributes(api_gateway.Router, ["_context"])  # Router.context is a property


def isolate_appsync_router(router: ModuleType) -> None:
    isolate_class_attributes(router.Router, [*ROUTER_STATE, "current_batch_event"])
    isolate_attributes(router.Router, ["context"])


def isolate_bedrock_functions(module: ModuleType) -> None:
    isolate_attributes(module.BedrockAgentFunctionResolver, ["current_event", "context"])


def isolate_idempotency_config(config: ModuleType) -> None:
    # register_lambda_context stores the context on the (module-level) config; the remaining
    # time read from it sets the in-progress record's expiry.
    isolate_attributes(config.IdempotencyConfig, ["lambda_context"])


BATCH_STATE = ("records", "handler", "lambda_context", "_handler_accepts_lambda_context",
               "success_messages", "fail_messages", "exceptions", "batch_response")


def isolate_batch_processor(base: ModuleType) -> None:
    isolate_attributes(base.BasePartialProcessor, BATCH_STATE)


def isolate_fifo_processor(fifo: ModuleType) -> None:
    isolate_attributes(fifo.SqsFifoPartialProcessor, ["_current_group_id", "_failed_group_ids"])


HOOKS: tuple[tuple[str, Callable[[ModuleType], Any]], ...] = (
    (f"{_PACKAGE}.logging.formatter", isolate_logger_keys),
    (f"{_PACKAGE}.metrics.provider.cloudwatch_emf.cloudwatch", isolate_emf_provider),
    (f"{_PACKAGE}.metrics.metrics", isolate_metrics),
    (f"{_EVENT_HANDLER}.api_gateway", isolate_api_gateway),
    (f"{_EVENT_HANDLER}.graphql_appsync.router", isolate_appsync_router),
    (f"{_EVENT_HANDLER}.events_appsync.router", isolate_appsync_router),
    (f"{_EVENT_HANDLER}.bedrock_agent_function", isolate_bedrock_functions),
    (f"{_PACKAGE}.utilities.idempotency.config", isolate_idempotency_config),
    (f"{_PACKAGE}.utilities.batch.base", isolate_batch_processor),
    (f"{_PACKAGE}.utilities.batch.sqs_fifo_partial_processor", isolate_fifo_processor),
)


def install() -> None:
    """Make Powertools keep its state per invocation, now or as the handler imports it."""
    for module, hook in HOOKS:
        applied(module, "powertools", hook)
