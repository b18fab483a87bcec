"""``python -m bench.adapter --quick`` runs end to end: every adapter measured on every event
shape, and the concurrent streams all delivered. The figures are the bench's business."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NEEDED = ("apig_wsgi", "serverless_wsgi", "flask")


@pytest.mark.timeout(120)
def test_quick_adapter_bench_measures_each_adapter_and_the_streams(tmp_path: Path) -> None:
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        reason = f"the adapter bench needs {', '.join(missing)}: pip install -e '.[bench]'"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    run = subprocess.run([sys.executable, "-m", "bench.adapter", "--quick", "--streams", "4",
                          "--out", str(tmp_path)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=110)
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    markdown = (tmp_path / "bench-adapter.md").read_text(encoding="utf-8")
    rows = [line for line in markdown.splitlines() if line.startswith("| Flask,") or line.startswith("| bare")]
    assert len(rows) == 8, markdown
    for row in rows:  # a figure for each of the three adapters, and the ratio
        assert len(re.findall(r"\d+\.\d+", row)) >= 6, row
    assert "| events received (expected 12) | 12 |" in markdown, markdown
    assert "| max in flight (emulator) | 4 |" in markdown, markdown
