"""The documentation site: the settings page is generated from the declarations and fresh,
every page is in the site, nothing cites a file outside the repository, and the site builds."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lmi_gevent import config

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_the_settings_page_is_generated_from_the_declarations() -> None:
    generated = subprocess.run([sys.executable, str(ROOT / "tools" / "settings_page.py")],
                               capture_output=True, text=True, check=True).stdout
    on_disk = (DOCS / "settings.md").read_text(encoding="utf-8")
    assert on_disk == generated, ("docs/settings.md is stale: run "
                                  "`python tools/settings_page.py > docs/settings.md`")
    for setting in config.SETTINGS:
        assert f"| `{setting.env}` |" in on_disk


def test_every_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r":\s*([\w./-]+\.md)\s*$", nav, re.M))
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    assert pages == listed, f"not in the nav: {sorted(pages - listed)}; " \
                            f"missing: {sorted(listed - pages)}"


def test_nothing_cites_a_file_outside_the_repository() -> None:
    # The design notes and the platform's rules live in docs/design.md and docs/protocol.md.
    outside = re.compile(r"\b(DESIGN|PROTOCOL|STYLE)\.md\b|\.\./shared/")
    sources = [*ROOT.glob("lmi_gevent/**/*.py"), *ROOT.glob("tests/**/*.py"),
               *ROOT.glob("bench/**/*.py"), *DOCS.glob("**/*.md"), ROOT / "README.md"]
    cited = [f"{path.relative_to(ROOT)}:{number}" for path in sources
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if outside.search(line) and path != Path(__file__)]
    assert cited == []


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=os.path.dirname(sys.executable)) or shutil.which("mkdocs")
    if mkdocs is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but mkdocs is not installed (pip install -e '.[test]')")
        pytest.skip("mkdocs is not installed: pip install -e '.[test]'")
    build = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    assert (tmp_path / "site" / "settings" / "index.html").exists()
