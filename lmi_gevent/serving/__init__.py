"""Serving invocations in one process: the classic sequential loop, the N slot greenlets of
concurrent mode, and how concurrent mode stops (drain on SIGTERM, or a native thread when the
event loop is held).

Internal: nothing here is public API. Only :mod:`.sequential` may be imported without gevent.
"""
