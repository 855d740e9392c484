r"""The HTML page of a sequence check (:func:`properties.check_sequence_loss`,
:func:`properties.check_token_weights`, ``ida-verify check --sequence --report DIR``).

Everything but the variance is read from the :class:`properties.sequence.results.SequenceReport`
(no user code runs for it): the verdict and the region checked; for a counterexample, its responses
as token strings with their rewards and probabilities (``pi`` and, off-policy, the behaviour
policy's ``pi_old``), a bar chart of the exact :math:`E[g]` against :math:`c\,\nabla J` per
node and token (``c`` measured on the reference problem) and each shown token's expected
weight against its response's length, next to REINFORCE's; the diagnosis table
(``diagnose=True``); with the checked function, the exact variance table; the full
message.  Files: ``index.html``, ``sequence.png`` (when there
is a counterexample), ``check.json`` (``report.to_dict()`` and the drawn numbers),
``manifest.json``; written atomically like :func:`properties.report.page.write_check_report`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from impl.errors import InvalidArgument, describe
from impl.sequence import response_probs
from properties.report.page import _publish, _version, check_out_dir
from properties.sequence.results import SequenceCounterexample, SequenceReport, key_text


def reinforce_weights(
    rewards: Any, mask: Any, log_probs: Any, old_log_probs: Any, ref_log_probs: Any, kl_coef: float
) -> Any:
    r"""Plain REINFORCE as token weights, the variance's yardstick: every token of response
    :math:`y_j` gets :math:`(\pi/\pi_{old})(y_j)\,A(y_j)/B`, with
    :math:`A = R - eta\log(\pi/\pi_{ref})(y)` and ``B = P k`` (unbiased on- and off-policy).

    >>> from properties.sequence.checker import check_token_weights
    >>> check_token_weights(reinforce_weights, kl_coef=0.1, off_policy=True, max_examples=0).verdict
    'unbiased'
    """
    lp = (log_probs * mask).sum(-1)
    ratio = np.exp(lp - (old_log_probs * mask).sum(-1))
    advantage = rewards - kl_coef * (lp - (ref_log_probs * mask).sum(-1))
    return (ratio * advantage)[:, None] * mask / rewards.shape[0]


MAX_BARS = 24
"""Most node-token coordinates drawn in the bar chart (those furthest from ``c grad J`` first,
then the others with a nonzero gradient or expectation, as the message's table)."""


def _bars(cex: SequenceCounterexample) -> dict[str, Any]:
    """The coordinates drawn: labels, ``E[g]``, ``c grad J``, and whether outside the tolerance."""
    bad = np.abs(cex.discrepancy) > cex.tolerance
    order = [int(i) for i in np.argsort(-np.abs(cex.discrepancy), kind="stable") if bad[i]]
    order += [
        i
        for i in range(cex.discrepancy.size)
        if not bad[i] and (cex.gradient[i] != 0 or cex.expectation[i] != 0)
    ]
    order = sorted(order[:MAX_BARS])
    labels = []
    for i in order:
        p, node, tok = cex.coordinates[i]
        labels.append(f"{'p' + str(p) + ' ' if cex.shape.num_prompts > 1 else ''}{node} -> {tok}")
    return {
        "labels": labels,
        "expectation": [float(cex.expectation[i]) for i in order],
        "c_grad_j": [float(cex.reference_multiple * cex.gradient[i]) for i in order],
        "outside": [bool(bad[i]) for i in order],
        "c": float(cex.reference_multiple),
        "left_out": int(cex.discrepancy.size - len(order)),
    }


def _weights(cex: SequenceCounterexample) -> list[dict[str, Any]]:
    return [row.to_dict() for row in cex.length_pair]


def _plot(bars: dict[str, Any], weights: list[dict[str, Any]], path: Path) -> None:
    from properties.report.figures import new_figure, save_png

    fig, axes = new_figure(2 if weights else 1, height=4.2)
    ax = axes[0]
    x = np.arange(len(bars["labels"]))
    ax.bar(x - 0.2, bars["expectation"], width=0.4, color="tab:red", label="E[g] (exact)")
    ax.bar(x + 0.2, bars["c_grad_j"], width=0.4, color="tab:gray", label=f"c grad J (c = {bars['c']:.4g})")
    for xi, out in zip(x, bars["outside"], strict=True):
        if out:
            ax.annotate("*", (xi, 0.0), ha="center", va="bottom", color="tab:red", fontsize=12)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xticks(x, bars["labels"], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("node (prefix) -> token")
    ax.set_title("E[g] against c grad J per node (* outside the tolerance)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    if weights:
        ax = axes[1]
        for j, row in enumerate(weights):
            lengths = np.full(len(row["weights"]), row["length"], dtype=np.float64) + 0.06 * (j - 0.5)
            ax.scatter(lengths, row["weights"], marker="o", label=f"{row['response']!r}: the loss")
            ax.scatter([row["length"]], [row["reinforce"]], marker="x", s=60, color="k")
        ax.scatter([], [], marker="x", color="k", label="REINFORCE: c (pi/pi_old) A")
        ax.set_xticks(sorted({int(r["length"]) for r in weights}))
        ax.set_xlabel("response length |y| (tokens)")
        ax.set_ylabel("expected weight per token")
        ax.set_title("each token's expected weight against length", fontsize=10)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.legend(fontsize=7, loc="best")
    save_png(fig, path)


def _responses_html(cex: SequenceCounterexample) -> str:
    from properties.report.html import esc

    space = cex.shape.space
    pi = response_probs(space, cex.theta)
    old = None if cex.old_theta is None else response_probs(space, cex.old_theta)
    head = "<th>prompt</th><th>response (tokens)</th><th>length</th><th>reward R</th><th>pi(y)</th>"
    head += "" if old is None else "<th>pi_old(y) (behaviour policy)</th>"
    rows = []
    for p in range(cex.shape.num_prompts):
        for r in range(space.num_responses):
            text = space.strings[r] + (" (truncated)" if space.truncated[r] else "")
            cells = [p, text, int(space.lengths[r]), f"{cex.rewards[p, r]:.6g}", f"{pi[p, r]:.4g}"]
            if old is not None:
                cells.append(f"{old[p, r]:.4g}")
            rows.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    return f'<table id="responses"><tr>{head}</tr>{"".join(rows)}</table>\n'


def _variance(report: SequenceReport, cex: SequenceCounterexample, fn: Any) -> dict[str, Any]:
    """The exact variance and MSE of ``fn`` and of plain REINFORCE on the counterexample's problem
    (``{"error": ...}`` when ``fn`` misbehaves: user code, written down, never raised)."""
    from properties.sequence.variance import sequence_moments

    problem = {
        "theta": cex.theta, "rewards": cex.rewards, "k": cex.shape.k, "ref_theta": cex.ref_theta,
        "old_theta": cex.old_theta, "kl_coef": cex.kl_coef,
    }
    try:
        mine = sequence_moments(fn, **problem, protocol=report.protocol, batched=report.batched)
    except InvalidArgument as exc:  # the function misbehaved (sequence_moments names how)
        return {"error": str(exc)}
    base = sequence_moments(reinforce_weights, **problem, protocol="token-weights", batched=False)
    rows = []
    for name, m in ((report.name, mine), ("plain REINFORCE", base)):
        rows.append({
            "estimator": name, "variance": m.variance, "bias_squared": m.bias_squared,
            "mse": m.variance + m.bias_squared,
            "variance_ratio": m.variance / base.variance if base.variance > 0 else None,
        })
    return {"rows": rows}


def _variance_html(data: dict[str, Any] | None) -> str:
    from properties.report.html import esc, format_value

    if data is None:
        return ""
    out = "<h2>Variance on the counterexample's problem (exact)</h2>\n"
    if "error" in data:
        return out + f"<p>Not computed: the function misbehaved: {esc(data['error'])}</p>\n"
    head = "".join(
        f"<th>{h}</th>"
        for h in ("estimator", "Var[g] = E|g - E g|^2", "|E g - grad J|^2", "MSE", "variance / REINFORCE's")
    )
    rows = "".join(
        "<tr>" + "".join(
            f"<td>{esc(format_value(r[c]) if r[c] is not None else '-')}</td>"
            for c in ("estimator", "variance", "bias_squared", "mse", "variance_ratio")
        ) + "</tr>"
        for r in data["rows"]
    )
    return (
        out + f'<table id="variance"><tr>{head}</tr>{rows}</table>\n'
        "<p>Over every batch of the problem, weighted by its probability; plain REINFORCE gives "
        "every token (pi/pi_old)(y) (R - kl_coef log(pi/pi_ref))(y) / B.</p>\n"
    )


def _diagnosis_html(report: SequenceReport) -> str:
    from properties.report.html import esc, format_value

    found = report.diagnosis
    if found is None:
        return ""
    rows = "".join(
        f"<tr><td>{esc(f.name)}</td><td>{esc(f.sentence)}</td><td>{esc(format_value(dict(f.evidence)))}</td></tr>"
        for f in found.findings
    ) or '<tr><td colspan="3">no cause found by the probes</td></tr>'
    out = (
        "<h2>Causes (diagnosis)</h2>\n"
        f'<table id="diagnosis"><tr><th>cause</th><th>what it means</th><th>evidence</th></tr>{rows}</table>\n'
    )
    if found.skipped:
        out += "<p>Not looked for (the probe could not run): " + esc("; ".join(found.skipped)) + "</p>\n"
    return out


def write_sequence_report(out_dir: str | os.PathLike[str], report: SequenceReport, fn: Any = None) -> Path:
    """Write the page of a sequence check's ``report`` into ``out_dir`` (see the module).

    With ``fn`` (the loss or weight function that was checked), a counterexample's page also
    gets the exact variance table: ``fn``'s and plain REINFORCE's (:func:`reinforce_weights`)
    variance, squared bias and MSE on the counterexample's problem.

    Needs matplotlib (:class:`properties.report.figures.ReportUnavailable` otherwise);
    ``out_dir`` must be new, empty or an earlier report.

    >>> import pytest, tempfile; _ = pytest.importorskip("matplotlib")
    >>> from properties.sequence.checker import check_token_weights
    >>> def token_mean(rewards, mask, log_probs):
    ...     return rewards[:, None] * mask / mask.sum(-1, keepdims=True) / rewards.shape[0]
    >>> report = check_token_weights(token_mean, max_examples=0, diagnose=True)
    >>> out = write_sequence_report(tempfile.mkdtemp() + "/page", report)
    >>> sorted(p.name for p in out.iterdir())
    ['check.json', 'index.html', 'manifest.json', 'sequence.png']
    """
    from properties.report.figures import require_matplotlib
    from properties.report.html import esc, figure_html, page, write_json

    if not isinstance(report, SequenceReport):
        raise InvalidArgument(f"Expected a SequenceReport but got {describe('report', report)}")
    require_matplotlib()
    check_out_dir(out_dir)
    cex = report.counterexample if isinstance(report.counterexample, SequenceCounterexample) else None

    def build(tmp: Path) -> list[str]:
        files = ["index.html", "check.json"]
        bars = None if cex is None else _bars(cex)
        weights = [] if cex is None else _weights(cex)
        variance = None if cex is None or fn is None else _variance(report, cex, fn)
        if cex is not None and bars is not None:
            _plot(bars, weights, tmp / "sequence.png")
            files.append("sequence.png")
        write_json(
            tmp / "check.json", {"report": report.to_dict(), "bars": bars, "weights": weights, "variance": variance}
        )
        region = [
            ("verdict", report.verdict + (" (partial)" if report.partial else "")),
            ("loss" if report.protocol != "token-weights" else "weight function", report.name),
            ("protocol", report.protocol),
            ("group sizes k", ", ".join(str(k) for k in report.group_sizes)),
            ("problems checked", f"{report.problems_checked} (seed {report.seed}, max_examples {report.max_examples})"),
            ("time", f"{report.seconds:.2f} s"),
        ]
        if report.scale is not None:
            region.append(("c", ", ".join(f"{key_text(k)}: {c:.12g}" for k, c in sorted(report.scale.items()))))
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in region)
        body = (
            f'<p><span class="badge v-{esc(report.verdict)}">{esc(report.verdict)}</span></p>\n'
            f'<table id="verdicts" class="kv">{rows}</table>\n'
        )
        if cex is not None and bars is not None:
            body += (
                f"<h2>The counterexample: {esc(cex.shape.describe())}</h2>\n"
                f"<p>Found by {esc(cex.found_by)}; {cex.shape.num_batches} batches of k = {cex.shape.k}.</p>\n"
                + _responses_html(cex)
            )
            caption = (
                f" Left: per node (prefix) and token, the loss's exact E[g] (red) against c grad J (grey), "
                f"c = {bars['c']:.6g} measured on the reference problem ({cex.reference_label}); an unbiased "
                "or scaled loss has the red bars equal to the grey ones on every problem; * marks the "
                "coordinates outside the tolerance"
                + (f" ({bars['left_out']} coordinates with no gradient not drawn)" if bars["left_out"] else "")
                + "."
                + (
                    " Right: each token's expected weight E[w_t | y] (dots, one per token) against the "
                    "response's length, and REINFORCE's per-token weight c (pi/pi_old)(y) A(y) (crosses): "
                    "REINFORCE gives every token of a response the same weight, whatever its length."
                    if weights
                    else ""
                )
            )
            body += figure_html("sequence", "E[g] against c grad J, and the token weights", caption)
        elif report.verdict != "error":
            body += "<p>No figure: there is no counterexample (the figures draw one).</p>\n"
        body += _diagnosis_html(report) + _variance_html(variance)
        body += f"<h2>The checker's report</h2>\n<pre>{esc(report.message)}</pre>\n"
        body += (
            "<footer>Built by <code>ida-verify check --sequence --report</code> "
            f'(ida-verify {esc(_version())}). Data: <a href="check.json">check.json</a>.</footer>'
        )
        (tmp / "index.html").write_text(
            page(f"ida-verify check: {report.name}", f"verdict: {esc(report.verdict)}", body),
            encoding="utf-8",
        )
        return files

    return _publish(out_dir, build, "check report")


__all__ = ["MAX_BARS", "reinforce_weights", "write_sequence_report"]
