r"""HTML reports with figures: the claims ledger (:func:`write_report`) and one estimator check
(:func:`write_check_report`).

A report is a directory holding ``index.html`` (one self-contained page: inline CSS, no
network, no external scripts), its PNG figures, the JSON every table and figure was drawn
from, and ``manifest.json`` listing them.  Every curve is computed by :mod:`impl` (exact,
expected-update dynamics; exact search distributions), written to ``figures.json`` and
plotted from that same data, so the page can be checked against the JSON number for
number.

Writing is atomic: the report is built in a hidden temporary directory beside ``out_dir``
and renamed into place only when complete.  A failed run (an exception, Ctrl-C) leaves
no half-written report, and an existing report in ``out_dir`` is replaced only once the
new one is complete.  A directory that is not empty and holds no ida-verify report is
never replaced (:class:`impl.errors.InvalidArgument`).

matplotlib is an optional extra (``pip install 'ida-verify[report]'``; from a clone:
``pip install '.[report]'``), imported only
when a report is written and drawn with the Agg canvas (headless, no pyplot state); where
it is missing the writers raise :class:`ReportUnavailable` before doing any work.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from impl.errors import InvalidArgument, describe
from properties.report.figures import ReportUnavailable

if TYPE_CHECKING:
    from properties.claims import RunConfig
    from properties.onestep.results import EstimatorReport
    from properties.report.figures import FigureSpec

# The drawing and HTML modules (properties.report.figures, properties.report.html) are
# imported inside the writers, so that `import properties` does not pay for them.

ProgressCallback = Callable[[int, int, str], None]
"""``(done, total, label)``, as :func:`properties.run_claims` calls it."""

MANIFEST = "manifest.json"
"""The file that marks a directory as an ida-verify report (and lists its files)."""


# --------------------------------------------------------------------------- atomic output


def _out_dir_fault(out: Path) -> str | None:
    """Why the absolute path ``out`` may not receive a report (a key of :data:`_OUT_DIR_TEXT`)."""
    if not out.name or out.name in (".", ".."):
        return "unnamed"
    if out.is_symlink():
        return "symlink"
    if out.exists() and not out.is_dir():
        return "file"
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        return "occupied"
    if not _can_create_beside(out):
        return "unwritable"
    return None


def _can_create_beside(out: Path) -> bool:
    """Whether a directory can be created where the report's temporary sibling will be.

    Tried for real (a directory made and removed in the nearest existing ancestor of
    ``out.parent``): permission bits say nothing to root, and ``/proc`` or a read-only
    mount refuse whatever they say.  Without it ``check --report /proc/nope`` ran the whole
    check before failing (issue 15, F4).
    """
    base = out.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    try:
        probe = base / f".{out.name}.probe-{uuid.uuid4().hex[:12]}"
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError:
        return False
    return True


_OUT_DIR_TEXT = {
    "unnamed": ("Expected out_dir to name a directory to write but got {got}", "names no directory to write"),
    "symlink": (
        "Expected out_dir to be a directory, not a symbolic link (replacing it would "
        "replace the link) but got {got}",
        "is a symbolic link, not a directory (replacing it would replace the link)",
    ),
    "file": ("Expected out_dir to be a directory but got a file: {got}", "is a file, not a directory"),
    "occupied": (
        f"Expected out_dir to be new, empty or a previous ida-verify report (with {MANIFEST}), "
        "refusing to replace what is there: {got}",
        f"is neither new, empty nor a previous ida-verify report (with {MANIFEST}): refusing to "
        "replace what is there",
    ),
    "unwritable": (
        "Expected out_dir to be where this process can create a directory but got {got}",
        "cannot be written: no directory can be created there",
    ),
}
"""Each refusal as the API says it (naming ``out_dir``) and as the command line says it
(after the option and the path)."""


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """The absolute path of ``out_dir``, or :class:`impl.errors.InvalidArgument` if it may not receive a report.

    It may when it does not exist, is an empty directory, or holds a previous report
    (:data:`MANIFEST`); a file, a symbolic link or any other directory is refused, so
    that a typo in ``--out`` cannot replace someone's files.  ``..`` is resolved
    lexically, as the shell would.

    >>> str(check_out_dir("/no/such/dir/../report"))
    '/no/such/report'
    """
    out = Path(os.path.abspath(out_dir))
    fault = _out_dir_fault(out)
    if fault is not None:
        raise InvalidArgument(_OUT_DIR_TEXT[fault][0].format(got=describe("out_dir", str(out))))
    return out


def out_dir_problem(out_dir: str, option: str) -> str | None:
    """:func:`check_out_dir`'s refusal in the command line's words (naming ``option``), or ``None``.

    >>> out_dir_problem("/", "--out")
    "--out '/' names no directory to write"
    >>> out_dir_problem("/no/such/report", "--out") is None
    True
    """
    fault = _out_dir_fault(Path(os.path.abspath(out_dir)))
    return None if fault is None else f"{option} {out_dir!r} {_OUT_DIR_TEXT[fault][1]}"


def _publish(
    out_dir: str | os.PathLike[str], build: Callable[[Path], list[str]], kind: str
) -> Path:
    """Build into a hidden sibling directory, then swap it into place as ``out_dir``.

    ``build(tmp)`` writes the files and returns their names.  On any exception,
    KeyboardInterrupt included, the temporary directory is removed and ``out_dir`` is
    left as it was.  The swap is two renames on one file system (old report aside, new
    one in); if the second fails, the old report is renamed back.
    """
    from properties.report.html import write_json

    out = check_out_dir(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    tmp = out.parent / f".{out.name}.tmp-{tag}"
    os.mkdir(tmp)  # honours the umask, unlike mkdtemp's 0o700
    try:
        start = time.perf_counter()
        files = build(tmp)
        write_json(
            tmp / MANIFEST,
            {
                "generator": f"ida-verify {_version()}",
                "kind": kind,
                "files": sorted([*files, MANIFEST]),
                "build_seconds": round(time.perf_counter() - start, 3),
            },
        )
        check_out_dir(out)
        if out.exists():
            old = out.parent / f".{out.name}.old-{tag}"
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _version() -> str:
    from properties._version import __version__

    return __version__


# --------------------------------------------------------------------------- the claims report


def _figure_data(spec: FigureSpec) -> dict[str, Any]:
    return spec.compute()


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    config: RunConfig | None = None,
    claim_ids: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Run the claims ledger and write the HTML report with its figures into ``out_dir``.

    ``config`` is a :class:`properties.RunConfig` (default ``RunConfig()``: 60 examples
    per property, seed 0); ``claim_ids`` restricts the ledger (default: every claim; the
    figures are always drawn); ``progress(done, total, label)`` is called as claims and
    figures finish.  Writes ``index.html``, one PNG per figure, ``ledger.json`` (the shape of
    ``ida-verify claims --json``), ``figures.json`` (every plotted number) and
    ``manifest.json``; returns the absolute path of ``out_dir``.  Raises
    :class:`ReportUnavailable` without matplotlib, :class:`impl.errors.InvalidArgument` for
    an ``out_dir`` that is a file or a non-empty directory other than a previous report.
    """
    from properties.claims import RunConfig, run_claims
    from properties.claims.ledger import render_json
    from properties.report import figures
    from properties.report.figures import require_matplotlib
    from properties.report.html import esc, figure_html, ledger_html, page, write_json

    require_matplotlib()
    check_out_dir(out_dir)
    run = config if config is not None else RunConfig()
    report = progress if progress is not None else (lambda done, total, label: None)

    def build(tmp: Path) -> list[str]:
        specs = figures.FIGURES
        ids = list(claim_ids) if claim_ids else None
        total_claims = len(ids) if ids else None
        start = time.perf_counter()

        def claims_progress(done: int, total: int, label: str) -> None:
            report(done, total + len(specs), f"claim {label}" if label else "figures")

        results = run_claims(ids, run, claims_progress)
        claims_seconds = time.perf_counter() - start
        n = total_claims or len(results)
        run_config = {"max_examples": run.max_examples, "seed": run.seed}
        (tmp / "ledger.json").write_text(
            render_json(results, seconds=claims_seconds, config=run_config) + "\n", encoding="utf-8"
        )
        claims = json.loads((tmp / "ledger.json").read_text(encoding="utf-8"))["claims"]
        data: dict[str, Any] = {}
        sections: dict[str, list[str]] = {}
        files = ["index.html", "ledger.json", "figures.json"]
        for i, spec in enumerate(specs):
            report(n + i, n + len(specs), f"figure {spec.name}")
            d = _figure_data(spec)
            data[spec.name] = d
            spec.plot(d, tmp / f"{spec.name}.png")
            files.append(f"{spec.name}.png")
            sections.setdefault(spec.section, []).append(
                figure_html(spec.name, spec.title, spec.caption(d))
            )
        write_json(tmp / "figures.json", data)
        body = ledger_html(claims, claims_seconds, run_config)
        for section, figs in sections.items():
            body += f"<h2>{esc(section)}</h2>\n" + "".join(figs)
        body += (
            "<footer>Built by <code>ida-verify report</code> "
            f"(ida-verify {esc(_version())}) in {time.perf_counter() - start:.1f} s. "
            'Data: <a href="ledger.json">ledger.json</a> (the ledger, as '
            '<code>ida-verify claims --json</code>), <a href="figures.json">figures.json</a> '
            "(every plotted number). Curves are exact expected-update dynamics computed by "
            "<code>impl</code>, not samples.</footer>"
        )
        ok = sum(c["verdict"] == c["expected"] for c in claims)
        subtitle = (
            "RL on an amplified overseer's score versus imitation of the overseer "
            "(“Reinforcement Learning in the Iterated Amplification Framework”, 2019, and its "
            f"comment thread): {ok}/{len(claims)} claims have their expected verdict."
        )
        (tmp / "index.html").write_text(
            page("ida-verify: the claims and where they break", esc(subtitle), body),
            encoding="utf-8",
        )
        report(n + len(specs), n + len(specs), "")
        return files

    return _publish(out_dir, build, "claims report")


# --------------------------------------------------------------------------- the check report


DISPLAY_LOGITS = (0.5, -0.25, 0.0, -1.0)
DISPLAY_SCORES = (1.0, -0.5, 2.0, 0.25)
"""The problem drawn for an ``unbiased`` or ``scaled`` verdict (first ``n`` entries, with
``n**k <= 4096`` as in the checker)."""

_MAX_GROUPS = 4096


def _display_n(k: int) -> int:
    n = len(DISPLAY_SCORES)
    while n > 2 and n**k > _MAX_GROUPS:
        n -= 1
    return n


def _safe_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    return f"{type(exc).__name__}: {text}"[:300]


def _expectation(
    fn: Callable[..., Any], logits: Any, scores: Any, k: int, batched: bool
) -> tuple[np.ndarray[Any, Any] | None, str]:
    """``(E[g], "")``, or ``(None, why)`` when the estimator misbehaves (it is user code)."""
    from properties.onestep.checker import expectation_of

    try:
        e, _ = expectation_of(fn, logits, scores, k, batched=batched)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # user code may raise anything, SystemExit included
        return None, f"E[g] could not be computed: {_safe_text(exc)}"
    return np.asarray(e, dtype=np.float64), ""


def _check_panels(
    report: EstimatorReport, fn: Callable[..., Any] | None, batched: bool
) -> list[dict[str, Any]]:
    """The problems drawn: title, logits, scores, k, E (or None), grad J, c_k and a note."""
    from impl import policy_gradient
    panels: list[dict[str, Any]] = []
    cex = report.counterexample
    if cex is not None:
        panels.append(
            {
                "title": f"Counterexample (found by {cex.found_by}), k = {cex.k}",
                "logits": cex.logits,
                "scores": cex.scores,
                "k": cex.k,
                "expectation": cex.expectation,
                "gradient": cex.gradient,
                "multiple": cex.reference_multiple,
                "note": cex.reason,
            }
        )
        same = (
            cex.reference_logits.shape == cex.logits.shape
            and np.array_equal(cex.reference_logits, cex.logits)
            and np.array_equal(cex.reference_scores, cex.scores)
        )
        if not same:
            e, why = (None, "E[g] not drawn: pass fn to write_check_report")
            if fn is not None:
                e, why = _expectation(
                    fn, cex.reference_logits, cex.reference_scores, cex.k, batched
                )
            panels.append(
                {
                    "title": f"Reference problem for k = {cex.k} (where c_k was measured)",
                    "logits": cex.reference_logits,
                    "scores": cex.reference_scores,
                    "k": cex.k,
                    "expectation": e,
                    "gradient": policy_gradient(cex.reference_logits, cex.reference_scores),
                    "multiple": cex.reference_multiple,
                    "note": why,
                }
            )
        return panels
    if report.verdict in ("unbiased", "scaled") and fn is not None and report.scale is not None:
        for k in report.group_sizes:
            n = _display_n(k)
            logits, scores = np.array(DISPLAY_LOGITS[:n]), np.array(DISPLAY_SCORES[:n])
            e, why = _expectation(fn, logits, scores, k, batched)
            panels.append(
                {
                    "title": f"k = {k}: c_k = {report.scale[k]:.6g}",
                    "logits": logits,
                    "scores": scores,
                    "k": k,
                    "expectation": e,
                    "gradient": policy_gradient(logits, scores),
                    "multiple": report.scale[k],
                    "note": why,
                }
            )
    return panels


def _plot_check(panels: list[dict[str, Any]], verdict: str, path: Path) -> None:
    from properties.report.figures import DPI, save_png

    cols = min(len(panels), 2)
    rows = math.ceil(len(panels) / cols)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * cols, 3.4 * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        g = np.asarray(panel["gradient"])
        x = np.arange(g.size)
        series: list[tuple[str, Any, str]] = []
        if panel["expectation"] is not None:
            series.append(("estimator's E[g] (exact)", panel["expectation"], "tab:red"))
        series.append(("grad J", g, "tab:blue"))
        if _grey(panel):
            series.append(
                (f"c_k grad J (c_k = {panel['multiple']:.4g})", panel["multiple"] * g, "tab:gray")
            )
        width = 0.8 / len(series)
        for j, (label, values, colour) in enumerate(series):
            ax.bar(
                x + (j - (len(series) - 1) / 2) * width,
                values,
                width=width,
                color=colour,
                label=label,
            )
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xticks(x, [str(i) for i in x])
        ax.set_xlabel("coordinate i (logit of answer i)")
        ax.set_title(panel["title"], fontsize=10)
        ax.legend(fontsize=7, loc="best")
        if panel["expectation"] is None:
            ax.text(0.02, 0.02, panel["note"], transform=ax.transAxes, fontsize=7, color="tab:red")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(f"verdict: {verdict}", fontsize=11)
    save_png(fig, path)


def _grey(panel: dict[str, Any]) -> bool:
    """Whether :func:`_plot_check` draws the grey ``c_k grad J`` bars of ``panel``."""
    return not math.isclose(panel["multiple"], 1.0)


def check_caption(panels: list[dict[str, Any]], verdict: str) -> str:
    """The caption of the check figure, naming only the bars that :func:`_plot_check` draws.

    >>> print(check_caption([{"multiple": 1.0, "expectation": [0.0]}], "unbiased"))
    Bars per coordinate i: the estimator's exact expectation E[g]_i (red; a finite sum over all
    n^k sample groups) and the true gradient grad J_i (blue). The red and blue bars are equal:
    E[g] = grad J.
    >>> "grey" in check_caption([{"multiple": 0.5, "expectation": [0.0]}], "scaled")
    True
    """
    red = any(p["expectation"] is not None for p in panels)
    grey = any(_grey(p) for p in panels)
    bars = ["the true gradient grad J_i (blue)"]
    if red:
        bars.insert(0, "the estimator's exact expectation E[g]_i (red; a finite sum over all n^k sample groups)")
    if grey:
        bars.append("c_k grad J_i (grey) where c_k ≠ 1")
    text = "Bars per coordinate i: " + (", ".join(bars[:-1]) + " and " if len(bars) > 1 else "") + bars[-1] + "."
    if not red:
        return text + " E[g] is not drawn (see the note of each panel)."
    if verdict == "unbiased":
        return text + " The red and blue bars are equal: E[g] = grad J."
    if verdict == "scaled":
        return text + " The red bars equal the grey ones, the same multiple c_k of grad J on every problem."
    if verdict == "biased":
        other = "the blue and the grey ones" if grey else "the blue ones"
        return text + f" The red bars differ from {other} somewhere, which the counterexample shows."
    return text


def write_check_report(
    out_dir: str | os.PathLike[str],
    report: EstimatorReport,
    fn: Callable[..., Any] | None = None,
    *,
    batched: bool | None = None,
) -> Path:
    r"""Write an HTML report of one :func:`properties.check_estimator` verdict into ``out_dir``.

    Draws, as bars per coordinate, the estimator's exact :math:`E[g]` against
    :math:`\nabla J` and :math:`c_k \nabla J`: for ``"biased"``, on the counterexample (the
    numbers stored in ``report``) and on the reference problem where :math:`c_k` was
    measured (its :math:`E[g]` needs ``fn``); for ``"unbiased"``/``"scaled"``, on a fixed
    display problem per group size (needs ``fn``); for ``"error"``, no figure, the error.
    The page also states the verdict, the region checked (group sizes, problems, seed,
    examples) and the full message.  ``fn`` is the estimator that was checked and
    ``batched`` how to call it (default ``report.batched``); ``fn`` is user code, and its
    misbehaviour is written into the page, never raised.  A report of the multi-prompt
    protocol (``num_prompts``) is refused (:class:`impl.errors.InvalidArgument`).  Files: ``index.html``,
    ``check.png`` (when there is something to draw), ``check.json`` (``report.to_dict()``
    and the drawn numbers), ``manifest.json``; atomic like :func:`write_report`.
    """
    from properties.report.figures import require_matplotlib, vec
    from properties.report.html import esc, figure_html, page, write_json
    from properties.sequence.results import SequenceReport

    if isinstance(report, SequenceReport):
        raise InvalidArgument(
            "write_check_report draws one-step checks; for a sequence check's report use "
            "properties.write_sequence_report(out_dir, report)"
        )
    if getattr(report, "num_prompts", None) is not None:
        raise InvalidArgument(
            "write_check_report does not draw multi-prompt checks (num_prompts) yet; print "
            "report.message or save report.to_json() instead"
        )
    require_matplotlib()
    check_out_dir(out_dir)
    mode = report.batched if batched is None else bool(batched)

    def build(tmp: Path) -> list[str]:
        files = ["index.html", "check.json"]
        panels = _check_panels(report, fn, mode)
        if panels:
            _plot_check(panels, report.verdict, tmp / "check.png")
            files.append("check.png")
        write_json(tmp / "check.json", {"report": report.to_dict(), "panels": panels})
        ks = ", ".join(str(k) for k in report.group_sizes)
        region = [
            ("verdict", report.verdict),
            ("estimator", report.name),
            ("group sizes k", ks),
            (
                "problems checked",
                f"{report.problems_checked}: a fixed battery of hard cases, then up to "
                f"{report.max_examples} Hypothesis examples (seed {report.seed}); the search "
                "stops at the first counterexample or error",
            ),
            ("calls", f"{report.estimator_calls} ({'batched' if report.batched else 'per-group'})"),
            (
                "time",
                f"{report.seconds:.2f} s, of which {report.estimator_seconds:.2f} s in the estimator",
            ),
        ]
        if report.scale is not None:
            region.append(("c_k", ", ".join(f"k={k}: {c:.12g}" for k, c in report.scale.items())))
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in region)
        body = (
            f'<p><span class="badge v-{esc(report.verdict)}">{esc(report.verdict)}</span></p>\n'
            f'<table id="verdicts" class="kv">{rows}</table>\n'
        )
        if panels:
            caption = check_caption(panels, report.verdict) + " " + " ".join(
                f"{p['title']}: logits {vec(p['logits'])}, scores {vec(p['scores'])}"
                + (f" ({p['note']})" if p["note"] else "")
                + "."
                for p in panels
            )
            body += figure_html("check", "E[g] against grad J, per coordinate", caption)
        elif report.verdict != "error":
            body += "<p>No figure: pass the estimator (fn) to draw E[g] against grad J.</p>\n"
        body += f"<h2>The checker's report</h2>\n<pre>{esc(report.message)}</pre>\n"
        body += (
            "<footer>Built by <code>ida-verify check --report</code> "
            f'(ida-verify {esc(_version())}). Data: <a href="check.json">check.json</a>.</footer>'
        )
        (tmp / "index.html").write_text(
            page(f"ida-verify check: {report.name}", f"verdict: {esc(report.verdict)}", body),
            encoding="utf-8",
        )
        return files

    return _publish(out_dir, build, "check report")


__all__ = [
    "DISPLAY_LOGITS",
    "DISPLAY_SCORES",
    "MANIFEST",
    "ReportUnavailable",
    "check_caption",
    "check_out_dir",
    "out_dir_problem",
    "write_check_report",
    "write_report",
]
