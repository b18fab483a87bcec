"""A stand-in for ``python -m lmi_gevent HANDLER`` used by the ``local`` tests.

STANDIN_MODE: serve (default: echo with a little context; SIGINT/SIGTERM drain and exit 0),
init_error (post an init error, exit 1), crash (exit 3 at once), stubborn (ignore signals).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys

MODE = os.environ.get("STANDIN_MODE", "serve")
API = os.environ["AWS_LAMBDA_RUNTIME_API"]
SHOWN_ENV = ("AWS_LAMBDA_MAX_CONCURRENCY", "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_FUNCTION_NAME",
             "LAMBDA_TASK_ROOT", "EXTRA")


class Drain(Exception):
    pass


def on_signal(signum, frame):
    raise Drain(signum)


def post_init_error(conn: http.client.HTTPConnection) -> None:
    body = json.dumps({"errorType": "Runtime.ImportModuleError", "errorMessage": "No module named 'nothere'",
                       "requestId": "", "stackTrace": []})
    conn.request("POST", "/2018-06-01/runtime/init/error", body=body,
                 headers={"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"})
    conn.getresponse().read()


def serve(conn: http.client.HTTPConnection) -> None:
    while True:
        conn.request("GET", "/2018-06-01/runtime/invocation/next")
        response = conn.getresponse()
        event = json.loads(response.read())
        answer = {"event": event, "pid": os.getpid(), "handler": sys.argv[1],
                  "env": {key: os.environ.get(key) for key in SHOWN_ENV}}
        request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
        conn.request("POST", f"/2018-06-01/runtime/invocation/{request_id}/response",
                     body=json.dumps(answer),
                     headers={"Lambda-Runtime-Invocation-Id": response.getheader("Lambda-Runtime-Invocation-Id")})
        conn.getresponse().read()


def main() -> int:
    if MODE == "crash":
        print("stand-in: crashing", flush=True)
        return 3
    host, _, port = API.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port))
    if MODE == "init_error":
        post_init_error(conn)
        return 1
    if MODE == "stubborn":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
    print(f"stand-in: ready pid={os.getpid()}", flush=True)
    try:
        serve(conn)
    except Drain as exc:
        print(f"stand-in: drained after signal {exc.args[0]}", flush=True)
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
