"""A C extension that crashes: the whole process dies, with every invocation in it."""

import ctypes
import time


def handler(event, context):
    time.sleep(0.05)
    ctypes.string_at(0)  # SITE: reads address 0, SIGSEGV
    return {"unreachable": True}
