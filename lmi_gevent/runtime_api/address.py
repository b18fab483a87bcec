"""The Runtime API's address as AWS_LAMBDA_RUNTIME_API gives it (no imports: config.py reads
it before anything else is loaded)."""

from __future__ import annotations


def runtime_api_address(raw: str) -> tuple[str, int] | None:
    """(host, port) from ``host:port``, ``host`` (port 80, as the official client's HTTP
    library reads it), ``[v6]:port`` or ``[v6]``; None when ``raw`` is not an address."""
    if not raw or any(c in "/?#@" or c.isspace() for c in raw):
        return None  # a scheme (http://...), a path, credentials or spaces
    if raw.startswith("["):
        host, bracket, rest = raw[1:].partition("]")
        if not bracket or not host or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else "80"
    else:
        host, sep, port = raw.partition(":")
        if not sep:
            port = "80"
        if not host or ":" in port:
            return None
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)
