"""Lint (ruff) and strict typing (mypy --strict) are part of the test command.

Both read their configuration from pyproject.toml.  They run as tests so that the
README's single test command covers them; each fails with the tool's report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["spec", "impl", "properties"]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_ruff_is_clean() -> None:
    # through the interpreter running the tests, so that the venv's ruff is used even when
    # the venv's bin/ is not on PATH (`.venv/bin/python -m pytest`)
    result = _run([sys.executable, "-m", "ruff", "check", *PACKAGES, "tests", "benchmarks"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict_is_clean() -> None:
    result = _run([sys.executable, "-m", "mypy", "--strict", *PACKAGES])
    assert result.returncode == 0, result.stdout + result.stderr
