"""`mypy` with the repository's configuration (setup.cfg) passes on the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_the_package_type_checks() -> None:
    mypy = shutil.which("mypy", path=os.path.dirname(sys.executable))
    if mypy is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but mypy is not installed (pip install -e '.[test]')")
        pytest.skip("mypy is not installed: pip install -e '.[test]'")
    # A cache of its own per interpreter: the checkout may be shared by several venvs.
    cache = ROOT / ".mypy_cache" / f"py{sys.version_info[0]}{sys.version_info[1]}"
    checked = subprocess.run([mypy, "--cache-dir", str(cache)], cwd=ROOT, capture_output=True,
                             text=True, timeout=280)
    assert checked.returncode == 0, checked.stdout + checked.stderr
