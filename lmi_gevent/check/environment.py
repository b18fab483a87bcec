"""The environment the handler sees under ``lmi-gevent check``: as on Managed Instances, as
far as the handler cares."""

from __future__ import annotations

import os

from ..diagnostics.shared_state import GLOBALS_ENV
from .options import Options

INIT_TIMEOUT = 130.0  # the platform's init timeout on Managed Instances (at least)


def runtime_environment(options: Options) -> dict[str, str]:
    """What the runtime would see on Managed Instances (as far as the handler cares)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env.update(options.env)  # --env: the handler's own settings; check's own keys still win
    env.update({
        "LAMBDA_TASK_ROOT": options.root, "_HANDLER": options.handler,
        "AWS_LAMBDA_MAX_CONCURRENCY": str(options.concurrency),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "lambda-managed-instances",
        "PYTHONUNBUFFERED": "1",
        GLOBALS_ENV: "1",
        # An uninstalled checkout must still find lmi_gevent in the subprocess.
        "PYTHONPATH": os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p),
    })
    return env
