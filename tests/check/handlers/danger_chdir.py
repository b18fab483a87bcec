"""A working directory per invocation: one process, one working directory for all."""

import os
import tempfile
import time

BASE = tempfile.mkdtemp(prefix="corpus-chdir-")


def handler(event, context):
    workdir = os.path.join(BASE, str(event["job"]))
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)  # SITE
    time.sleep(0.2)
    return {"cwd": os.getcwd()}
