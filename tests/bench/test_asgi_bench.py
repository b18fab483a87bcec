"""``python -m bench.asgi --quick`` runs end to end: asgi_handler and Mangum measured on every
event shape, and every concurrent invocation of each kind answered. The figures are the
bench's business."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NEEDED = ("fastapi", "mangum", "psutil")


@pytest.mark.timeout(180)
def test_quick_asgi_bench_measures_both_adapters_and_every_kind_of_handler(tmp_path: Path) -> None:
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        reason = f"the asgi bench needs {', '.join(missing)}: pip install -e '.[bench]'"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    run = subprocess.run([sys.executable, "-m", "bench.asgi", "--quick", "--concurrency", "4",
                          "--out", str(tmp_path)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=170)
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    markdown = (tmp_path / "bench-asgi.md").read_text(encoding="utf-8")
    rows = [line for line in markdown.splitlines() if line.startswith(("| FastAPI,", "| bare ASGI,"))]
    assert len(rows) == 6, markdown
    for row in rows:  # a figure for each adapter, and the ratio
        assert len(re.findall(r"\d+\.\d+", row)) == 3, row
    for kind in ("awaits", "sleeps", "blocks_inside_async"):
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {kind} |"))
        assert row.endswith("| 16 / 16 | 4 |"), row  # all answered, all 4 at once
