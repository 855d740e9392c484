"""The readable report of a one-step check: the message, its tables, the rerun and repro lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from impl.types import FloatArray
from properties.judging.verdict import (
    RANGE_LIMITS,
    SCALE_HINT_LEAD,
    norm,
    scale_hints,
)
from properties.onestep.prompts import (
    key_text,
    prompt_scale_hints,
)
from properties.onestep.results import (
    Counterexample,
    EstimatorReport,
    RangeNote,
    RoundoffNote,
)

_MAX_SHOWN = 24
"""Batches with more entries than this are described, not printed, in messages."""


def _cex_key(cex: Counterexample) -> Any:
    return cex.k if cex.num_prompts is None else (cex.k, cex.num_prompts)


def _arr(a: Any) -> str:
    return "np.array(" + repr(np.asarray(a).tolist()) + ")"


def _rerun(report: EstimatorReport, **extra: Any) -> str:
    args = (
        f"group_sizes={report.group_sizes}, seed={report.seed}, "
        f"max_examples={report.max_examples}, batched={report.batched}"
    )
    if report.num_prompts is not None:
        args += f", num_prompts={report.num_prompts}"
    for key, value in extra.items():
        args += f", {key}={value!r}"
    return f"check_estimator(fn, {args})"


def _repro(
    report: EstimatorReport, logits: FloatArray, scores: FloatArray, k: int, num_prompts: int | None
) -> str:
    how = f"batched={report.batched}" if num_prompts is None else f"num_prompts={num_prompts}"
    return (
        "Reproduce:\n"
        "  from properties.onestep.checker import expectation_of\n"
        f"  E, G = expectation_of(fn, {_arr(logits)}, {_arr(scores)}, k={k}, {how})\n"
        f"  or rerun {_rerun(report)}"
    )


def _constant_name(report: EstimatorReport) -> str:
    """``c_k`` (one constant per ``k``), or ``c(k,P)`` when there is one per ``(k, P)``."""
    return "c_k" if report.num_prompts is None else "c(k,P)"


def _table(cex: Counterexample) -> str:
    scaled = "c(k,P)*grad J_i" if cex.num_prompts is not None else "c_k*grad J_i"
    rows = [
        f"  {'i':>3} {'E[g]_i':>22} {'grad J_i':>22} {scaled:>22} "
        f"{'difference':>12} {'tolerance':>10}"
    ]
    if cex.num_prompts is not None:
        rows[0] = "  p," + rows[0][3:]
    for i in np.ndindex(cex.expectation.shape):
        mark = " <--" if abs(cex.discrepancy[i]) > cex.tolerance[i] else ""
        label = ",".join(str(j) for j in i)
        rows.append(
            f"  {label:>3} {cex.expectation[i]:>22.15g} {cex.gradient[i]:>22.15g} "
            f"{cex.reference_multiple * cex.gradient[i]:>22.15g} {cex.discrepancy[i]:>12.3g} "
            f"{cex.tolerance[i]:>10.3g}{mark}"
        )
    return "\n".join(rows)


def _hints(scale: Mapping[Any, float], uncertainty: Mapping[Any, float]) -> dict[Any, str]:
    if any(isinstance(k, tuple) for k in scale):
        return prompt_scale_hints(scale, uncertainty)
    return dict(scale_hints(scale, uncertainty))


def _c(key: Any) -> str:
    """``c_2`` for a group size, ``c(k=2, P=1)`` for a multi-prompt key."""
    return f"c({key_text(key)})" if isinstance(key, tuple) else f"c_{key}"


def _scales_text(scale: Mapping[Any, float], uncertainty: Mapping[Any, float] | None = None) -> str:
    hints = _hints(scale, {k: 0.0 for k in scale} if uncertainty is None else uncertainty)
    text = ", ".join(f"{_c(k)} = {c:.6g}" for k, c in scale.items())
    named = sorted(set(hints.values()))
    return text + (f" ({SCALE_HINT_LEAD} {'; '.join(named)})" if named else "")


def _roundoff_text(report: EstimatorReport, note: RoundoffNote) -> str:
    shown = ", ".join(f"{u:.3g} ulps of {name}" for name, u in note.ulps.items())
    at = (
        f"with rtol={note.rtol:g}, atol={note.atol:g} ({note.dtype} round-off) the checker's "
        f"verdict is {note.verdict.upper()}"
    )
    if note.verdict in ("unbiased", "scaled") and note.scale is not None:
        at += f": {_scales_text(note.scale)}"
    elif note.verdict == "error":
        at += " (the scale cannot be measured at that precision)"
    elif note.verdict == "biased":
        at += " (another problem shows a bias beyond that round-off: not round-off alone)"
    return "\n".join(
        [
            f"Round-off? The residual |E[g] - {_constant_name(report)} grad J| is "
            f"{note.relative_residual:.3g} of "
            f"|grad J| on this problem ({shown}). It, and every other mismatch the battery "
            f"found, is within the checker's round-off bound for {note.dtype} output: if fn "
            f"computes in {note.dtype} anywhere (or casts to it), it may be round-off rather "
            "than a bias of the formula.",
            f"  At that precision: {at}.",
            "  The verdict stays BIASED because the output's own dtype claims more precision; "
            f"confirm with {_rerun(report, rtol=note.rtol, atol=note.atol)}.",
        ]
    )


def _partial_text(report: EstimatorReport) -> str:
    """The line a partial check adds before the region (empty for a full check)."""
    if not report.partial:
        return ""
    return (
        f"Partial: less was checked than asked, so this is not a pass. Not checked: "
        f"{'; '.join(report.unchecked)}; a bias only there would go unseen. assert_unbiased "
        "and assert_scaled fail on it unless allow_partial=True; the command line exits 1.\n"
    )


def _range_text(note: RangeNote) -> str:
    """What the verdict is at representable magnitudes, for a counterexample outside them."""
    under = note.direction == "underflows"
    limit = RANGE_LIMITS[0] if under else RANGE_LIMITS[1]
    what = "smallest normal number" if under else "largest number"
    becomes = "flush to zero" if under else "overflow to infinity"
    verdict = note.verdict.upper()
    if note.verdict in ("unbiased", "scaled") and note.scale is not None:
        verdict += f": {_scales_text(note.scale, note.scale_uncertainty)}"
    elif note.verdict == "error":
        verdict += " (no verdict between unbiased and scaled at those magnitudes)"
    if note.verdict == "biased":
        headline = (
            f"  At representable magnitudes the verdict is BIASED too: not {note.dtype}'s range alone."
        )
    else:
        headline = (
            f"  Biased only where {note.dtype} {note.direction}; at representable magnitudes: {verdict}."
        )
    return "\n".join(
        [
            f"Range? The scores of this counterexample reach at most {note.largest:.3g} in size, "
            f"{'below' if under else 'above'} {note.dtype}'s {what} ({limit:.3g}): in {note.dtype} "
            f"(or bfloat16, which has its range) they {becomes}.",
            headline,
            f"  (A second run with every problem whose scores lie outside {note.dtype}'s normal "
            "range rescaled into it by a power of two.) The verdict stays BIASED: fn takes "
            "float64 rewards, and at these magnitudes its E[g] is not the multiple of grad J "
            "it is elsewhere.",
        ]
    )


def _message(report: EstimatorReport) -> str:
    head = f"Estimator {report.name!r}"
    mode = "batched" if report.batched else "per-group"
    if report.num_prompts is not None:
        mode = "multi-prompt"
    ks = ", ".join(str(k) for k in report.group_sizes)
    if report.num_prompts is not None:
        ks += "}, P in {" + ", ".join(str(p) for p in report.num_prompts)
    checked = (
        f"{report.problems_checked} problems ({mode} calls: {report.estimator_calls}), "
        f"k in {{{ks}}}, seed={report.seed}, max_examples={report.max_examples}, "
        f"{report.seconds:.2f} s ({report.estimator_seconds:.2f} s inside the estimator)"
    )
    region = f"Region checked: {report.region.describe()}."
    target = (
        ""
        if report.num_prompts is None
        else " (grad J: the gradient of the mean objective over prompts, grad J_p / P for "
        "prompt p's logits)"
    )
    partial = " (PARTIAL CHECK)" if report.partial else ""
    if report.verdict == "unbiased":
        return (
            f"{head} is UNBIASED{partial}: E[g] = grad J{target} exactly (to round-off) on every "
            f"problem checked: {checked}.\n{_partial_text(report)}{region}"
        )
    if report.verdict == "scaled":
        assert report.scale is not None and report.scale_uncertainty is not None
        per = "group size" if report.num_prompts is None else "(k, P)"
        lines = [
            f"{head} is SCALED{partial}: E[g] = c grad J{target} with a fixed c > 0 per {per}, on "
            f"every problem checked ({checked}):"
        ]
        hints = _hints(report.scale, report.scale_uncertainty)
        for k, c in report.scale.items():
            unc = report.scale_uncertainty[k]
            hint = f", which {SCALE_HINT_LEAD} {hints[k]}" if k in hints else ""
            name = "c" if isinstance(k, tuple) else "c_k"
            lines.append(f"  {key_text(k)}: {name} = {c:.12g} (+- {unc:.1g}){hint}")
        cname = _constant_name(report)
        lines.append(
            f"It ascends J, but its step is rescaled by {cname}; it is not an unbiased estimate "
            f"of grad J. Divide by {cname} (or fix the baseline) to make it unbiased."
        )
        if report.scale_note is not None:
            lines.append(report.scale_note.text())
        lines.append(_partial_text(report) + region)
        return "\n".join(lines)
    if report.verdict == "biased":
        cex = report.counterexample
        assert cex is not None
        where = (
            "" if cex.reference_logits.shape == cex.logits.shape
            and np.array_equal(cex.reference_logits, cex.logits)
            and np.array_equal(cex.reference_scores, cex.scores)
            else f" (reference problem for {key_text(_cex_key(cex))}: "
            f"logits={_arr(cex.reference_logits)}, scores={_arr(cex.reference_scores)})"
        )
        fit = (
            "grad J = 0 here, so no multiple fits"
            if cex.multiple is None
            else f"best-fitting multiple c = {cex.multiple:.12g}, "
            f"residual |E[g] - c grad J| = {norm(cex.residual):.3g}"
        )
        if cex.num_prompts is None:
            lines = [
                f"{head} is BIASED: {cex.reason}.",
                f"Counterexample (found by {cex.found_by}), n={cex.scores.size}, k={cex.k}:",
                f"  logits = {_arr(cex.logits)}",
                f"  scores = {_arr(cex.scores)}",
            ]
        else:
            lines = [
                f"{head} is BIASED{target}: {cex.reason}.",
                f"Counterexample (found by {cex.found_by}), n={cex.scores.shape[-1]}, k={cex.k}, "
                f"P={cex.num_prompts} prompts:",
            ] + [
                f"  prompt {p}: logits = {_arr(cex.logits[p])}, scores = {_arr(cex.scores[p])}"
                for p in range(cex.num_prompts)
            ]
        lines += [
            f"  {fit}; {_constant_name(report)} = {cex.reference_multiple:.12g}{where}",
            _table(cex),
        ]
        if cex.roundoff is not None:
            lines.append(_roundoff_text(report, cex.roundoff))
        if cex.out_of_range is not None:
            lines.append(_range_text(cex.out_of_range))
        lines += [
            _repro(report, cex.logits, cex.scores, cex.k, cex.num_prompts),
            f"Checked: {checked}.",
            region,
        ]
        return "\n".join(lines)
    err = report.error
    assert err is not None
    lines = [f"{head} ERROR ({err.kind}): it {err.detail}."]
    if err.kind == "imprecise":
        if err.scores is not None:
            lines.append(
                f"Best scale reference: logits={_arr(err.logits)}, scores={_arr(err.scores)}, "
                f"k={err.k}."
            )
    else:
        samples = np.asarray(err.samples)
        if samples.ndim == 2 and samples.size > _MAX_SHOWN:
            n, k = err.logits.size, samples.shape[1]
            batch = (
                f"samples=impl.exact.enumerate_groups({n}, {k}) (all {samples.shape[0]} groups), "
                "rewards=scores[samples]"
            )
        else:
            batch = f"samples={_arr(err.samples)}, rewards={_arr(err.rewards)}"
        if err.group is not None:
            batch += f", group={_arr(err.group)}"
        inputs = (
            f"logits={_arr(err.logits)}, {batch}"
            if err.logits.size
            else "(no single input: the failure showed across replays)"
        )
        problem = (
            "" if err.scores is None else f" on the problem scores={_arr(err.scores)}, k={err.k}"
        )
        if err.num_prompts is not None and err.scores is not None:
            problem += f", P={err.num_prompts} prompts (scores row p: prompt p)"
        lines.append(f"Triggered by the call fn({inputs}){problem}, found by {err.found_by}.")
    if err.hint:
        lines.append(f"Hint: {err.hint}.")
    lines.append(f"Checked: {checked}.")
    lines.append(region)
    return "\n".join(lines)
