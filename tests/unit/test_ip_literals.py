"""patching.resolve_ip_literals_inline: IP literals skip gevent's resolver thread pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent("""
    import json
    from gevent import monkey; monkey.patch_all()
    import gevent, socket
    from lmi_gevent import patching

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
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {"same": True, "to_resolver": ["localhost"]}
