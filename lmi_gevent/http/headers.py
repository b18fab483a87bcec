"""The header fields an HTTP answer may carry, checked before an answer leaves the adapter.

An app that echoes request input into a header (``Location: /x\\r\\nSet-Cookie: evil=1``)
would otherwise split the response once the platform writes it as HTTP. As WSGI servers do,
a name must be an RFC 9110 token and a value may hold no control character but HTAB
(CR, LF and NUL included); text beyond ASCII is let through (obs-text), the platform encodes it.

Every answer writer in :mod:`.sources` and the streamed prelude (:func:`lmi_gevent.streaming.
http_prelude`) call :func:`check_fields`, so any adapter built on them gets the check.
Stdlib only, no gevent.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

# RFC 9110 section 5.6.2: token = 1*tchar
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
# RFC 9110 section 5.5: field-vchar and obs-text, with SP and HTAB between them
_FORBIDDEN_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]").search
_FORBIDDEN_IN_REASON = _FORBIDDEN_IN_VALUE


class ForbiddenHeader(ValueError):
    """A header field (or status line) the app's answer may not carry; the message names it."""


def check_fields(fields: Iterable[tuple[Any, Any]]) -> None:
    """Raise :class:`ForbiddenHeader` naming the first field HTTP forbids in an answer."""
    for name, value in fields:
        check_field(name, value)


# Names already found to be tokens: apps send the same few, so most checks end here.
# Bounded, since a hostile app could send endless names.
_TOKENS_SEEN: set[str] = set()
_TOKENS_SEEN_MAX = 1024


def check_field(name: Any, value: Any) -> None:
    if type(name) is not str or name not in _TOKENS_SEEN:
        if type(name) is not str or not _TOKEN(name):
            raise ForbiddenHeader(f"the answer's header name {_shown(name)} is not an HTTP "
                                  "token (RFC 9110 section 5.6.2)")
        if len(_TOKENS_SEEN) < _TOKENS_SEEN_MAX:
            _TOKENS_SEEN.add(name)
    if type(value) is not str:
        raise ForbiddenHeader(f"the answer's header {name} has a {type(value).__name__} value; "
                              "header values must be str")
    if value.isprintable():  # no control character at all: the common case, checked in C
        return
    bad = _FORBIDDEN_IN_VALUE(value)
    if bad:
        raise ForbiddenHeader(f"the answer's header {name} carries the control character "
                              f"{bad.group()!r} at {bad.start()}, which HTTP forbids in a value "
                              "(it could split the response)")


def check_cookies(cookies: Iterable[Any]) -> None:
    """The ``cookies`` of a payload 2.0 answer: each becomes a ``Set-Cookie`` value."""
    for cookie in cookies:
        check_field("Set-Cookie", cookie)


def check_reason(reason: str) -> None:
    """The reason phrase of a status line, which ALB and VPC Lattice answers carry."""
    bad = _FORBIDDEN_IN_REASON(reason)
    if bad:
        raise ForbiddenHeader(f"the answer's status reason carries the control character "
                              f"{bad.group()!r} at {bad.start()}, which HTTP forbids")


def _shown(name: Any) -> str:
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."
