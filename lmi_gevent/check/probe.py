"""Step 1, the import probe: import the handler as the runtime's bootstrap would, in a fresh
interpreter (``python -m lmi_gevent.check``, see ``__main__.py``), and read back what it saw.

The subprocess imports this package first, so the package's top level imports nothing heavy:
the probe must see the interpreter as the runtime's bootstrap does.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .environment import INIT_TIMEOUT, runtime_environment
from .options import Options
from .risks import loaded_risks, sqlite_in_use

PROBE_FLAG = "--probe-import"  # internal: the subprocess side
# The settings of the hooks that adapt libraries as the handler imports them (config.py).
HOOK_SETTINGS = ("powertools_isolation", "pool_sizing", "sentry_integration",
                 "psycopg2_wait_callback", "grpc_gevent")


def import_handler(options: Options) -> dict[str, Any]:
    """Run the import probe in a fresh interpreter; what it saw, or why it could not say."""
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lmi-gevent-check-") as scratch:
        out_path = os.path.join(scratch, "import.json")
        argv = [sys.executable, "-m", "lmi_gevent.check", PROBE_FLAG, out_path, options.handler]
        try:
            done = subprocess.run(argv, cwd=options.root, env=runtime_environment(options),
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=INIT_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return _probe_failed(f"importing the handler took over {INIT_TIMEOUT:g}s "
                                 "(the platform's init timeout)", "Runtime.InitTimeout")
        if done.returncode != 0 or not os.path.exists(out_path):
            output = (done.stdout + done.stderr).decode("utf-8", "replace")
            return _probe_failed(f"the import probe exited with status {done.returncode}",
                                 "Runtime.ExitError", output.splitlines()[-20:])
        with open(out_path, encoding="utf-8") as result:
            return json.load(result)


def _probe_failed(message: str, error_type: str, lines: list[str] | None = None
                  ) -> dict[str, Any]:
    return {"init_seconds": None, "imported_before_patching": [], "non_cooperative": [],
            "error": {"errorType": error_type, "errorMessage": message,
                      "stackTrace": lines or []}}


def probe_import(out_path: str, handler: str) -> int:
    """Import ``handler`` as the runtime's bootstrap would; write what we saw as JSON."""
    from .. import config as settings

    config, problems = settings.load()
    # The probe has no Runtime API; any other bad setting fails init, as in the runtime.
    problems = [p for p in problems if p.env != "AWS_LAMBDA_RUNTIME_API"]
    early: list[str] = []
    if not problems:
        from ..integrations.monkey import patch_all
        early = patch_all()
        from .. import integrations
        integrations.install(config, config.max_concurrency)  # as the runtime does
        if config.sentry_integration:
            from ..integrations.sentry import install as offer_sentry_bootstrap
            offer_sentry_bootstrap()
    import json
    import time

    started = time.perf_counter()
    error = _config_error(problems) if problems else _load(handler, config.task_root)
    seconds = time.perf_counter() - started
    risks = loaded_risks(sys.modules)
    for risk in risks:
        if risk["on_use"]:
            risk["used_at_import"] = risk["module"] == "_sqlite3" and sqlite_in_use()
    result = {"init_seconds": round(seconds, 6), "error": error,
              "imported_before_patching": early, "non_cooperative": risks,
              "hooks": _hooks(config)}
    with open(out_path, "w", encoding="utf-8") as out:
        json.dump(result, out)
    return 0


def _hooks(config: Any) -> dict[str, Any]:
    """The library hooks' settings, and the modules each one adapted at import."""
    from ..integrations.hooks import APPLIED

    return {"settings": {name: getattr(config, name) for name in HOOK_SETTINGS},
            "applied": dict(sorted(APPLIED.items()))}


def _load(handler: str, task_root: str | None) -> dict[str, Any] | None:
    """Load the handler like the runtime; its init error body (trimmed), or None."""
    from ..invocation.loader import load_handler
    from ..runtime_api.errors import describe_exception

    sys.path.insert(0, task_root or os.getcwd())
    try:
        load_handler(handler)
    except BaseException as problem:  # noqa: BLE001 - SystemExit at import is an init error
        body, _ = describe_exception(problem)
        return {key: body.get(key) for key in ("errorType", "errorMessage", "stackTrace")}
    return None


def _config_error(problems: list[Any]) -> dict[str, Any]:
    from ..runtime_api.errors import CONFIGURATION_ERROR

    return {"errorType": CONFIGURATION_ERROR, "stackTrace": [],
            "errorMessage": "; ".join(str(problem) for problem in problems)}
