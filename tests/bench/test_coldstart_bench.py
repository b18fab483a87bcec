"""``python -m bench coldstart --quick`` runs end to end, and its timeline replay counts right."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.coldstart import Start, all_polls_open_at, table

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_all_polls_open_is_the_first_moment_n_polls_wait_at_once() -> None:
    events = [{"t": 1.0, "kind": "poll_open"}, {"t": 1.1, "kind": "dispatch"},  # taken at once
              {"t": 1.2, "kind": "poll_open"}, {"t": 1.3, "kind": "poll_open"},
              {"t": 1.4, "kind": "answer"}, {"t": 1.5, "kind": "poll_open"}]
    assert all_polls_open_at(events, 2) == 1.3
    assert all_polls_open_at(events, 3) == 1.5
    with pytest.raises(RuntimeError):
        all_polls_open_at(events, 4)


def test_the_table_gives_medians_and_their_ratio() -> None:
    starts = [Start("sequential, no-op", name, n, first, first * 2)
              for n, (name, first) in enumerate([("lmi-gevent K=auto", 0.03), ("lmi-gevent K=auto", 0.05),
                                                 ("lmi-gevent K=auto", 0.04), ("awslambdaric", 0.08)])]
    row = table(starts)[2]
    assert row == "| sequential, no-op | 40 ms | 80 ms | 0.50 | 80 ms | 160 ms | 0.50 |"


@pytest.mark.timeout(300)
def test_quick_coldstart_bench_writes_every_case(tmp_path: Path) -> None:
    pytest.importorskip("awslambdaric")
    run = subprocess.run([sys.executable, "-m", "bench", "coldstart", "--quick", "--out", str(tmp_path)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=280)
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    page = (tmp_path / "bench-coldstart.md").read_text()
    for case in ("sequential, no-op", "sequential, app-sized", "N=4, no-op", "N=4, app-sized"):
        assert f"| {case} |" in page
