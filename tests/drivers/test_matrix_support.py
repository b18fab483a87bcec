"""The matrix's own machinery: a missing service skips on a laptop but fails under CI=true,
and the table says what the counts say."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from . import matrix
from .conftest import require_module, require_service

pytestmark = [pytest.mark.timeout(30)]


def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    return port


@pytest.mark.parametrize("ci,outcome", [("true", pytest.fail.Exception),
                                        ("", pytest.skip.Exception)])
def test_a_missing_service_fails_under_ci_and_skips_elsewhere(
        monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="Nothing is not reachable"):
        require_service("Nothing", "127.0.0.1", closed_port())


def test_a_missing_optional_library_skips_even_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.skip.Exception):
        require_module("no_such_module_here", "it is optional", optional=True)
    with pytest.raises(pytest.fail.Exception):
        require_module("no_such_module_here", "it is in the test extra")


def row(overlap: int | None, outcome: str = "passed") -> matrix.Row:
    return matrix.Row(library="lib", package="pytest", server="srv", wait="w", expected=True,
                      concurrency=4 if overlap is not None else None, overlap=overlap,
                      outcome=outcome)


@pytest.mark.parametrize("overlap,verdict", [(4, "yes"), (1, "**no**"), (2, "partly (2/4)"),
                                             (None, "?")])
def test_cooperation_is_read_from_the_counts(overlap: int | None, verdict: str) -> None:
    assert row(overlap).cooperates == verdict


def test_the_table_has_one_line_per_row(tmp_path: Path) -> None:
    target = tmp_path / "docs" / "compatibility.md"
    matrix.write(target, [row(4), row(None, "skipped: Redis is not reachable | down")])
    lines = [line for line in target.read_text().splitlines() if line.startswith("| lib ")]
    assert len(lines) == 2
    assert "| 4/4 |" in lines[0] and "| yes |" in lines[0]
    assert "skipped: Redis is not reachable \\| down" in lines[1]  # pipes escaped


def test_the_hand_written_part_below_the_table_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "compatibility.md"
    target.write_text(f"old table\n\n{matrix.KEPT_BELOW}\n\n## Per-invocation state\n")
    matrix.write(target, [row(4)])
    text = target.read_text()
    assert "old table" not in text and "| 4/4 |" in text
    assert text.endswith(f"{matrix.KEPT_BELOW}\n\n## Per-invocation state\n")
