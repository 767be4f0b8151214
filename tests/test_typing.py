"""The annotations agree with the code: mypy, configured in pyproject.toml,
finds no error in src/openhmr, nor in the scripts that call it (benchmarks/,
docs/images/), whose calls into the package it checks although the scripts
themselves are not all annotated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mypy(*args: str) -> str:
    pytest.importorskip("mypy", reason="mypy is in the 'test' extra: pip install -e '.[test]'")
    # A subprocess, so that mypy reads pyproject.toml from the project root
    # whatever the directory pytest was started in (~20 s without a cache).
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-pretty", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"mypy found errors:\n{report}"
    return report


def test_mypy_finds_no_error_in_the_package() -> None:
    assert "Success: no issues found" in _mypy()


def test_mypy_finds_no_error_in_the_scripts_that_call_the_package() -> None:
    report = _mypy("--allow-untyped-defs", "--check-untyped-defs", "benchmarks", "docs/images")
    assert "Success: no issues found" in report
