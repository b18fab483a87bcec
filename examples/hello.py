"""The smallest handler. Run: lmi-gevent local examples/hello.handler --concurrency 4"""


def handler(event, context):
    name = event.get("name", "world")
    return {"message": f"Hello, {name}!", "request_id": context.aws_request_id}
