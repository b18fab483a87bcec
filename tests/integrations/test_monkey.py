"""patching.resolve_ip_literals_inline: IP literals skip gevent's resolver thread pool."""

from __future__ import annotations

import textwrap

from tests.support import run_python

PROBE = textwrap.dedent("""
    import json
    from gevent import monkey; monkey.patch_all()
    import gevent, socket
    from lmi_gevent.integrations import monkey as patching

    resolver = gevent.get_hub().resolver
    sent = []
    original = resolver.getaddrinfo
    def counting(*args, **kwargs):
        sent.append(args[0])
        return original(*args, **kwargs)
    resolver.getaddrinfo = counting

    expected = {host: socket.getaddrinfo(host, 80, 0, socket.SOCK_STREAM)
                for host in ("127.0.0.1", "::1", b"10.1.2.3")}
    sent.clear()
    patching.resolve_ip_literals_inline()
    same = all(socket.getaddrinfo(host, 80, 0, socket.SOCK_STREAM) == answer
               for host, answer in expected.items())
    socket.getaddrinfo("localhost", 80)  # a name (from /etc/hosts: no network)
    print(json.dumps({"same": same, "to_resolver": [str(host) for host in sent]}))
""")


def test_ip_literals_are_answered_inline_and_names_still_go_to_the_resolver() -> None:
    assert run_python(PROBE) == {"same": True, "to_resolver": ["localhost"]}
