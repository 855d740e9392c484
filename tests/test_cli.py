"""The command line: --help, --version, and bad usage (exit 2, one line)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from properties import __version__
from properties.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"ida-verify {__version__}"


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("claims", "prove", "check"):
        assert command in out


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["--no-such-flag"], ["claims", "--max-examples", "many"]],
)
def test_bad_usage_exits_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ida-verify"), captured.err


def test_console_script_module_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "properties.cli", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and __version__ in result.stdout


def test_bad_usage_under_python_dash_m_is_one_line_exit_2() -> None:
    """Under ``python -m properties.cli`` the module is __main__; UsageError must still be caught."""
    result = subprocess.run(
        [sys.executable, "-m", "properties.cli", "check", "no_such_file.py:f"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_installed_console_script_runs_the_main_job() -> None:
    """The Quickstart's main job, through the installed ``ida-verify`` entry point."""
    from pathlib import Path

    script = Path(sys.executable).parent / "ida-verify"
    assert script.exists(), f"ida-verify is not installed beside {sys.executable}: pip install ."
    result = subprocess.run(
        [str(script), "claims", "--max-examples", "3", "self-inclusive-baseline-scales"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1/1 claims have their expected verdict" in result.stdout
