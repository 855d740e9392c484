"""The HTML page of a sequence check (issue 18, item 3), also opened in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the report needs matplotlib: pip install '.[report]'")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from impl.errors import InvalidArgument  # noqa: E402
from properties import write_check_report, write_sequence_report  # noqa: E402
from properties.cli import main  # noqa: E402
from properties.sequence.checker import check_sequence_loss  # noqa: E402
from properties.sequence.results import SequenceCounterexample  # noqa: E402


def _token_mean(b):  # type: ignore[no-untyped-def]
    return -(b.rewards * (b.log_probs * b.mask).sum(-1) / b.mask.sum(-1)).mean()


def _reinforce(b):  # type: ignore[no-untyped-def]
    return -(b.rewards * (b.log_probs * b.mask).sum(-1)).mean()


SOURCE = """
def token_mean(b):
    return -(b.rewards * (b.log_probs * b.mask).sum(-1) / b.mask.sum(-1)).mean()
"""


@pytest.fixture(scope="module")
def biased() -> object:
    return check_sequence_loss(_token_mean, max_examples=0, diagnose=True)


def test_the_page_draws_the_counterexample_from_the_report(biased: object, tmp_path: Path) -> None:
    out = write_sequence_report(tmp_path / "page", biased)  # type: ignore[arg-type]
    assert sorted(p.name for p in out.iterdir()) == ["check.json", "index.html", "manifest.json", "sequence.png"]
    cex = biased.counterexample  # type: ignore[attr-defined]
    assert isinstance(cex, SequenceCounterexample)
    data = json.loads((out / "check.json").read_text())
    bars = data["bars"]
    # the bars are the counterexample's own E[g] and c grad J, node by node
    drawn = dict(zip(bars["labels"], zip(bars["expectation"], bars["c_grad_j"], strict=True), strict=True))
    for i, (_, node, tok) in enumerate(cex.coordinates):
        if f"{node} -> {tok}" in drawn:
            e, cg = drawn[f"{node} -> {tok}"]
            assert e == pytest.approx(cex.expectation[i], abs=0) and cg == pytest.approx(
                cex.reference_multiple * cex.gradient[i], abs=0
            )
    assert any(bars["outside"])
    assert [row["length"] for row in data["weights"]] == [row.length for row in cex.length_pair]
    page = (out / "index.html").read_text()
    for text in cex.responses:  # the responses as token strings
        assert f"<td>{text.replace('<', '&lt;').replace('>', '&gt;')}" in page
    assert '<table id="diagnosis">' in page and "<td>length</td>" in page
    assert data["report"]["diagnosis"]["findings"][0]["name"] == "length"


def test_an_unbiased_check_has_no_figure_and_write_check_report_points_to_the_sequence_writer(
    tmp_path: Path,
) -> None:
    report = check_sequence_loss(_reinforce, max_examples=0)
    out = write_sequence_report(tmp_path / "ok", report)
    assert not (out / "sequence.png").exists()
    assert "No figure: there is no counterexample" in (out / "index.html").read_text()
    with pytest.raises(InvalidArgument, match="write_sequence_report"):
        write_check_report(tmp_path / "other", report)
    with pytest.raises(InvalidArgument, match="SequenceReport"):
        write_sequence_report(tmp_path / "bad", "not a report")  # type: ignore[arg-type]


def test_check_sequence_report_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    losses = tmp_path / "page_losses.py"
    losses.write_text(SOURCE)
    d = tmp_path / "report"
    argv = ["check", f"{losses}:token_mean", "--sequence", "--diagnose", "--json", "--max-examples", "1",
            "--report", str(d)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["verdict"] == "biased"
    assert captured.err.strip() == f"ida-verify check: wrote {d / 'index.html'}"
    page = (d / "index.html").read_text()
    assert (d / "sequence.png").is_file() and "<td>length</td>" in page and "<table id=\"variance\">" in page


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("Chromium is not installed (Debian: apt-get install chromium), so the page is not opened")


def test_the_sequence_page_in_chromium_loads_its_figure(biased: object, tmp_path: Path) -> None:
    out = write_sequence_report(tmp_path / "page", biased)  # type: ignore[arg-type]
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [
            _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600", "--dump-dom",
            f"--screenshot={shot}", (out / "index.html").absolute().as_uri(),
        ],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r"<html([^>]*)>", result.stdout)
    assert match, result.stdout[:500]
    attrs = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', match.group(1)))
    assert attrs.get("data-checked") == "yes"
    assert attrs["data-images-total"] == "1" and attrs["data-images-loaded"] == "1"
    assert attrs["data-verdicts-visible"] == "yes"
    assert 'id="missing" role="alert"></div>' in result.stdout
    import matplotlib.image as mpimg

    image = mpimg.imread(shot)[..., :3]
    red = np.array([0xCF, 0x22, 0x2E]) / 255.0  # the 'biased' badge, painted on the first screen
    assert int(np.sum(np.all(np.abs(image - red) < 2.5 / 255, axis=-1))) > 300


def test_the_variance_table_is_the_exact_variance_against_reinforce(biased: object, tmp_path: Path) -> None:
    from properties.report.sequence_page import reinforce_weights
    from properties.sequence.variance import sequence_moments

    cex = biased.counterexample  # type: ignore[attr-defined]
    out = write_sequence_report(tmp_path / "page", biased, _token_mean)  # type: ignore[arg-type]
    rows = json.loads((out / "check.json").read_text())["variance"]["rows"]
    problem = {"theta": cex.theta, "rewards": cex.rewards, "k": cex.shape.k, "ref_theta": cex.ref_theta}
    mine = sequence_moments(_token_mean, **problem)
    base = sequence_moments(reinforce_weights, **problem, protocol="token-weights")
    assert rows[0]["variance"] == mine.variance and rows[1]["variance"] == base.variance
    assert rows[1]["bias_squared"] < 1e-20 and rows[0]["bias_squared"] > 1e-6  # REINFORCE is unbiased
    assert rows[0]["variance_ratio"] == pytest.approx(mine.variance / base.variance)
    assert '<table id="variance">' in (out / "index.html").read_text()
    plain = write_sequence_report(tmp_path / "nofn", biased)  # type: ignore[arg-type]
    assert json.loads((plain / "check.json").read_text())["variance"] is None  # no fn: no table


def test_a_misbehaving_function_is_written_into_the_variance_table(biased: object, tmp_path: Path) -> None:
    def broken(b):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    out = write_sequence_report(tmp_path / "page", biased, broken)  # type: ignore[arg-type]
    data = json.loads((out / "check.json").read_text())["variance"]
    assert "boom" in data["error"] and "Not computed: the function misbehaved" in (out / "index.html").read_text()
