"""Event factories in the shapes each Lambda HTTP source sends (AWS's documented samples,
trimmed to what the adapter reads)."""

from __future__ import annotations

import base64
from typing import Any


def rest_v1(path: str = "/", *, method: str = "GET", headers: dict[str, str] | None = None,
            multi_headers: dict[str, list[str]] | None = None, query: dict[str, str] | None = None,
            multi_query: dict[str, list[str]] | None = None, body: bytes | str | None = None,
            binary: bool = False, stage_path: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": headers, "multiValueHeaders": multi_headers,
        "queryStringParameters": query, "multiValueQueryStringParameters": multi_query,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": method, "stage": "prod",
                           "path": stage_path or path, "protocol": "HTTP/1.1",
                           "identity": {"sourceIp": "198.51.100.7"}},
        "isBase64Encoded": binary,
    }
    event["body"] = _body(body, binary)
    return event


def http_v2(raw_path: str = "/", *, method: str = "GET", headers: dict[str, str] | None = None,
            raw_query: str = "", cookies: list[str] | None = None, body: bytes | str | None = None,
            binary: bool = False, stage: str = "$default",
            domain: str = "r3pmxmplak.execute-api.us-east-1.amazonaws.com") -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": raw_query,
        "headers": {"host": domain, **(headers or {})},
        "requestContext": {"domainName": domain, "stage": stage,
                           "http": {"method": method, "path": raw_path.rstrip("/") or "/",
                                    "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9"}},
        "isBase64Encoded": binary,
    }
    if cookies is not None:
        event["cookies"] = cookies
    if body is not None:
        event["body"] = _body(body, binary)
    return event


def function_url(raw_path: str = "/", **options: Any) -> dict[str, Any]:
    return http_v2(raw_path, domain="a1b2c3d4e5.lambda-url.us-east-1.on.aws", **options)


def alb(path: str = "/", *, method: str = "GET", headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None, multi: bool = False,
        multi_headers: dict[str, list[str]] | None = None,
        multi_query: dict[str, list[str]] | None = None, body: bytes | str | None = None,
        binary: bool = False) -> dict[str, Any]:
    event: dict[str, Any] = {
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:"
                                   "123456789012:targetgroup/lambda/50dc6c495c0c9188"}},
        "httpMethod": method, "path": path, "isBase64Encoded": binary, "body": _body(body, binary),
    }
    if multi:
        event["multiValueHeaders"] = multi_headers or {}
        event["multiValueQueryStringParameters"] = multi_query or {}
    else:
        event["headers"] = headers or {}
        event["queryStringParameters"] = query or {}
    return event


def lattice_v1(raw_path: str = "/", *, method: str = "GET", headers: dict[str, str] | None = None,
               query: dict[str, str] | None = None, body: bytes | str | None = None,
               binary: bool = False) -> dict[str, Any]:
    return {"raw_path": raw_path, "method": method, "headers": headers or {},
            "query_string_parameters": query or {}, "body": _body(body, binary),
            "is_base64_encoded": binary}


def lattice_v2(path: str = "/", *, method: str = "GET", headers: dict[str, list[str]] | None = None,
               query: dict[str, list[str]] | None = None, body: bytes | str | None = None,
               binary: bool = False) -> dict[str, Any]:
    return {
        "version": "2.0", "path": path, "method": method, "headers": headers or {},
        "queryStringParameters": query or {}, "body": _body(body, binary), "isBase64Encoded": binary,
        "requestContext": {
            "serviceNetworkArn": "arn:aws:vpc-lattice:us-east-2:123456789012:servicenetwork/sn-0bf3f2882e9cc805a",
            "serviceArn": "arn:aws:vpc-lattice:us-east-2:123456789012:service/svc-0a40eebed65f8d69c",
            "targetGroupArn": "arn:aws:vpc-lattice:us-east-2:123456789012:targetgroup/tg-6d0ecf831eec9f09",
            "identity": {"sourceVpcArn": "arn:aws:ec2:us-east-2:123456789012:vpc/vpc-0b8276c84697e7339"},
            "region": "us-east-2", "timeEpoch": "1690497599177430"},
    }


def _body(body: bytes | str | None, binary: bool) -> str | None:
    if body is None:
        return None
    if binary:
        return base64.b64encode(body if isinstance(body, bytes) else body.encode()).decode()
    return body if isinstance(body, str) else body.decode()
