"""The FastAPI app ``bench.asgi`` serves through each adapter (a module of its own: FastAPI
reads the endpoint's annotations from the module's globals)."""

from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.api_route("/items/{number}", methods=["GET", "POST"])
async def item(number: int, request: Request, q: str | None = None) -> Response:
    body = await request.body()
    response = Response(f'{{"number": {number}, "q": "{q}", "size": {len(body)}}}',
                        media_type="application/json")
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response
