"""The package's annotations agree with its code: mypy, configured in
pyproject.toml, finds no error in src/openhmr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_error_in_the_package() -> None:
    pytest.importorskip("mypy", reason="mypy is in the 'test' extra: pip install -e '.[test]'")
    # A subprocess, so that mypy reads pyproject.toml from the project root
    # whatever the directory pytest was started in (~20 s without a cache).
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-pretty"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"mypy found errors:\n{report}"
    assert "Success: no issues found" in report
