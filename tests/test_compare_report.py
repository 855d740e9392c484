"""The page of a comparison: files, table, figure, and (where Chromium is installed) a browser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the report needs matplotlib: pip install '.[report]'")

from test_report import NO_MATPLOTLIB, _browse, _cli, _root_attributes

from impl.errors import InvalidArgument
from impl.estimators import group_mean_baseline, reinforce, rloo
from properties import compare_estimators
from properties.cli import main
from properties.report.compare_page import write_compare_report


def _broken(logits, samples, rewards):  # type: ignore[no-untyped-def]
    return None


@pytest.fixture(scope="module")
def comparison():  # type: ignore[no-untyped-def]
    return compare_estimators(
        [reinforce, rloo, group_mean_baseline, _broken], batched=True, group_sizes=(2, 3),
        max_examples=0, num_problems=3,
    )


def test_the_page_holds_the_table_the_figure_and_the_data(comparison, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = write_compare_report(tmp_path / "cmp", comparison)
    assert sorted(p.name for p in out.iterdir()) == [
        "compare.json", "compare.png", "index.html", "manifest.json",
    ]
    assert json.loads((out / "compare.json").read_text()) == json.loads(comparison.to_json())
    html = (out / "index.html").read_text()
    assert 'id="verdicts"' in html and "group_mean_baseline" in html and "0.5" in html
    assert "Not drawn (no variance, or a variance of 0; the table says which): _broken." in html
    assert "no variance: the check ended in an error (returned-none)" in html


def test_what_is_not_a_comparison_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        write_compare_report(tmp_path / "cmp", "table")  # type: ignore[arg-type]


def test_compare_report_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "out"
    status = main([
        "compare", "catalogue:reinforce", "catalogue:rloo", "--group-sizes", "2",
        "--max-examples", "0", "--problems", "2", "--json", "--report", str(d),
    ])
    captured = capsys.readouterr()
    assert status == 0
    assert json.loads(captured.out)["rows"][1]["verdict"] == "unbiased"  # stdout stays pure JSON
    assert (d / "index.html").is_file() and "wrote" in captured.err


def test_the_compare_page_in_chromium_loads_its_figure(comparison, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = write_compare_report(tmp_path / "cmp", comparison)
    attrs = _root_attributes(_browse(out / "index.html", tmp_path))
    assert attrs["data-images-total"] == "1" and attrs["data-images-loaded"] == "1"
    assert attrs["data-verdicts-visible"] == "yes"


def test_compare_report_without_matplotlib_is_one_line_and_exit_2(tmp_path: Path) -> None:
    d = tmp_path / "out"
    result = _cli(["compare", "catalogue:reinforce", "--report", str(d)], prelude=NO_MATPLOTLIB)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "matplotlib" in lines[0], lines
    assert not d.exists()
