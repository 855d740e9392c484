"""``ida-verify report`` and ``ida-verify check --report``: content, atomic writes, and the page
in a real browser.

The figures are checked against :mod:`impl` recomputed here (the JSON holds what is drawn),
the page against the ledger JSON, the atomic writes by failing a build half way (an
exception and Ctrl-C) over an existing report, and the page by opening it in headless
Chromium (Debian's ``chromium`` package; ``.ci/run`` installs it, elsewhere those tests
skip and say why): every image must load and the verdict table must be on screen.

Time budget: about 40 s on the 2-core CI machine (one claims report of two claims with
3 examples, whose figure data, mostly the 110,000 exact policy-gradient steps of the rate
figure, is computed once and reused; three Chromium launches of about 3 s each).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the report needs matplotlib: pip install '.[report]'")

import properties
import properties.report.figures as report_figures
import properties.report.page as report_module
from impl import (
    amplification_trajectory,
    best_of_k_distribution,
    imitation_trajectory,
    rl_trajectory,
    smooth_step_size,
)
from impl.catalogue import get as catalogue
from impl.errors import InvalidArgument
from properties import RunConfig, check_estimator, write_check_report, write_report
from properties.onestep.checker import expectation_of
from properties.report.figures import FIGURES

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ["self-inclusive-baseline-scales", "rl-equals-imitation-under-limited-search"]
CONFIG = RunConfig(max_examples=3, seed=0)
EXACT = 1e-12
"""The JSON holds the float64 values impl returns; recomputing them gives the same bits,
so anything above round-off in the last place means the figure is not impl's data."""

_REAL_FIGURE_DATA = report_module._figure_data
_CACHE: dict[str, dict[str, Any]] = {}


def _cached_figure_data(spec: Any) -> dict[str, Any]:
    if spec.name not in _CACHE:
        _CACHE[spec.name] = _REAL_FIGURE_DATA(spec)
    return _CACHE[spec.name]


@pytest.fixture(autouse=True)
def _reuse_figure_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compute each figure's data once per worker (the rate figure is 110,000 exact steps)."""
    monkeypatch.setattr(report_module, "_figure_data", _cached_figure_data)


_REAL_RUN_CLAIMS = properties.run_claims
_LEDGERS: dict[tuple[Any, ...], Any] = {}


@pytest.fixture
def reuse_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    """For the tests of writing, not of the ledger: run each set of claims once per worker."""

    def cached(ids: Any = None, config: Any = None, progress: Any = None) -> Any:
        key = (tuple(ids or ()), config)
        if key not in _LEDGERS:
            _LEDGERS[key] = _REAL_RUN_CLAIMS(ids, config, progress)
        return _LEDGERS[key]

    monkeypatch.setattr(properties, "run_claims", cached)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report_module, "_figure_data", _cached_figure_data)
        calls: list[tuple[int, int, str]] = []
        path = write_report(
            out,
            config=CONFIG,
            claim_ids=CLAIMS,
            progress=lambda d, t, label: calls.append((d, t, label)),
        )
    assert path == out.absolute()
    total = len(CLAIMS) + len(FIGURES)
    assert calls[0] == (0, total, f"claim {CLAIMS[0]}") and calls[-1] == (total, total, "")
    assert [d for d, _, _ in calls] == sorted(d for d, _, _ in calls)
    return out


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the claims report


def test_the_report_holds_the_page_its_figures_and_its_data(built: Path) -> None:
    pngs = {f"{spec.name}.png" for spec in FIGURES}
    expected = {"index.html", "ledger.json", "figures.json", "manifest.json", *pngs}
    assert {p.name for p in built.iterdir()} == expected
    assert set(_json(built / "manifest.json")["files"]) == expected
    for name in pngs:
        width, height = _png_size(built / name)
        assert width >= 600 and height >= 250, (name, width, height)
    page = (built / "index.html").read_text(encoding="utf-8")
    assert sorted(re.findall(r'<img src="([^"]+)"', page)) == sorted(pngs)
    assert not re.search(r'(src|href)="(https?:|//|/)', page), "the page must not reach outside DIR"


def test_the_verdict_table_is_the_ledger(built: Path) -> None:
    ledger = _json(built / "ledger.json")
    assert [c["id"] for c in ledger["claims"]] == CLAIMS
    assert ledger["config"] == {"max_examples": CONFIG.max_examples, "seed": CONFIG.seed}
    page = (built / "index.html").read_text(encoding="utf-8")
    table = page.split('<table id="verdicts">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(
        r"<tr[^>]*><td class=\"id\"><code>([^<]+)</code>.*?"
        r"<span class=\"badge v-(\w+)\">(\w+)</span>",
        table,
    )
    assert [(cid, verdict) for cid, verdict, _ in rows] == [
        (c["id"], c["verdict"]) for c in ledger["claims"]
    ]
    for c in ledger["claims"]:
        if c["counterexample"] is not None:  # the shrunk counterexample is shown, value by value
            for key in c["counterexample"]:
                assert f"<th>{key}</th>" in page.replace("&#x27;", "'"), key


def test_every_figure_has_a_caption_that_concludes(built: Path) -> None:
    page = (built / "index.html").read_text(encoding="utf-8")
    for spec in FIGURES:
        figure = page.split(f'<figure id="fig-{spec.name}">', 1)[1].split("</figure>", 1)[0]
        caption = figure.split("<figcaption>", 1)[1]
        assert "Conclusion" in caption, spec.name
        assert "VIOLATED" not in caption and "FAILS" not in caption, caption


def test_the_curves_are_impls_exact_dynamics(built: Path) -> None:
    figures = _json(built / "figures.json")
    d = figures["xstar"]
    steps = np.array(d["steps"])
    s, theta, x = np.array(d["scores"]), np.array(d["logits"]), d["x_star"]
    onehot = np.eye(s.size)[x]
    eta = smooth_step_size(s)
    assert d["step_size"] == eta
    runs = {
        "rl": rl_trajectory(theta, s, step_size=eta, steps=int(steps[-1])),
        "imitation": imitation_trajectory(theta, onehot, step_size=eta, steps=int(steps[-1])),
        "indicator": rl_trajectory(theta, onehot, step_size=eta, steps=int(steps[-1])),
    }
    for name, tr in runs.items():
        np.testing.assert_allclose(d[name], tr.probs[steps, x], rtol=0, atol=EXACT, err_msg=name)
        assert d[name][-1] > 0.99, name  # all three reach X*

    for case in figures["rate"]["cases"]:
        gap, bound = np.array(case["gap"]), np.array(case["bound"])
        assert case["bound_holds_every_step"] and np.all(gap <= bound), case["name"]
        assert np.all(np.array(case["steps"]) >= 1)
    plateau = {c["name"]: c for c in figures["rate"]["cases"]}
    assert plateau["plateau"]["steps_to_0.99"] is not None  # escapes within the steps drawn
    assert plateau["long plateau"]["steps_to_half"] is None  # still stuck at the end
    assert plateau["plateau"]["min_mass"] < 1e-3

    d = figures["search"]
    s, q = np.array(d["scores"]), np.array(d["proposal"])
    for k, row in zip(d["k"], d["distribution"], strict=True):
        np.testing.assert_allclose(row, best_of_k_distribution(s, q, k), rtol=0, atol=EXACT)
    qa = q[s == s.max()].sum()
    np.testing.assert_allclose(
        d["closed_form"], 1 - (1 - qa) ** np.array(d["k"]), rtol=1e-12, atol=0
    )

    d = figures["amplification"]
    for run in d["runs"]:
        traj = amplification_trajectory(
            np.array(d["start"]), np.array(d["scores"]), run["k"], steps=len(d["steps"]) - 1
        )
        np.testing.assert_allclose(run["a"], traj[:, -1], rtol=0, atol=EXACT)
        np.testing.assert_allclose(run["a"], run["recursion"], rtol=0, atol=1e-12)

    d = figures["demonstrator"]  # the refuted claim: RL leaves q for argmax q, imitation stays at q
    q = np.array(d["demonstrator"])
    assert abs(d["imitation"][-1] - q[1]) < 1e-9
    assert d["rl"][-1] > 0.99
    np.testing.assert_allclose(d["rl_gradient_at_q"], [-2 / 27, 2 / 27], rtol=1e-12, atol=0)

    d = figures["limited"]  # RL -> A*, imitation of best-of-k -> 1 - (1 - q(A*))^k
    assert d["rl"][-1] > 0.99
    for run in d["imitation"]:
        assert abs(run["mass"][-1] - run["limit"]) < 1e-9, run["k"]
        assert run["limit"] < 0.99


# --------------------------------------------------------------------------- atomic writes


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


def _fail_on_figure(monkeypatch: pytest.MonkeyPatch, index: int, exc: BaseException) -> None:
    def failing(spec: Any) -> dict[str, Any]:
        if spec.name == FIGURES[index].name:
            raise exc
        return _cached_figure_data(spec)

    monkeypatch.setattr(report_module, "_figure_data", failing)


@pytest.mark.parametrize(
    "exc", [RuntimeError("boom"), KeyboardInterrupt()], ids=["exception", "ctrl-c"]
)
def test_a_failed_build_leaves_the_previous_report_untouched_and_no_debris(
    built: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reuse_ledger: None,
    exc: BaseException,
) -> None:
    out = tmp_path / "report"
    shutil.copytree(built, out)
    before = _snapshot(out)
    _fail_on_figure(monkeypatch, 1, exc)  # after the ledger and the first PNG were written
    with pytest.raises(type(exc)):
        write_report(out, config=CONFIG, claim_ids=CLAIMS[:1])
    assert _snapshot(out) == before
    assert _siblings(out) == []


def test_a_failed_first_build_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reuse_ledger: None
) -> None:
    out = tmp_path / "new" / "report"
    _fail_on_figure(monkeypatch, 0, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        write_report(out, config=CONFIG, claim_ids=CLAIMS[:1])
    assert not out.exists() and _siblings(out) == []


def test_a_successful_build_replaces_the_previous_report(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reuse_ledger: None
) -> None:
    out = tmp_path / "report"
    shutil.copytree(built, out)
    (out / "stale.png").write_bytes(b"from an older version")
    ledger_before = _json(out / "ledger.json")
    monkeypatch.setattr(report_figures, "FIGURES", FIGURES[3:4])  # one cheap figure
    write_report(out, config=CONFIG, claim_ids=CLAIMS[:1])
    assert not (out / "stale.png").exists()
    assert (
        [c["id"] for c in _json(out / "ledger.json")["claims"]]
        == CLAIMS[:1]
        != [c["id"] for c in ledger_before["claims"]]
    )
    assert _siblings(out) == []


@pytest.mark.parametrize("kind", ["file", "foreign-directory", "symlink"])
def test_what_is_not_a_report_is_never_replaced(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "target"
    if kind == "file":
        out.write_text("my notes")
    elif kind == "foreign-directory":
        out.mkdir()
        (out / "thesis.tex").write_text("years of work")
    else:
        (tmp_path / "elsewhere").mkdir()
        out.symlink_to(tmp_path / "elsewhere")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(InvalidArgument, match="out_dir"):
        write_report(out, config=CONFIG, claim_ids=CLAIMS[:1])
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_an_empty_directory_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reuse_ledger: None
) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    monkeypatch.setattr(report_figures, "FIGURES", FIGURES[3:4])
    write_report(out, config=CONFIG, claim_ids=CLAIMS[:1])
    assert (out / "index.html").is_file() and (out / "amplification.png").is_file()


# --------------------------------------------------------------------------- the check report


def test_check_report_of_a_biased_estimator_draws_its_exact_expectations(tmp_path: Path) -> None:
    entry = catalogue("grpo-std-normalised")
    report = check_estimator(entry.fn, batched=True, max_examples=0)
    assert report.verdict == "biased" and report.counterexample is not None
    out = write_check_report(tmp_path / "check", report, entry.fn, batched=True)
    assert {p.name for p in out.iterdir()} == {
        "index.html",
        "check.png",
        "check.json",
        "manifest.json",
    }
    panels = _json(out / "check.json")["panels"]
    cex = report.counterexample
    assert panels[0]["expectation"] == cex.expectation.tolist()
    assert panels[0]["gradient"] == cex.gradient.tolist()
    if len(panels) > 1:  # the reference problem, recomputed exactly
        e, g = expectation_of(
            entry.fn, cex.reference_logits, cex.reference_scores, cex.k, batched=True
        )
        np.testing.assert_allclose(panels[1]["expectation"], e, rtol=0, atol=EXACT)
        np.testing.assert_allclose(panels[1]["gradient"], g, rtol=0, atol=EXACT)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'class="badge v-biased"' in page and '<img src="check.png"' in page
    assert "group sizes k" in page and ", ".join(map(str, report.group_sizes)) in page
    _png_size(out / "check.png")


def test_check_report_of_a_scaled_estimator_shows_c_k_per_group_size(tmp_path: Path) -> None:
    entry = catalogue("group-mean-baseline")
    report = check_estimator(entry.fn, batched=True, max_examples=0)
    assert report.verdict == "scaled" and report.scale is not None
    out = write_check_report(tmp_path / "check", report, entry.fn)
    panels = _json(out / "check.json")["panels"]
    assert [p["k"] for p in panels] == list(report.group_sizes)
    for p in panels:  # the self-inclusive mean: E[g] = (k-1)/k grad J, drawn as such
        np.testing.assert_allclose(
            p["expectation"], (p["k"] - 1) / p["k"] * np.array(p["gradient"]), rtol=0, atol=1e-12
        )


def test_check_report_without_fn_or_for_an_error_has_no_figure(tmp_path: Path) -> None:
    scaled = check_estimator(catalogue("group-mean-baseline").fn, batched=True, max_examples=0)
    out = write_check_report(tmp_path / "a", scaled)
    assert not (out / "check.png").exists()
    assert "pass the estimator" in (out / "index.html").read_text(encoding="utf-8")
    error = check_estimator(catalogue("raises-value-error").fn, batched=True, max_examples=0)
    assert error.verdict == "error"
    out = write_check_report(tmp_path / "b", error, catalogue("raises-value-error").fn)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert not (out / "check.png").exists() and 'class="badge v-error"' in page
    assert "ERROR" in page


class _Exit(BaseException):
    def __str__(self) -> str:
        raise RuntimeError("and my message cannot be printed")


@pytest.mark.parametrize("raised", [SystemExit(3), _Exit()], ids=["sys.exit", "hostile"])
def test_hostile_user_code_on_the_reference_problem_is_written_down_not_raised(
    tmp_path: Path, raised: BaseException
) -> None:
    entry = catalogue("grpo-std-normalised")
    report = check_estimator(entry.fn, batched=True, max_examples=0)
    assert report.counterexample is not None

    def hostile(logits: Any, samples: Any, rewards: Any) -> Any:
        raise raised

    out = write_check_report(tmp_path / "check", report, hostile, batched=True)
    panels = _json(out / "check.json")["panels"]
    if len(panels) > 1:
        assert panels[1]["expectation"] is None
        assert "could not be computed" in panels[1]["note"]
    assert (out / "check.png").exists()


# --------------------------------------------------------------------------- the command line


def _cli(
    args: list[str], *, prelude: str = "", timeout: float = 300.0
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    code = f"import sys\n{prelude}\nfrom properties.cli import main\nsys.exit(main({args!r}))\n"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


NO_MATPLOTLIB = "sys.modules['matplotlib'] = None  # as if it were not installed"


@pytest.mark.parametrize(
    "args",
    [["report", "--out", "{d}"], ["check", "catalogue:reinforce", "--report", "{d}"]],
    ids=["report", "check --report"],
)
def test_without_matplotlib_one_line_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    d = tmp_path / "out"
    result = _cli([a.format(d=d) for a in args], prelude=NO_MATPLOTLIB)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "matplotlib" in lines[0] and "ida-verify[report]" in lines[0], lines
    assert not d.exists()


def test_check_report_from_the_command_line_keeps_json_pure(tmp_path: Path) -> None:
    d = tmp_path / "check"
    result = _cli(
        [
            "check",
            "catalogue:grpo-std-normalised",
            "--max-examples",
            "0",
            "--json",
            "--report",
            str(d),
        ]
    )
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["verdict"] == "biased"
    assert result.stderr.strip() == f"ida-verify check: wrote {d / 'index.html'}"
    assert (d / "check.png").is_file()


def test_check_report_into_a_foreign_directory_is_refused_before_checking(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = _cli(["check", "catalogue:reinforce", "--report", str(tmp_path)])
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "--report " in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_report_command_writes_the_report(tmp_path: Path) -> None:
    d = tmp_path / "out"
    one_figure = "import properties.report.figures as f; f.FIGURES = f.FIGURES[3:4]  # the cheapest"
    result = _cli(["report", "--out", str(d), "--max-examples", "2", CLAIMS[0]], prelude=one_figure)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # not a terminal: no progress bar
    assert result.stdout.startswith(f"wrote {d / 'index.html'} (1/1 claims as expected;")
    assert (d / "amplification.png").is_file() and (d / "index.html").is_file()


# --------------------------------------------------------------------------- in a real browser


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it), "
        "so the page is not opened in a browser here"
    )


def _browse(page: Path, tmp_path: Path, *, screenshot: Path | None = None) -> str:
    """Open ``page`` in headless Chromium; return the DOM after the page's load event."""
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.iterdir()))}"
    args = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1280,1600",
        "--dump-dom",
    ]
    if screenshot is not None:
        args.append(f"--screenshot={screenshot}")
    result = subprocess.run(
        [*args, page.absolute().as_uri()], capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _root_attributes(dom: str) -> dict[str, str]:
    match = re.search(r"<html([^>]*)>", dom)
    assert match, dom[:500]
    return dict(re.findall(r'(data-[\w-]+)="([^"]*)"', match.group(1)))


def _colour_pixels(png: Path, hex_colour: str) -> int:
    import matplotlib.image as mpimg

    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255.0
    image = mpimg.imread(png)[..., :3]
    return int(np.sum(np.all(np.abs(image - rgb) < 2.5 / 255, axis=-1)))


BADGE = {"proved": "#1a7f37", "refuted": "#bc4c00", "biased": "#cf222e"}
"""The verdict badges' colours (properties/report/html.py); a badge is about 80 x 18 px."""


def test_the_page_in_chromium_loads_every_image_and_shows_the_verdicts(
    built: Path, tmp_path: Path
) -> None:
    shot = tmp_path / "screenshot.png"
    dom = _browse(built / "index.html", tmp_path, screenshot=shot)
    attrs = _root_attributes(dom)
    assert attrs.get("data-checked") == "yes", "the page's load script did not run"
    assert attrs["data-images-total"] == str(len(FIGURES))
    assert attrs["data-images-loaded"] == attrs["data-images-total"]
    assert attrs["data-verdicts-visible"] == "yes"
    assert 'id="missing" role="alert"></div>' in dom  # the warning stayed empty
    width, height = _png_size(shot)
    assert (width, height) == (1280, 1600)
    verdicts = [c["verdict"] for c in _json(built / "ledger.json")["claims"]]
    for verdict in set(verdicts) & set(BADGE):  # the table was painted on the first screen
        assert _colour_pixels(shot, BADGE[verdict]) > 300, verdict
    keep = os.environ.get("IDA_VERIFY_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_chromium_sees_a_missing_image_and_the_page_says_so(built: Path, tmp_path: Path) -> None:
    """The check above can fail: a report copied without one PNG is caught, and shown."""
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    (copy / "rate.png").unlink()
    attrs_dom = _browse(copy / "index.html", tmp_path)
    attrs = _root_attributes(attrs_dom)
    assert int(attrs["data-images-loaded"]) == len(FIGURES) - 1
    warning = attrs_dom.split('id="missing"', 1)[1].split("</div>", 1)[0]
    assert "display: block" in warning and "rate.png" in warning


def test_the_check_report_in_chromium_loads_its_figure(tmp_path: Path) -> None:
    entry = catalogue("grpo-std-normalised")
    report = check_estimator(entry.fn, batched=True, max_examples=0)
    out = write_check_report(tmp_path / "check", report, entry.fn, batched=True)
    shot = tmp_path / "check.png"
    attrs = _root_attributes(_browse(out / "index.html", tmp_path, screenshot=shot))
    assert attrs["data-images-total"] == "1" and attrs["data-images-loaded"] == "1"
    assert attrs["data-verdicts-visible"] == "yes"
    assert _colour_pixels(shot, BADGE["biased"]) > 300


def test_evidence_of_a_bounded_only_proof_and_a_vacuous_property_is_not_a_pass() -> None:
    """Issue 15: a finite check reads as such, and a missed planted violation is shown."""
    from properties.report.html import evidence_summary

    summary, details = evidence_summary(
        {
            "proof": {"ok": True, "scope": "bounded", "bounds": ["n <= 4, k <= 3"], "steps": 1},
            "planted": [
                {"property": "p", "caught": False, "problem": "missed its planted violation"},
                {"property": "q", "caught": True, "problem": None},
            ],
        }
    )
    assert "checked only for n <= 4, k <= 3" in summary and "checks" not in summary
    assert "1/2 planted violations caught (VACUOUS)" in summary
    assert details == ["vacuous: p: missed its planted violation"]
