"""A local Lambda Runtime API + Invoke API for lmi-gevent's tests, benchmarks and the
``lmi-gevent local`` command.

Nothing is imported here: ``api`` is stdlib-only and safe to import from tests, while
``server`` (gevent) is only loaded by the emulator's own process or by ``local``.
"""
