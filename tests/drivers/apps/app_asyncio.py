"""A sync handler that runs async code with asyncio.run(): stdlib asyncio streams GET from a
local server that answers after a delay (HTTPS with the CA from SSL_CERT_FILE)."""

from __future__ import annotations

import asyncio
import json
import ssl
from urllib.parse import urlsplit

from overlap_meter import answer, waiting


async def fetch(url: str) -> dict:
    parts = urlsplit(url)
    tls = ssl.create_default_context() if parts.scheme == "https" else None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port, ssl=tls)
    try:
        writer.write(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=10)  # a task of this loop's own
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    return json.loads(body)


def handler(event, context):
    with waiting():
        body = asyncio.run(fetch(event["url"]))
    return answer(body=body)
