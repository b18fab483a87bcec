"""Run as a script by test_resolvers.py: every Powertools resolver at module level, 8
requests at once on greenlets (as lmi-gevent's slots run them), each route reading
``current_event``, ``lambda_context`` and ``context`` after a wait. Prints, per resolver, how
many requests read their own. argv[1]: "on" installs lmi-gevent's isolation, "off" does not."""

from __future__ import annotations

import json
import sys

from lmi_gevent.integrations.monkey import patch_all

patch_all()

from lmi_gevent.integrations import powertools  # noqa: E402
from lmi_gevent.invocation.context import REQUEST_ID  # noqa: E402

if sys.argv[1] == "on":
    powertools.install()

import gevent  # noqa: E402
from aws_lambda_powertools.event_handler import (  # noqa: E402
    ALBResolver, APIGatewayHttpResolver, APIGatewayRestResolver, AppSyncEventsResolver,
    AppSyncResolver, BedrockAgentFunctionResolver, BedrockAgentResolver,
    LambdaFunctionUrlResolver, VPCLatticeResolver, VPCLatticeV2Resolver)

REQUESTS = 8


class Context:
    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id
        self.function_name = "function"


def record(app: object, marker: str) -> None:
    """What the route reads after its I/O wait, kept on the greenlet that resolves it."""
    app.append_context(marker=marker)
    gevent.sleep(0.05)
    gevent.getcurrent().read = (app.current_event.raw_event["marker"],
                                app.lambda_context.aws_request_id, app.context.get("marker"))


def http_app(resolver: type) -> object:
    app = resolver()

    @app.get("/orders/<marker>")
    def get_order(marker: str) -> dict:
        record(app, marker)
        return {}

    return app


def router_app() -> object:
    """Routes on a Router (another file, in a real project) included into the resolver: the
    router reads the request through the resolver it was included into."""
    from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

    router = APIGatewayHttpRouter()

    @router.get("/orders/<marker>")
    def get_order(marker: str) -> dict:
        record(router, marker)
        return {}

    app = APIGatewayHttpResolver()
    app.include_router(router)
    return app


def rest(m: str) -> dict:
    return {"httpMethod": "GET", "path": f"/orders/{m}", "resource": "/orders/{marker}",
            "headers": {}, "multiValueHeaders": {}, "queryStringParameters": None,
            "requestContext": {"requestId": m, "stage": "prod"}, "body": None,
            "isBase64Encoded": False}


def v2(m: str) -> dict:
    return {"version": "2.0", "rawPath": f"/orders/{m}", "rawQueryString": "", "headers": {},
            "requestContext": {"http": {"method": "GET", "path": f"/orders/{m}"},
                               "requestId": m, "stage": "$default"}, "isBase64Encoded": False}


def alb(m: str) -> dict:
    return {"httpMethod": "GET", "path": f"/orders/{m}", "headers": {}, "body": "",
            "requestContext": {"elb": {"targetGroupArn": "arn:tg"}}, "isBase64Encoded": False}


def lattice(m: str) -> dict:
    return {"raw_path": f"/orders/{m}", "method": "GET", "headers": {}, "body": "",
            "query_string_parameters": {}, "is_base64_encoded": False}


def lattice_v2(m: str) -> dict:
    return {"version": "2.0", "path": f"/orders/{m}", "method": "GET", "headers": {},
            "queryStringParameters": {}, "body": "", "isBase64Encoded": False,
            "requestContext": {"serviceNetworkArn": "arn:sn", "region": "us-east-1"}}


def bedrock_agent_app() -> object:
    app = BedrockAgentResolver()

    @app.get("/orders", description="an order")
    def get_order() -> dict:
        record(app, app.current_event.raw_event["marker"])
        return {}

    return app


def bedrock_agent(m: str) -> dict:
    return {"messageVersion": "1.0", "apiPath": "/orders", "httpMethod": "GET",
            "actionGroup": "orders", "sessionId": m, "inputText": "", "parameters": [],
            "sessionAttributes": {}, "promptSessionAttributes": {},
            "agent": {"name": "a", "id": "i", "alias": "x", "version": "1"}}


def appsync_app() -> object:
    app = AppSyncResolver()

    @app.resolver(type_name="Query", field_name="getOrder")
    def get_order(marker: str) -> dict:
        record(app, marker)
        return {}

    return app


def appsync(m: str) -> dict:
    return {"typeName": "Query", "fieldName": "getOrder", "arguments": {"marker": m},
            "identity": None, "source": None, "request": {"headers": {}},
            "info": {"fieldName": "getOrder", "parentTypeName": "Query", "variables": {}}}


def appsync_events_app() -> object:
    app = AppSyncEventsResolver()

    @app.on_publish("/default/*")
    def publish(payload: dict) -> dict:
        record(app, app.current_event.raw_event["marker"])
        return payload

    return app


def appsync_events(m: str) -> dict:
    return {"identity": None, "request": {"headers": {}, "domainName": None},
            "info": {"channel": {"path": "/default/orders", "segments": ["default", "orders"]},
                     "channelNamespace": {"name": "default"}, "operation": "PUBLISH"},
            "events": [{"id": "1", "payload": {"n": 1}}], "stash": {}}


def bedrock_functions_app() -> object:
    app = BedrockAgentFunctionResolver()

    @app.tool(name="get_order")
    def get_order() -> dict:
        # this resolver has no append_context: its context is the dict itself
        app.context["marker"] = app.current_event.raw_event["marker"]
        gevent.sleep(0.05)
        gevent.getcurrent().read = (app.current_event.raw_event["marker"], None,
                                    app.context.get("marker"))
        return {}

    return app


def bedrock_functions(m: str) -> dict:
    return {"messageVersion": "1.0", "function": "get_order", "parameters": [],
            "actionGroup": "orders", "sessionId": m, "inputText": "",
            "agent": {"name": "a", "id": "i", "alias": "x", "version": "1"}}


CASES = {
    "rest": (lambda: http_app(APIGatewayRestResolver), rest),
    "http_api": (lambda: http_app(APIGatewayHttpResolver), v2),
    "http_api_router": (router_app, v2),
    "function_url": (lambda: http_app(LambdaFunctionUrlResolver), v2),
    "alb": (lambda: http_app(ALBResolver), alb),
    "vpc_lattice": (lambda: http_app(VPCLatticeResolver), lattice),
    "vpc_lattice_v2": (lambda: http_app(VPCLatticeV2Resolver), lattice_v2),
    "bedrock_agent": (bedrock_agent_app, bedrock_agent),
    "appsync": (appsync_app, appsync),
    "appsync_events": (appsync_events_app, appsync_events),
    "bedrock_agent_function": (bedrock_functions_app, bedrock_functions),
}


def serve(app: object, make_event: object, marker: str) -> tuple[bool, object]:
    REQUEST_ID.set(f"req-{marker}")  # what lmi-gevent's invoke path sets in each slot
    event = {**make_event(marker), "marker": marker}
    app.resolve(event, Context(f"req-{marker}"))
    read = getattr(gevent.getcurrent(), "read", None)
    expected_id = None if read and read[1] is None else f"req-{marker}"
    return read == (marker, expected_id, marker), read


def main() -> None:
    own = {}
    for name, (make_app, make_event) in CASES.items():
        app = make_app()  # at "import", outside any invocation
        jobs = [gevent.spawn(serve, app, make_event, f"m{i}") for i in range(REQUESTS)]
        gevent.joinall(jobs, raise_error=True)
        own[name] = sum(1 for job in jobs if job.value[0])
    print(json.dumps(own))


main()
