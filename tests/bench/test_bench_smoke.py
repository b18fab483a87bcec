"""The bench runs end to end: ``python -m bench --quick`` writes a table with both runtimes'
rows and a PNG plot. How fast anything is, is the bench's business, not this test's."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NEEDED = ("psutil", "matplotlib", "awslambdaric", "requests")


def _missing() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def _require_bench_extra() -> None:
    missing = _missing()
    if not missing:
        return
    reason = (f"the bench needs {', '.join(missing)}: pip install -e '.[bench]' "
              f"(awslambdaric, psutil, matplotlib, requests)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def _table_rows(markdown: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in markdown.splitlines() if line.startswith("|") and "---" not in line]


@pytest.mark.timeout(120)
def test_quick_bench_writes_a_table_with_both_runtimes_and_a_plot(tmp_path: Path) -> None:
    _require_bench_extra()
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=110)
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"

    markdown = (tmp_path / "bench.md").read_text(encoding="utf-8")
    runtimes = {cell for row in _table_rows(markdown) for cell in row}
    assert {"lmi-gevent", "lmi-gevent K=auto", "awslambdaric"} <= runtimes, markdown
    assert "Skipped or failed" not in markdown, markdown

    png = (tmp_path / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
