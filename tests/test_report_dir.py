"""``check --report DIR``: an unwritable ``DIR`` is bad usage before any check; a late write
failure is one clean line (issue 15, F4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from impl.errors import InvalidArgument
from properties.cli import main
from properties.report.page import check_out_dir, out_dir_problem

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytestmark = pytest.mark.torch

FAST = ["--sequence", "--group-sizes", "2", "--max-len", "1", "--max-examples", "1"]

LOSS = """
def reinforce(b):
    return -(b.rewards * (b.log_probs * b.mask).sum(-1)).mean()
"""


def test_a_directory_nothing_can_be_created_in_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "loss.py"
    # the module would fail the check if it ran: nothing may run before the refusal
    path.write_text(LOSS + "\nraise SystemExit('the check ran')\n")
    assert main(["check", f"{path}:reinforce", *FAST, "--report", "/proc/nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "ida-verify check: --report '/proc/nope' cannot be written: no directory can be created there"
    ]
    assert out_dir_problem("/proc/nope/deeper", "--out") is not None
    with pytest.raises(InvalidArgument, match="can create a directory"):
        check_out_dir("/proc/nope")
    assert out_dir_problem(str(tmp_path / "new" / "report"), "--report") is None
    assert not list(tmp_path.glob("**/.*probe*"))  # the probe leaves nothing behind


def test_a_late_write_failure_is_one_line_naming_no_source_of_ours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    path = tmp_path / "loss.py"
    # at import, in the check's child process: the report's parent becomes a file
    path.write_text(f"import os\nos.rmdir({str(parent)!r})\nopen({str(parent)!r}, 'w').close()\n" + LOSS)
    status = main(["check", f"{path}:reinforce", *FAST, "--report", str(parent / "report")])
    captured = capsys.readouterr()
    assert "UNBIASED" in captured.out
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"ida-verify check: --report: could not write the report to {parent / 'report'}")
    assert ".py:" not in lines[0]
