r"""The HTML page of a comparison (:func:`properties.compare_estimators`, ``ida-verify compare --report``).

One figure, two panels against the group size ``k``: each estimator's variance ratio
:math:`\operatorname{Var}[g] / \operatorname{Var}[g_{RF}]` and MSE ratio
:math:`(|b|^2 + \operatorname{Var}[g]) / \operatorname{Var}[g_{RF}]` to plain REINFORCE,
on a log scale (plain REINFORCE is the line at 1); then the table of the comparison and
its data (``compare.json``).  Written atomically like the other reports
(:func:`properties.report.page.write_check_report`).
"""

from __future__ import annotations

import os
from pathlib import Path

from properties.onestep.compare import Comparison, _num
from properties.report.page import _publish, _version, check_out_dir


def _plot(comparison: Comparison, path: Path) -> list[str]:
    """Draw the two panels; return the names of the rows left out (no positive ratio at any
    ``k``: no variance, or a variance of exactly 0, which a log scale cannot show)."""
    from properties.report.figures import new_figure, save_png

    fig, axes = new_figure(2, height=3.8)
    left_out = []
    ks = list(comparison.group_sizes)
    for row in comparison.rows:
        drawn = False
        for ax, values in zip(axes, (row.variance_ratio, row.mse_ratio), strict=True):
            points = [(k, values.get(k)) for k in ks]
            xs = [k for k, v in points if v is not None and v > 0.0]
            ys = [v for k, v in points if v is not None and v > 0.0]
            if xs:
                ax.plot(xs, ys, marker="o", label=f"{row.name} ({row.verdict})")
                drawn = True
        if not drawn:
            left_out.append(row.name)
    for ax, title in zip(axes, ("variance / REINFORCE's", "MSE / REINFORCE's"), strict=True):
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("group size k")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    save_png(fig, path)
    return left_out


def write_compare_report(out_dir: str | os.PathLike[str], comparison: Comparison) -> Path:
    """Write the page of ``comparison`` into ``out_dir``: ``index.html``, ``compare.png``,
    ``compare.json`` (``comparison.to_dict()``), ``manifest.json``.

    Needs matplotlib (:class:`properties.report.figures.ReportUnavailable` otherwise);
    ``out_dir`` must be new, empty or an earlier report (as for the other reports).
    """
    from properties.report.figures import require_matplotlib
    from properties.report.html import esc, figure_html, page, write_json

    if not isinstance(comparison, Comparison):
        from impl.errors import InvalidArgument, describe

        raise InvalidArgument(f"Expected a Comparison but got {describe('comparison', comparison)}")
    require_matplotlib()
    check_out_dir(out_dir)

    def build(tmp: Path) -> list[str]:
        left_out = _plot(comparison, tmp / "compare.png")
        write_json(tmp / "compare.json", comparison.to_dict())
        cells = []
        for row in comparison.rows:
            for k in comparison.group_sizes:
                c = None if row.scale is None else row.scale.get(k)
                cells.append(
                    "<tr>"
                    + "".join(
                        f"<td>{esc(v)}</td>"
                        for v in (
                            row.name, row.verdict, k, _num(c), _num(row.variance_ratio.get(k)),
                            _num(row.mse_ratio.get(k)), _num(row.rescaled_variance_ratio.get(k)),
                        )
                    )
                    + "</tr>"
                )
        head = "".join(
            f"<th>{h}</th>"
            for h in (
                "estimator", "verdict", "k", "c_k", "variance ratio", "MSE ratio",
                "variance ratio of g / c_k",
            )
        )
        body = f'<table id="verdicts"><tr>{head}</tr>{"".join(cells)}</table>\n'
        caption = (
            f" Each estimator against plain REINFORCE at the same problem and k, on "
            f"{comparison.source or 'the given problems'}: the {comparison.aggregate} over the "
            "problems of the ratio of exact variances (left) and of mean squared errors "
            "|bias|^2 + variance (right), on a log scale; the dashed line is REINFORCE. Below "
            "the line is better. A scaled or biased estimator's MSE carries its bias."
            + (
                " Not drawn (no variance, or a variance of 0; the table says which): "
                + ", ".join(left_out)
                + "."
                if left_out
                else ""
            )
        )
        body += figure_html("compare", "Variance and MSE against k, relative to REINFORCE", caption)
        body += f"<h2>The comparison</h2>\n<pre>{esc(comparison.table())}</pre>\n"
        body += (
            "<footer>Built by <code>ida-verify compare --report</code> "
            f'(ida-verify {esc(_version())}). Data: <a href="compare.json">compare.json</a>.</footer>'
        )
        names = ", ".join(row.name for row in comparison.rows)
        (tmp / "index.html").write_text(
            page("ida-verify compare", esc(names), body), encoding="utf-8"
        )
        return ["index.html", "compare.png", "compare.json"]

    return _publish(out_dir, build, "compare report")


__all__ = ["write_compare_report"]
