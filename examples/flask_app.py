"""A Flask app served from any Lambda HTTP source (API Gateway, Function URL, ALB, VPC Lattice).

Run it behind a local Function URL and open http://127.0.0.1:8080/ in a browser:
    lmi-gevent local examples/flask_app.handler --function-url --concurrency 8
"""

import base64

from flask import Flask, jsonify, make_response, redirect, request, url_for

from lmi_gevent.http import wsgi_handler

app = Flask(__name__)

# A 1x1 transparent PNG: binary bodies go out base64-encoded and arrive as bytes.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")


@app.get("/")
def index():
    visits = int(request.cookies.get("visits", "0")) + 1
    page = make_response(f"<h1>Hello from Lambda</h1><p>Visit number {visits}.</p>"
                         f'<p><a href="{url_for("hello", name="you")}">say hello</a></p>'
                         f'<img src="{url_for("pixel")}" alt="pixel">')
    page.set_cookie("visits", str(visits))
    page.set_cookie("seen", "yes", httponly=True)
    return page


@app.get("/hello/<name>/")
def hello(name):
    return jsonify(message=f"Hello, {name}!", query=request.args.to_dict(flat=False),
                   request_id=request.environ["lambda.context"].aws_request_id)


@app.post("/echo")
def echo():
    return request.get_data(), 200, {"Content-Type": request.content_type or "application/octet-stream"}


@app.get("/pixel.png")
def pixel():
    return PIXEL, 200, {"Content-Type": "image/png"}


@app.get("/old")
def old():
    return redirect(url_for("index"))


handler = wsgi_handler(app)
