"""Response streaming from a plain WSGI app: server-sent events and a large CSV export, each
chunk sent as it is produced. Deploy behind a Function URL with InvokeMode: RESPONSE_STREAM
(see template.yaml), or run it locally and watch the chunks arrive:
    lmi-gevent local examples/streaming_app.handler --function-url --concurrency 8
    curl -N 'http://127.0.0.1:8080/events?count=5&interval=0.5'
    curl -N 'http://127.0.0.1:8080/export.csv?rows=100000' | tail -3
"""

import json
import time
from urllib.parse import parse_qs

from lmi_gevent.http import wsgi_handler

MAX_INTERVAL = 10.0


def events(count, interval):
    # time.sleep is gevent's in concurrent mode: other invocations run while a stream waits.
    for number in range(count):
        if number:
            time.sleep(interval)
        data = json.dumps({"number": number, "time": time.time()})
        yield f"id: {number}\nevent: tick\ndata: {data}\n\n".encode()


def csv_rows(rows):
    yield b"id,name,score\n"
    batch = []
    for number in range(rows):
        batch.append(f"{number},user{number},{number * 7 % 100}\n")
        if len(batch) == 1000:  # ~25 KB chunks: big enough to be cheap, small enough to flow
            yield "".join(batch).encode()
            batch = []
    if batch:
        yield "".join(batch).encode()


def app(environ, start_response):
    query = {key: values[-1] for key, values in parse_qs(environ["QUERY_STRING"]).items()}
    route = environ["PATH_INFO"]
    if route == "/events":
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
        return events(int(query.get("count", "10")),
                      min(float(query.get("interval", "1")), MAX_INTERVAL))
    if route == "/export.csv":
        start_response("200 OK", [("Content-Type", "text/csv"),
                                  ("Content-Disposition", 'attachment; filename="export.csv"')])
        return csv_rows(int(query.get("rows", "10000")))
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"try /events or /export.csv\n"]


handler = wsgi_handler(app, streaming=True)
