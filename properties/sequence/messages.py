"""The readable report of a sequence check: the message, the problem and weight tables, rerun and repro lines."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np

from impl.sequence import response_probs
from properties.judging.verdict import (
    norm,
)
from properties.onestep.results import (
    RoundoffNote,
)
from properties.sequence.problems import Shape, shape_data
from properties.sequence.region import describe_shapes
from properties.sequence.results import (
    SequenceCounterexample,
    SequenceError,
    SequenceReport,
    WeightRow,
    key_text,
)
from properties.sequence.run import SCALE_MATCH_FLOOR, SCALE_MATCH_UNCERTAINTIES, _Run

_KNOWN_SCALES: tuple[tuple[str, Callable[[int, int, int, int], float]], ...] = (
    ("(k-1)/k (what a self-inclusive group mean as baseline gives)", lambda k, t, p, v: (k - 1) / k),
    ("1/T (what a division by the constant max_len gives)", lambda k, t, p, v: 1.0 / t),
    (
        "P (what a sum over the prompts gives, where the target is their mean: the RL objective "
        "averages over prompts)",
        lambda k, t, p, v: float(p),
    ),
    (
        "(Pk-1)/(Pk) (what a baseline that is the self-inclusive mean of the whole batch gives)",
        lambda k, t, p, v: (p * k - 1) / (p * k),
    ),
    (
        "(k-1)/k * P (what the self-inclusive group mean and a sum over the prompts give)",
        lambda k, t, p, v: (k - 1) * p / k,
    ),
    ("P/T (what a division by max_len and a sum over the prompts give)", lambda k, t, p, v: p / t),
    (
        "(k-1)/(k T) (what the self-inclusive group mean and a division by max_len give)",
        lambda k, t, p, v: (k - 1) / (k * t),
    ),
    ("k (what a sum over the group instead of a mean gives)", lambda k, t, p, v: float(k)),
    (
        "k P (what a sum over all P*k responses of the batch instead of a mean gives)",
        lambda k, t, p, v: float(k * p),
    ),
    ("1/k", lambda k, t, p, v: 1.0 / k),
    ("1/V (what a mean over the vocabulary gives)", lambda k, t, p, v: 1.0 / v),
)
"""Formulas a measured scale may have the value of.  The value alone does not show the cause
(reversed rewards as a baseline also give (k-1)/k at k = 3), so a hint says "has the value
of", never "is"."""


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _arr(a: Any) -> str:
    return "np.array(" + repr(np.asarray(a, dtype=np.float64).tolist()) + ")"  # round-trip exact


def _scale_hint(key: Hashable, c: float, unc: float, scale: Mapping[Hashable, float]) -> str:
    """The known formula whose value ``key``'s scale has, matching the most other keys (the first on ties).

    A formula is named only where it matches two or more keys (or the only one), so that
    ``k`` at ``P = 1`` and ``k P`` at ``P = 2`` read as one ``k P``.  It names a value, not a
    cause: "has the value of".

    >>> _scale_hint((3, 2, 1, 3), 2 / 3, 1e-15, {(3, 2, 1, 3): 2 / 3, (2, 2, 1, 3): 0.5})
    '; has the value of (k-1)/k (what a self-inclusive group mean as baseline gives)'
    """
    slack = max(unc * SCALE_MATCH_UNCERTAINTIES, SCALE_MATCH_FLOOR)
    best, best_count = "", 0
    for text, f in _KNOWN_SCALES:
        matching = [
            kk
            for kk, cc in scale.items()
            if isinstance(kk, tuple)
            and len(kk) == 4
            and abs(cc - f(*kk)) <= slack
            and abs(cc - 1) > slack
        ]
        if (
            isinstance(key, tuple)
            and key in matching
            and (len(matching) >= 2 or len(scale) == 1)
            and len(matching) > best_count
        ):
            best, best_count = f"; has the value of {text}", len(matching)
    return best


def _repro(report: SequenceReport, cex: SequenceCounterexample) -> str:
    """The literal call of :func:`sequence_expectation` that gives this counterexample's E[g] and grad J."""
    parts = [f"theta={_arr(cex.theta)}", f"rewards={_arr(cex.rewards)}", f"k={cex.shape.k}"]
    parts.append(f"ref_theta={_arr(cex.ref_theta)}")
    if cex.old_theta is not None:
        parts.append(f"old_theta={_arr(cex.old_theta)}")
    if cex.kl_coef:
        parts.append(f"kl_coef={cex.kl_coef!r}")
    if cex.shape.tool_tokens:
        parts.append("tool_tokens=True")
    if getattr(cex, "sampler_theta", None) is not None:
        parts.append(f"sampler_theta={_arr(cex.sampler_theta)}")
    if getattr(cex, "value_table", None) is not None:
        parts.append(f"value_table={_arr(cex.value_table)}")
    elif cex.shape.values == "exact":
        parts.append("exact_values=True")
    if report.protocol == "token-weights":
        parts.append(f"protocol='token-weights', batched={report.batched}")
    if report.protocol == "trainer-loss":
        s = report.settings
        parts += [
            f"{n}={s[n]!r}" for n in ("micro_batches", "dp_size", "temperature", "against") if n in s
        ]
        return "  E, G = trainer_expectation(fn, " + ", ".join(parts) + ")"
    return "  E, G = sequence_expectation(fn, " + ", ".join(parts) + ")"


def _rerun(report: SequenceReport) -> str:
    s = report.settings
    fn = (
        "check_sequence_loss(loss_fn"
        if report.protocol == "sequence-loss"
        else "check_trainer_loss(fn"
        if report.protocol == "trainer-loss"
        else f"check_token_weights(fn, batched={report.batched}"
    )
    parts = [
        f"group_sizes={s['group_sizes']}",
        f"vocab_size={s['vocab_size']}",
        f"max_len={s['max_len']}",
        f"kl_coef={s['kl_coef']}",
        f"off_policy={s['off_policy']}",
        f"num_prompts={s['num_prompts']}",
        f"seed={s['seed']}",
        f"max_examples={s['max_examples']}",
    ]
    parts += [f"{n}={s[n]}" for n in ("micro_batches", "dp_size", "temperature", "against") if n in s]
    parts += [f"{n}={s[n]!r}" for n in ("tool_tokens", "sampling_mismatch", "values") if n in s]
    return f"  rerun: properties.{fn}, " + ", ".join(parts) + ")"


def _problem_text(cex: SequenceCounterexample) -> list[str]:
    space = cex.shape.space
    lines = []
    sampler = getattr(cex, "sampler_theta", None)
    pi = response_probs(space, cex.theta)
    old = None if cex.old_theta is None else response_probs(space, cex.old_theta)
    for p in range(cex.shape.num_prompts):
        items = [
            f"{space.strings[r]!r}{' (truncated)' if space.truncated[r] else ''}: R={_fmt(cex.rewards[p, r])}, "
            + (f"p={pi[p, r]:.3g}" if old is None else f"pi={pi[p, r]:.3g}, pi_old={old[p, r]:.3g}")
            for r in range(space.num_responses)
        ]
        shown = items if len(items) <= 16 else [*items[:16], f"... ({len(items)} responses)"]
        lines.append(f"  prompt {p} responses: " + "; ".join(shown))
    lines.append(f"  theta = {_arr(cex.theta)}")
    if cex.kl_coef > 0:
        lines.append(f"  ref_theta = {_arr(cex.ref_theta)} (kl_coef={cex.kl_coef})")
    if cex.old_theta is not None:
        lines.append(
            f"  old_theta = {_arr(cex.old_theta)} (the behaviour policy pi_old that sampled the responses; "
            "pi, from theta, is the current policy whose gradient is checked)"
        )
    if sampler is not None:
        lines.append(
            f"  sampler_theta = {_arr(sampler)} (the inference engine's policy that sampled the responses, "
            "a perturbation of pi_old)"
        )
    return lines


_MAX_ROWS = 12


def _table(cex: SequenceCounterexample) -> str:
    bad = np.abs(cex.discrepancy) > cex.tolerance
    order = [
        i
        for i in np.argsort(-np.abs(cex.discrepancy) / np.maximum(cex.tolerance, 1e-300))
        if bad[i]
    ]
    order += [
        i
        for i in range(cex.discrepancy.size)
        if not bad[i] and (cex.gradient[i] != 0 or cex.expectation[i] != 0)
    ]
    rows = [
        f"  {'prompt':>6} {'node (prefix)':>16} {'token':>6} {'E[g]':>14} {'grad J':>14} {'c*grad J':>14} "
        f"{'difference':>11} {'tolerance':>9}"
    ]
    for i in order[:_MAX_ROWS]:
        p, node, tok = cex.coordinates[i]
        mark = " <--" if bad[i] else ""
        rows.append(
            f"  {p:>6} {node:>16} {tok:>6} {cex.expectation[i]:>14.8g} {cex.gradient[i]:>14.8g} "
            f"{cex.reference_multiple * cex.gradient[i]:>14.8g} {cex.discrepancy[i]:>11.3g} "
            f"{cex.tolerance[i]:>9.2g}{mark}"
        )
    if len(order) > _MAX_ROWS:
        rows.append(f"  ... ({int(bad.sum())} coordinates outside the tolerance in all)")
    return "\n".join(rows)


def _weight_row(row: WeightRow) -> str:
    """One response of the weight table as a sentence.

    >>> for part in _weight_row(WeightRow(0, "ab", 2, 0.25, 1.0, (0.5, 0.5), 1.0)).split(": "):
    ...     print(part.strip())
    prompt 0, 'ab' (2 tokens, R = 1, p = 0.25)
    the loss gives each token an expected weight of 0.5, 0.5 (0.5 times REINFORCE's 1)
    """
    tokens = f"{row.length} token{'s' if row.length != 1 else ''}"
    probs = (
        f"p = {row.probability:.3g}"
        if row.current is None
        else f"pi = {row.current:.3g} under the current policy, pi_old = {row.probability:.3g} under the "
        "behaviour policy"
    )
    weights = ", ".join(_fmt(w) for w in row.weights)
    each = "its one token an" if row.length == 1 else "each token an"
    if row.reinforce != 0 and all(np.isfinite(row.weights)):
        ratios = sorted({float(f"{w / row.reinforce:.3g}") for w in row.weights})
        ratio = ", ".join(_fmt(r) for r in ratios)
        versus = f"{ratio} times REINFORCE's {_fmt(row.reinforce)}"
    else:
        versus = f"REINFORCE gives each token {_fmt(row.reinforce)}"
    return (
        f"  prompt {row.prompt}, {row.response!r} ({tokens}, R = {_fmt(row.reward)}, {probs}): "
        f"the loss gives {each} expected weight of {weights} ({versus})"
    )


def _pair_text(cex: SequenceCounterexample) -> list[str]:
    if not cex.length_pair:
        return []
    lines = [
        "Token weights: REINFORCE gives every token of a response y the same expected weight, "
        "c*(pi/pi_old)(y)*A(y) up to a baseline (A = R - kl_coef*log(pi/pi_ref)); the loss gives "
        "(E[w_t | y], summed over the rows y can occupy, for the responses whose weights depart most from "
        "REINFORCE's):"
    ]
    lines += [_weight_row(row) for row in cex.length_pair]
    if not cex.weights_complete:
        lines.append(
            "  (the loss also reads the logits other than through log_probs, e.g. an entropy term: "
            "these weights are only the log_probs part of its gradient)"
        )
    return lines


def _roundoff_text(report: SequenceReport, note: RoundoffNote) -> str:
    shown = ", ".join(f"{u:.3g} ulps of {name}" for name, u in note.ulps.items())
    at = f"with rtol={note.rtol:g} ({note.dtype} round-off) the checker's verdict is {note.verdict.upper()}"
    if note.verdict == "scaled" and note.scale is not None:
        at += ": " + ", ".join(
            f"c = {c:.6g} at {key_text(k)}" for k, c in sorted(note.scale.items())
        )
    elif note.verdict == "biased":
        at += " (another problem shows a bias beyond that round-off: not round-off alone)"
    seen = report.run.dtypes if report.run is not None else ()
    inside = (
        f"the loss computes in {', '.join(seen)} (seen by the checker)"
        if note.dtype in seen
        else f"if the code computes in {note.dtype} anywhere (or casts to it)"
    )
    return "\n".join(
        [
            f"Round-off? The residual |E[g] - c grad J| is {note.relative_residual:.3g} of |grad J| "
            f"on this problem ({shown}): within the checker's round-off bound for {note.dtype}; "
            f"{inside}, it may be round-off rather than a bias of the formula.",
            f"  At that precision: {at}.",
            "  The verdict stays BIASED because the output's own dtype claims more precision; "
            f"confirm with rtol={note.rtol:g}, atol={note.atol:g}.",
        ]
    )


_PATHS = {
    "vmap": "by torch.func.vmap (many batches per call; sampled batches confirmed by plain calls)",
    "loop": "one batch at a time (plain calls)",
    "batched": "in batched calls (many batches per call)",
    "per-batch": "one batch at a time",
}


def _checked(report: SequenceReport) -> str:
    """The region line: exactly the shapes evaluated and how, the value ranges, what was not evaluated."""
    info = report.run
    assert info is not None
    path = _PATHS.get(info.mode, info.mode)
    if info.fallback_reason:
        path += f" (fallback: {info.fallback_reason})"
    shapes = describe_shapes(Shape(*_parse(text)) for text, _, _ in info.shapes)
    ranges = _ranges_text(info.ranges)
    checked = (
        f"{report.problems_checked} problems on {len(info.shapes)} "
        f"shape{'s' if len(info.shapes) != 1 else ''}, evaluated {path}: "
        f"{shapes} (up to {max((g for _, _, g in info.shapes), default=0)} batches each); "
        f"{ranges}; {report.estimator_calls} calls, seed={report.seed}, "
        f"max_examples={report.max_examples}, kl_coef={report.settings['kl_coef']}, "
        f"off_policy={report.settings['off_policy']}, num_prompts={report.settings['num_prompts']}, "
        + ("tool_tokens=True (odd positions are the environment's), " if report.settings.get("tool_tokens") else "")
        + ("sampling_mismatch=True, " if report.settings.get("sampling_mismatch") else "")
        + (f"values={report.settings['values']!r}, " if report.settings.get("values") else "")
        + f"{report.seconds:.2f} s"
    )
    if info.multiset:
        checked += (
            f"; summed over multisets of each group's responses (the symmetry within a group "
            f"checked on a re-ordered copy of every multiset) on {info.multiset}, over ordered "
            "batches elsewhere"
        )
    if info.route_fallback:
        checked += f"; over ordered batches only: {info.route_fallback}"
    if info.over_budget:
        checked += f"; not evaluated (over the batch budget {info.batch_budget}): {info.over_budget}"
    if info.not_reached:
        checked += f"; not reached (the check stopped at the first failure): {info.not_reached}"
    for note in info.blind_spots:
        checked += f"; {note}"
    return checked


def _multisets_text(shape: Shape) -> str:
    """``", summed as 28 multisets"`` on the multiset route, else ``""``."""
    if shape.route != "multiset":
        return ""
    return f", summed as {shape_data(shape).batches.shape[0]} multisets"


def _parse(text: str) -> tuple[int, int, int, int]:
    """``(V, T, k, P)`` from :meth:`Shape.describe`.

    >>> _parse("V=3, T=2, k=4, P=1")
    (3, 2, 4, 1)
    """
    v, t, k, p = (int(part.partition("=")[2]) for part in text.split(", "))
    return v, t, k, p


def _ranges_text(ranges: Mapping[str, float | None]) -> str:
    if ranges.get("logit_min") is None:
        return "no values"
    return (
        f"logits in [{ranges['logit_min']:.3g}, {ranges['logit_max']:.3g}], token log-probs down "
        f"to {ranges['log_prob_min']:.3g}, rewards in [{ranges['reward_min']:.3g}, "
        f"{ranges['reward_max']:.3g}]"
    )


def _partial_text(report: SequenceReport) -> str:
    """`` on the shapes checked; PARTIAL: ...`` for a partial check (empty otherwise)."""
    info = report.run
    if info is None or not report.partial:
        return ""
    cells = "; ".join(key_text(c) for c in info.unchecked)
    return (
        f" on the shapes checked; PARTIAL: not checked at any V (over the batch budget "
        f"{info.batch_budget}): {cells}"
    )


def _causes(report: SequenceReport) -> list[str]:
    """The "Causes:" block of a diagnosed report, one line per finding (empty when not diagnosed).

    >>> from properties.sequence.results import Diagnosis, Finding
    >>> r = SequenceReport(name="f", verdict="scaled", scale=None, scale_uncertainty=None,
    ...     counterexample=None, error=None, group_sizes=(2,), seed=0, max_examples=0, batched=True,
    ...     problems_checked=1, estimator_calls=1, estimator_seconds=0.0, seconds=0.0, message="",
    ...     diagnosis=Diagnosis((Finding("length", "weight proportional to 1/|y|."),)))
    >>> _causes(r)
    ['Causes (diagnosis: targeted probes):', '  length: weight proportional to 1/|y|.']
    """
    found = report.diagnosis
    if found is None:
        return []
    lines = ["Causes (diagnosis: targeted probes):"]
    lines += [f"  {f.name}: {f.sentence}" for f in found.findings] or [
        "  no cause found by the probes (the bias shows only on the problem above)"
    ]
    if found.skipped:
        lines.append("  not looked for (the probe could not run): " + "; ".join(found.skipped))
    return lines


def _message(report: SequenceReport, run: _Run) -> str:
    what = "Weight function" if report.protocol == "token-weights" else "Loss"
    head = f"{what} {report.name!r}"
    checked = _checked(report)
    partial = _partial_text(report)
    if report.verdict == "unbiased":
        return (
            f"{head} is UNBIASED{partial}: E[g] = grad J exactly (to round-off) on every problem "
            f"checked: {checked}."
        )
    if report.verdict == "scaled":
        assert report.scale is not None and report.scale_uncertainty is not None
        lines = [
            f"{head} is SCALED{partial}: E[g] = c grad J with one fixed c > 0 per (k, T, P, V) "
            f"(fixed for a model), on every problem checked ({checked}):"
        ]
        for key, c in sorted(report.scale.items()):
            unc = report.scale_uncertainty[key]
            lines.append(
                f"  {key_text(key)}: c = {c:.12g} (+- {unc:.1g}){_scale_hint(key, c, unc, report.scale)}"
            )
        lines.append(
            "It ascends J, but its step is rescaled by c; divide by c (or fix the aggregation) to "
            "make it unbiased."
        )
        if report.scale_note is not None:
            lines.append(report.scale_note.text())
        lines += _causes(report)
        return "\n".join(lines)
    if report.verdict == "biased":
        cex = report.counterexample
        assert isinstance(cex, SequenceCounterexample)
        fit = (
            "grad J = 0 here, so no multiple fits"
            if cex.multiple is None
            else f"best-fitting multiple c = {cex.multiple:.12g}, residual |E[g] - c grad J| = {norm(cex.residual):.3g}"
        )
        lines = [
            f"{head} is BIASED: {cex.reason}.",
            f"Counterexample (found by {cex.found_by}): {cex.shape.describe()} "
            f"({cex.shape.space.num_responses} possible responses per prompt, "
            f"{cex.shape.num_batches} batches"
            + _multisets_text(cex.shape)
            + "):",
            *_problem_text(cex),
            f"  {fit}; c = {cex.reference_multiple:.12g} for {key_text(cex.shape.key)} on the reference "
            f"problem ({cex.reference_label})",
            _table(cex),
            *_pair_text(cex),
        ]
        if cex.roundoff is not None:
            lines.append(_roundoff_text(report, cex.roundoff))
        lines += _causes(report)
        lines += [
            "Reproduce:",
            "  import numpy as np; from properties.trainer import trainer_expectation"
            if report.protocol == "trainer-loss"
            else "  import numpy as np; from properties.sequence.checker import sequence_expectation",
            _repro(report, cex),
            _rerun(report),
            f"Checked: {checked}.",
        ]
        return "\n".join(lines)
    err = report.error
    assert isinstance(err, SequenceError)
    lines = [f"{head} ERROR ({err.kind}): it {err.detail}."]
    if err.shape is not None:
        where = (
            f"{err.shape.describe()}; {err.problem_label.replace('battery: ', 'battery problem ')}"
        )
        if err.batch:
            rows = "; ".join(f"prompt {p}: {text!r} (reward {_fmt(r)})" for p, text, r in err.batch)
            lines.append(f"Triggered by the batch [{rows}] ({where}).")
        else:
            lines.append(f"Triggered on {where} (not narrowed to one batch).")
    if err.hint:
        lines.append(f"Hint: {err.hint}.")
    lines.append(f"Checked: {checked}.")
    return "\n".join(lines)
