"""Write the settings reference from the declarations in ``lmi_gevent/config.py``.

    python tools/settings_page.py > docs/settings.md

``tests/test_docs.py`` fails when docs/settings.md differs from what this prints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmi_gevent import config  # noqa: E402

HEADER = """# Settings

Every environment variable lmi-gevent reads, generated from the declarations in
`lmi_gevent/config.py` by `python tools/settings_page.py > docs/settings.md` (a test fails when
this page is stale). `lmi-gevent --help` prints the same list.

Invalid values are reported together as one `Runtime.ConfigurationError` init error that names
every variable at fault. The `context` object also reads `AWS_LAMBDA_FUNCTION_NAME`,
`AWS_LAMBDA_FUNCTION_VERSION`, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, `AWS_LAMBDA_LOG_GROUP_NAME` and
`AWS_LAMBDA_LOG_STREAM_NAME`; `AWS_EXECUTION_ENV=AWS_Lambda_python3.12` and later keep non-ASCII
characters unescaped in responses, as the official client does.

| variable | default | meaning |
|---|---|---|
"""


def shown(default: Any) -> str:
    if default is None:
        return "unset"
    if default is True:
        return "`on`"
    if default is False:
        return "`off`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


def render() -> str:
    rows = []
    for setting in config.SETTINGS:
        meaning = setting.doc.replace("|", "\\|")
        rows.append(f"| `{setting.env}` | {shown(setting.default)} | {meaning} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
