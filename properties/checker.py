r"""The estimator checker: hand it your estimator, get a verdict you can trust.

A REINFORCE-style estimator ``fn(logits, samples, rewards) -> gradient`` should have
expectation :math:`E[g] = \nabla_\theta J`, :math:`J = E_{X\sim\mathrm{softmax}(\theta)}[s(X)]`.
:func:`check_estimator` decides, **exactly** (no sampling), which of four verdicts holds:

* ``"unbiased"``: :math:`E[g] = \nabla J` on every problem tried, for every group size ``k``;
* ``"scaled"``: :math:`E[g] = c_k \nabla J` with one constant :math:`c_k > 0` per ``k``
  (:math:`c_k \ne 1` for some ``k``), e.g. the self-inclusive group mean, :math:`(k-1)/k`;
* ``"biased"``: anything else, with the simplest counterexample found;
* ``"error"``: the estimator raised, returned ``None``/a wrong shape/non-finite values,
  was not deterministic for fixed inputs, or wrote into its inputs.

For a problem ``(theta, s, k)`` the expectation is the finite sum
:math:`E[g] = \sum_{x\in\{0..n-1\}^k} \prod_j p_{x_j}\; g(\theta, x, s(x))`, computed
in one batched call over all :math:`n^k` groups.  Problems come first from a fixed
battery of hard cases (ties, negative and huge scores, :math:`p` down to
:math:`10^{-24}`, :math:`\nabla J = 0`), then from Hypothesis (seeded, shrinking to a
minimal counterexample).  Tolerances come from the output dtype and the size of the
inputs (:data:`properties._checker_problems.ROUNDOFF_SAFETY`): float32 round-off is
accepted for a float32 output, a float64 bias of one part in a million is not.

>>> from impl.estimators import reinforce, group_mean_baseline
>>> check_estimator(reinforce, batched=True, max_examples=10).verdict
'unbiased'
>>> report = check_estimator(group_mean_baseline, batched=True, max_examples=10)
>>> report.verdict, {k: round(c, 6) for k, c in report.scale.items()}
('scaled', {2: 0.5, 3: 0.666667, 4: 0.75})
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky

from impl.errors import InvalidArgument, describe
from impl.types import Estimator, FloatArray
from properties._checker_guard import EstimatorFault, GuardedEstimator
from properties._checker_problems import (
    REFERENCE_MIN_SIGNAL,
    Evaluation,
    battery_problems,
    evaluate,
    generated_problems,
)
from properties.strategies import PolicyProblem

Verdict = Literal["unbiased", "scaled", "biased", "error"]
"""The four verdicts."""

DEFAULT_GROUP_SIZES = (2, 3, 4)
"""Group sizes checked unless told otherwise (add 1 to check ``k = 1``)."""

DEFAULT_MAX_EXAMPLES = 100
"""Generated problems after the battery (the battery alone: ``max_examples=0``)."""

MAX_GROUP_SIZE = 12
"""Largest ``k`` accepted (``n`` is reduced for large ``k`` so that ``n**k <= 4096``)."""

_KNOWN_SCALES: tuple[tuple[str, Callable[[int], float]], ...] = (
    ("(k-1)/k, the self-inclusive group mean", lambda k: (k - 1) / k),
    ("k, a sum instead of a mean", float),
    ("1/k", lambda k: 1.0 / k),
)


@dataclass(frozen=True)
class Counterexample:
    """A problem on which :math:`E[g]` is not the claimed multiple of :math:`\\nabla J`.

    ``multiple`` is the best-fitting :math:`c = \\langle E, G\\rangle / \\langle G, G\\rangle`
    on this problem (``None`` when :math:`G = 0`); ``residual`` is :math:`E - cG` (:math:`E`
    when :math:`G = 0`); ``reference_multiple`` is the :math:`c_k` measured on the
    reference problem; ``discrepancy`` is :math:`E - c_k G`, compared with ``tolerance``.
    """

    logits: FloatArray
    scores: FloatArray
    k: int
    expectation: FloatArray
    gradient: FloatArray
    multiple: float | None
    residual: FloatArray
    reference_multiple: float
    reference_logits: FloatArray
    reference_scores: FloatArray
    discrepancy: FloatArray
    tolerance: FloatArray
    reason: str
    found_by: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return {
            "logits": self.logits.tolist(),
            "scores": self.scores.tolist(),
            "k": self.k,
            "n": int(self.scores.size),
            "expectation": self.expectation.tolist(),
            "gradient": self.gradient.tolist(),
            "multiple": self.multiple,
            "residual": self.residual.tolist(),
            "reference_multiple": self.reference_multiple,
            "reference_logits": self.reference_logits.tolist(),
            "reference_scores": self.reference_scores.tolist(),
            "discrepancy": self.discrepancy.tolist(),
            "tolerance": self.tolerance.tolist(),
            "reason": self.reason,
            "found_by": self.found_by,
        }


@dataclass(frozen=True)
class EstimatorError:
    """What went wrong when calling the estimator, and on which inputs.

    ``kind`` is one of ``raised``, ``returned-none``, ``bad-type``, ``wrong-shape``,
    ``non-finite``, ``nondeterministic``, ``mutated-input``; ``samples``/``rewards`` are the
    arguments of the failing call (one group, or the whole batch of all ``n**k`` groups
    when the failure cannot be narrowed to a row); ``scores`` and ``k`` define the problem.
    """

    kind: str
    detail: str
    logits: FloatArray
    samples: Any
    rewards: Any
    scores: FloatArray | None
    k: int | None
    hint: str
    found_by: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return {
            "kind": self.kind,
            "detail": self.detail,
            "logits": self.logits.tolist(),
            "samples": np.asarray(self.samples).tolist(),
            "rewards": np.asarray(self.rewards).tolist(),
            "scores": None if self.scores is None else self.scores.tolist(),
            "k": self.k,
            "hint": self.hint,
            "found_by": self.found_by,
        }


@dataclass(frozen=True)
class EstimatorReport:
    """The verdict on an estimator, with the evidence (STYLE item 4: a verdict object).

    ``verdict`` is ``"unbiased"``, ``"scaled"``, ``"biased"`` or ``"error"``; ``scale`` maps
    each ``k`` to :math:`c_k` for ``"unbiased"`` (all 1) and ``"scaled"``, else ``None``;
    ``counterexample`` is set for ``"biased"``, ``error`` for ``"error"``; ``message`` is
    the readable report (also ``str(report)``); ``estimator_seconds`` is the time spent
    inside ``fn`` out of ``seconds`` in all.
    """

    name: str
    verdict: Verdict
    scale: dict[int, float] | None
    scale_uncertainty: dict[int, float] | None
    counterexample: Counterexample | None
    error: EstimatorError | None
    group_sizes: tuple[int, ...]
    seed: int
    max_examples: int
    batched: bool
    problems_checked: int
    estimator_calls: int
    estimator_seconds: float
    seconds: float
    message: str = field(repr=False)

    @property
    def ok(self) -> bool:
        """``True`` iff the verdict is ``"unbiased"``."""
        return self.verdict == "unbiased"

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields (``json.dumps(report.to_dict())`` works)."""
        return {
            "name": self.name,
            "verdict": self.verdict,
            "scale": None if self.scale is None else {str(k): c for k, c in self.scale.items()},
            "scale_uncertainty": None
            if self.scale_uncertainty is None
            else {str(k): c for k, c in self.scale_uncertainty.items()},
            "counterexample": None if self.counterexample is None else self.counterexample.to_dict(),
            "error": None if self.error is None else self.error.to_dict(),
            "group_sizes": list(self.group_sizes),
            "seed": self.seed,
            "max_examples": self.max_examples,
            "batched": self.batched,
            "problems_checked": self.problems_checked,
            "estimator_calls": self.estimator_calls,
            "estimator_seconds": self.estimator_seconds,
            "seconds": self.seconds,
            "message": self.message,
        }

    def to_json(self) -> str:
        """``to_dict()`` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)


class EstimatorCheckFailure(AssertionError):
    """Raised by :func:`assert_unbiased` / :func:`assert_scaled`; ``str`` is the report."""

    def __init__(self, report: EstimatorReport, expected: str) -> None:
        super().__init__(f"expected {expected}, but {report.message}")
        self.report = report


# --------------------------------------------------------------------------- the search


class _Mismatch(Exception):
    """Raised inside the Hypothesis test so that it shrinks; carries the counterexample."""

    def __init__(self, counterexample: Counterexample) -> None:
        super().__init__(counterexample.reason)
        self.counterexample = counterexample


@dataclass
class _Reference:
    multiple: float
    uncertainty: float
    evaluation: Evaluation


def _norm(a: FloatArray) -> float:
    return float(np.sqrt(np.sum(a * a)))


def _fit(ev: Evaluation) -> tuple[float | None, FloatArray]:
    gg = float(ev.gradient @ ev.gradient)
    if _norm(ev.gradient) <= _norm(ev.tolerance):
        return None, ev.mean.copy()
    c = float(ev.mean @ ev.gradient) / gg
    return c, ev.mean - c * ev.gradient


def _judge(ev: Evaluation, ref: _Reference, found_by: str) -> Counterexample | None:
    """``None`` if ``E ~= c_k G`` within tolerance on this problem, else the counterexample."""
    discrepancy = ev.mean - ref.multiple * ev.gradient
    worst = np.abs(discrepancy)
    if float(worst.max()) <= ev.floor:  # the fast path: within the constant part of tau
        return None
    allowed = ev.tolerance + ref.uncertainty * np.abs(ev.gradient)
    if np.all(worst <= allowed):
        return None
    multiple, residual = _fit(ev)
    if multiple is None:
        reason = (
            "grad J = 0 on this problem (every answer scores J, or the policy is "
            "deterministic), but E[g] != 0: the estimator moves the logits where the "
            "objective is flat"
        )
    elif np.any(
        np.abs(residual)
        > ev.tolerance + _norm(ev.tolerance) / _norm(ev.gradient) * np.abs(ev.gradient)
    ):
        reason = (
            "E[g] is not a multiple of grad J on this problem: after the best fit "
            f"c = {multiple:.10g} the residual E[g] - c grad J is outside the tolerance"
        )
    else:
        reason = (
            f"E[g] = c grad J with c = {multiple:.10g} on this problem, but c = "
            f"{ref.multiple:.10g} on the reference problem for k={ev.k}: the scale depends "
            "on the problem, so no fixed step-size correction makes this estimator unbiased"
        )
    return Counterexample(
        logits=ev.logits.copy(),
        scores=ev.scores.copy(),
        k=ev.k,
        expectation=ev.mean,
        gradient=ev.gradient,
        multiple=multiple,
        residual=residual,
        reference_multiple=ref.multiple,
        reference_logits=ref.evaluation.logits.copy(),
        reference_scores=ref.evaluation.scores.copy(),
        discrepancy=discrepancy,
        tolerance=allowed,
        reason=reason,
        found_by=found_by,
    )


def _reference(ev: Evaluation, *, last_resort: bool) -> _Reference | None:
    g = _norm(ev.gradient)
    tol = _norm(ev.tolerance)
    if g <= REFERENCE_MIN_SIGNAL * tol and not (last_resort and g > tol):
        return None
    c = float(ev.mean @ ev.gradient) / (g * g)
    return _Reference(multiple=c, uncertainty=tol / g, evaluation=ev)


def _nonpositive(ev: Evaluation, ref: _Reference) -> Counterexample:
    multiple, residual = _fit(ev)
    direction = "the opposite way to" if ref.multiple < 0 else "orthogonally to (or not at all along)"
    return Counterexample(
        logits=ev.logits.copy(),
        scores=ev.scores.copy(),
        k=ev.k,
        expectation=ev.mean,
        gradient=ev.gradient,
        multiple=multiple,
        residual=residual,
        reference_multiple=ref.multiple,
        reference_logits=ev.logits.copy(),
        reference_scores=ev.scores.copy(),
        discrepancy=ev.mean - ev.gradient,
        tolerance=ev.tolerance + ref.uncertainty * np.abs(ev.gradient),
        reason=(
            f"E[g] = c grad J with c = {ref.multiple:.10g} <= 0: on average the estimator "
            f"moves the logits {direction} the ascent direction of J"
        ),
        found_by="battery",
    )


class _Outcome:
    def __init__(self) -> None:
        self.references: dict[int, _Reference] = {}
        self.counterexample: Counterexample | None = None
        self.error: EstimatorError | None = None
        self.problems = 0


def _fault_to_error(
    fault: EstimatorFault, scores: FloatArray | None, k: int | None, found_by: str
) -> EstimatorError:
    return EstimatorError(
        kind=fault.kind,
        detail=fault.detail,
        logits=fault.logits,
        samples=fault.samples,
        rewards=fault.rewards,
        scores=scores,
        k=k,
        hint=fault.hint,
        found_by=found_by,
    )


def _run_battery(
    guard: GuardedEstimator, ks: tuple[int, ...], out: _Outcome, *, rtol: float | None, atol: float
) -> None:
    per_k = {k: battery_problems(k) for k in ks}
    longest = max(len(v) for v in per_k.values())
    for i in range(longest):
        for k in ks:
            if i >= len(per_k[k]):
                continue
            theta, s = per_k[k][i]
            try:
                ev = evaluate(guard, theta, s, k, rtol=rtol, atol=atol, check_determinism=i == 0)
            except EstimatorFault as fault:
                out.error = _fault_to_error(fault, s, k, "battery")
                return
            out.problems += 1
            ref = out.references.get(k)
            if ref is None:
                ref = _reference(ev, last_resort=i == len(per_k[k]) - 1)
                if ref is None:
                    continue
                out.references[k] = ref
                if ref.multiple <= ref.uncertainty:
                    out.counterexample = _nonpositive(ev, ref)
                    return
            cex = _judge(ev, ref, "battery")
            if cex is not None:
                out.counterexample = cex
                return


def _run_hypothesis(
    guard: GuardedEstimator,
    ks: tuple[int, ...],
    out: _Outcome,
    *,
    seed: int,
    max_examples: int,
    rtol: float | None,
    atol: float,
) -> None:
    failure: dict[str, Any] = {}

    @settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=Verbosity.quiet,
    )
    @hypothesis_seed(seed)
    @given(generated_problems(ks))
    def property_(problem: PolicyProblem) -> None:
        try:
            ev = evaluate(guard, problem.logits, problem.scores, problem.k, rtol=rtol, atol=atol)
        except EstimatorFault as fault:
            failure["last"] = (fault, problem)
            raise
        out.problems += 1
        cex = _judge(ev, out.references[problem.k], "hypothesis (shrunk)")
        if cex is not None:
            raise _Mismatch(cex)

    try:
        property_()
    except _Mismatch as exc:
        out.counterexample = exc.counterexample
    except EstimatorFault as fault:
        last = failure.get("last")
        problem = last[1] if last is not None and last[0] is fault else None
        out.error = _fault_to_error(
            fault,
            None if problem is None else problem.scores,
            None if problem is None else problem.k,
            "hypothesis (shrunk)",
        )
    except Flaky as exc:
        out.error = EstimatorError(
            kind="nondeterministic",
            detail=(
                "gave different verdicts when Hypothesis replayed the same problem "
                f"({type(exc).__name__}); the exact checker needs a deterministic function "
                "of (logits, samples, rewards): an estimator with its own randomness or "
                "hidden state needs a sampling check (properties.stats)"
            ),
            logits=np.zeros(0),
            samples=np.zeros(0, dtype=np.int64),
            rewards=np.zeros(0),
            scores=None,
            k=None,
            hint="",
            found_by="hypothesis",
        )


# --------------------------------------------------------------------------- validation


def _validate(
    fn: Any, group_sizes: Any, seed: Any, max_examples: Any, batched: Any, rtol: Any, atol: Any
) -> tuple[tuple[int, ...], int, int]:
    if not callable(fn):
        raise InvalidArgument(f"Expected a callable estimator but got {describe('fn', fn)}")
    if not isinstance(batched, bool):
        raise InvalidArgument(f"Expected batched=True or False but got {describe('batched', batched)}")
    try:
        ks = tuple(group_sizes)
    except TypeError as exc:
        raise InvalidArgument(
            f"Expected a sequence of group sizes but got {describe('group_sizes', group_sizes)}"
        ) from exc
    if not ks or any(
        isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_GROUP_SIZE
        for k in ks
    ):
        raise InvalidArgument(
            f"Expected a non-empty sequence of integers 1 <= k <= {MAX_GROUP_SIZE} but got "
            f"{describe('group_sizes', group_sizes)}"
        )
    for name, value, low in (("seed", seed, 0), ("max_examples", max_examples, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise InvalidArgument(f"Expected an integer >= {low} but got {describe(name, value)}")
    if rtol is not None and not (isinstance(rtol, float | int) and math.isfinite(rtol) and rtol > 0):
        raise InvalidArgument(f"Expected rtol=None or a finite float > 0 but got {describe('rtol', rtol)}")
    if not (isinstance(atol, float | int) and math.isfinite(atol) and atol >= 0):
        raise InvalidArgument(f"Expected a finite atol >= 0 but got {describe('atol', atol)}")
    return tuple(sorted({int(k) for k in ks})), int(seed), int(max_examples)


def _name_of(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return str(name) if name else repr(fn)


# --------------------------------------------------------------------------- the API


def check_estimator(
    fn: Callable[..., Any],
    *,
    group_sizes: Iterable[int] = DEFAULT_GROUP_SIZES,
    seed: int = 0,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    batched: bool = False,
    rtol: float | None = None,
    atol: float = 0.0,
    name: str | None = None,
) -> EstimatorReport:
    r"""Decide whether :math:`E[g] = \nabla_\theta E_{X\sim\mathrm{softmax}(\theta)}[s(X)]` exactly.

    ``fn(logits, samples, rewards)``: per group (``batched=False``) ``logits`` float64
    ``(n,)``, ``samples`` int64 ``(k,)``, ``rewards`` float64 ``(k,)``, returning ``(n,)``;
    batched (``batched=True``) ``samples``/``rewards`` ``(B, k)`` returning ``(B, n)``.  The
    inputs are read-only; lists and float32 results are accepted.

    ``group_sizes``: the ``k`` to check (include 1 to check single-sample groups);
    ``seed``/``max_examples``: the Hypothesis search after the fixed battery (the
    verdict is reproducible from them); ``rtol``/``atol``: override the derived
    round-off tolerance :math:`\tau_i` with ``atol + rtol * (E|g_i| + S (2 p_i + 1))``
    (e.g. ``rtol=1e-5`` for an estimator that computes in float32 internally but returns
    float64); ``name``: how to call the estimator in the report.

    Never raises for misbehaving user code (that is the ``"error"`` verdict); raises
    :class:`impl.errors.InvalidArgument` for bad arguments to the checker itself.

    >>> import numpy as np
    >>> def sign_bug(logits, samples, rewards):
    ...     p = np.exp(logits - logits.max()); p /= p.sum()
    ...     return -np.mean(rewards[:, None] * (np.eye(p.size)[samples] - p), axis=0)
    >>> report = check_estimator(sign_bug)
    >>> report.verdict, report.counterexample.multiple
    ('biased', -1.0)
    """
    ks, seed, max_examples = _validate(fn, group_sizes, seed, max_examples, batched, rtol, atol)
    rtol = None if rtol is None else float(rtol)
    atol = float(atol)
    start = time.perf_counter()
    guard = GuardedEstimator(fn, batched=batched)
    out = _Outcome()
    _run_battery(guard, ks, out, rtol=rtol, atol=atol)
    if out.error is None and out.counterexample is None and max_examples > 0:
        _run_hypothesis(guard, ks, out, seed=seed, max_examples=max_examples, rtol=rtol, atol=atol)
    return _make_report(
        name or _name_of(fn), out, ks, seed, max_examples, batched, guard.calls,
        guard.user_seconds, time.perf_counter() - start,
    )


def _make_report(
    name: str,
    out: _Outcome,
    ks: tuple[int, ...],
    seed: int,
    max_examples: int,
    batched: bool,
    calls: int,
    user_seconds: float,
    seconds: float,
) -> EstimatorReport:
    verdict: Verdict
    scale: dict[int, float] | None = None
    unc: dict[int, float] | None = None
    if out.error is not None:
        verdict = "error"
    elif out.counterexample is not None:
        verdict = "biased"
    else:
        unc = {k: out.references[k].uncertainty for k in ks}
        measured = {k: out.references[k].multiple for k in ks}
        if all(abs(measured[k] - 1.0) <= unc[k] for k in ks):
            verdict = "unbiased"
            scale = {k: 1.0 for k in ks}
        else:
            verdict = "scaled"
            scale = measured
    report = EstimatorReport(
        name=name,
        verdict=verdict,
        scale=scale,
        scale_uncertainty=unc,
        counterexample=out.counterexample,
        error=out.error,
        group_sizes=ks,
        seed=seed,
        max_examples=max_examples,
        batched=batched,
        problems_checked=out.problems,
        estimator_calls=calls,
        estimator_seconds=user_seconds,
        seconds=seconds,
        message="",
    )
    object.__setattr__(report, "message", _message(report))
    return report


# --------------------------------------------------------------------------- messages


_MAX_SHOWN = 24
"""Batches with more entries than this are described, not printed, in messages."""


def _arr(a: Any) -> str:
    return "np.array(" + repr(np.asarray(a).tolist()) + ")"


def _repro(report: EstimatorReport, logits: FloatArray, scores: FloatArray, k: int) -> str:
    return (
        "Reproduce:\n"
        "  from properties.checker import expectation_of\n"
        f"  E, G = expectation_of(fn, {_arr(logits)}, {_arr(scores)}, k={k}, "
        f"batched={report.batched})\n"
        f"  or rerun check_estimator(fn, group_sizes={report.group_sizes}, seed={report.seed}, "
        f"max_examples={report.max_examples}, batched={report.batched})"
    )


def _table(cex: Counterexample) -> str:
    rows = [
        f"  {'i':>3} {'E[g]_i':>22} {'grad J_i':>22} {'c_k*grad J_i':>22} "
        f"{'difference':>12} {'tolerance':>10}"
    ]
    for i in range(cex.expectation.size):
        mark = " <--" if abs(cex.discrepancy[i]) > cex.tolerance[i] else ""
        rows.append(
            f"  {i:>3} {cex.expectation[i]:>22.15g} {cex.gradient[i]:>22.15g} "
            f"{cex.reference_multiple * cex.gradient[i]:>22.15g} {cex.discrepancy[i]:>12.3g} "
            f"{cex.tolerance[i]:>10.3g}{mark}"
        )
    return "\n".join(rows)


def _scale_hint(k: int, c: float, unc: float) -> str:
    for text, f in _KNOWN_SCALES:
        if abs(c - f(k)) <= max(unc, 1e-12) * 4:
            return f" = {text}"
    return ""


def _message(report: EstimatorReport) -> str:
    head = f"Estimator {report.name!r}"
    mode = "batched" if report.batched else "per-group"
    ks = ", ".join(str(k) for k in report.group_sizes)
    checked = (
        f"{report.problems_checked} problems ({mode} calls: {report.estimator_calls}), "
        f"k in {{{ks}}}, seed={report.seed}, max_examples={report.max_examples}, "
        f"{report.seconds:.2f} s"
    )
    if report.verdict == "unbiased":
        return (
            f"{head} is UNBIASED: E[g] = grad J exactly (to round-off) on every problem "
            f"checked: {checked}."
        )
    if report.verdict == "scaled":
        assert report.scale is not None and report.scale_uncertainty is not None
        lines = [
            f"{head} is SCALED: E[g] = c_k grad J with a fixed c_k > 0 per group size, on every "
            f"problem checked ({checked}):"
        ]
        for k, c in report.scale.items():
            unc = report.scale_uncertainty[k]
            lines.append(f"  k={k}: c_k = {c:.12g} (+- {unc:.1g}){_scale_hint(k, c, unc)}")
        lines.append(
            "It ascends J, but its step is rescaled by c_k; it is not an unbiased estimate "
            "of grad J. Divide by c_k (or fix the baseline) to make it unbiased."
        )
        return "\n".join(lines)
    if report.verdict == "biased":
        cex = report.counterexample
        assert cex is not None
        where = (
            "" if cex.reference_logits.shape == cex.logits.shape
            and np.array_equal(cex.reference_logits, cex.logits)
            and np.array_equal(cex.reference_scores, cex.scores)
            else f" (reference problem for k={cex.k}: logits={_arr(cex.reference_logits)}, "
            f"scores={_arr(cex.reference_scores)})"
        )
        fit = (
            "grad J = 0 here, so no multiple fits"
            if cex.multiple is None
            else f"best-fitting multiple c = {cex.multiple:.12g}, "
            f"residual |E[g] - c grad J| = {_norm(cex.residual):.3g}"
        )
        return "\n".join(
            [
                f"{head} is BIASED: {cex.reason}.",
                f"Counterexample (found by {cex.found_by}), n={cex.scores.size}, k={cex.k}:",
                f"  logits = {_arr(cex.logits)}",
                f"  scores = {_arr(cex.scores)}",
                f"  {fit}; c_k = {cex.reference_multiple:.12g}{where}",
                _table(cex),
                _repro(report, cex.logits, cex.scores, cex.k),
                f"Checked: {checked}.",
            ]
        )
    err = report.error
    assert err is not None
    samples = np.asarray(err.samples)
    if samples.ndim == 2 and samples.size > _MAX_SHOWN:
        n, k = err.logits.size, samples.shape[1]
        batch = (
            f"samples=impl.exact.enumerate_groups({n}, {k}) (all {samples.shape[0]} groups), "
            "rewards=scores[samples]"
        )
    else:
        batch = f"samples={_arr(err.samples)}, rewards={_arr(err.rewards)}"
    inputs = (
        f"logits={_arr(err.logits)}, {batch}"
        if err.logits.size
        else "(no single input: the failure showed across replays)"
    )
    problem = (
        "" if err.scores is None else f" on the problem scores={_arr(err.scores)}, k={err.k}"
    )
    lines = [
        f"{head} ERROR ({err.kind}): it {err.detail}.",
        f"Triggered by the call fn({inputs}){problem}, found by {err.found_by}.",
    ]
    if err.hint:
        lines.append(f"Hint: {err.hint}.")
    lines.append(f"Checked: {checked}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def expectation_of(
    fn: Callable[..., Any],
    logits: Any,
    scores: Any,
    k: int,
    *,
    batched: bool = False,
) -> tuple[FloatArray, FloatArray]:
    r"""The exact :math:`(E[g], \nabla J)` of ``fn`` on one problem: the reproduction helper.

    Misbehaviour of ``fn`` raises :class:`impl.errors.InvalidArgument` naming it.

    >>> from impl.estimators import group_mean_baseline
    >>> E, G = expectation_of(group_mean_baseline, [0.0, 0.0], [0.0, 1.0], k=2, batched=True)
    >>> E.tolist(), G.tolist()
    ([-0.125, 0.125], [-0.25, 0.25])
    """
    from impl._validate import float_vector, positive_int

    theta = float_vector(logits, "logits", min_size=2)
    s = float_vector(scores, "scores", min_size=2)
    if s.size != theta.size:
        raise InvalidArgument(f"logits and scores must have the same length but got {describe('scores', scores)}")
    k = positive_int(k, "k")
    guard = GuardedEstimator(fn, batched=batched)
    try:
        ev = evaluate(guard, theta, s, k, rtol=None, atol=0.0)
    except EstimatorFault as fault:
        raise InvalidArgument(f"the estimator misbehaved: {fault}") from None
    return ev.mean, ev.gradient


def assert_unbiased(fn: Callable[..., Any], **kwargs: Any) -> EstimatorReport:
    """:func:`check_estimator`, raising :class:`EstimatorCheckFailure` unless ``"unbiased"``.

    >>> from impl.estimators import group_mean_baseline
    >>> assert_unbiased(group_mean_baseline, batched=True, max_examples=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    properties.checker.EstimatorCheckFailure: expected unbiased, but Estimator 'group_mean_baseline' is SCALED: ...
    """
    report = check_estimator(fn, **kwargs)
    if report.verdict != "unbiased":
        raise EstimatorCheckFailure(report, "unbiased")
    return report


def assert_scaled(
    fn: Callable[..., Any],
    scale: Mapping[int, float] | Callable[[int], float] | None = None,
    **kwargs: Any,
) -> EstimatorReport:
    """:func:`check_estimator`, raising :class:`EstimatorCheckFailure` unless ``"scaled"``.

    With ``scale`` (``{k: c_k}`` or ``k -> c_k``), also require the measured :math:`c_k`
    to equal it within the measurement's uncertainty.

    >>> from impl.estimators import group_mean_baseline
    >>> r = assert_scaled(group_mean_baseline, lambda k: (k - 1) / k, batched=True, max_examples=0)
    >>> r.verdict
    'scaled'
    """
    report = check_estimator(fn, **kwargs)
    if report.verdict != "scaled":
        raise EstimatorCheckFailure(report, "scaled")
    if scale is not None:
        assert report.scale is not None and report.scale_uncertainty is not None
        for k, c in report.scale.items():
            want = float(scale(k) if callable(scale) else scale[k])
            allowed = 4 * report.scale_uncertainty[k] + 1e-12 * abs(want)
            if abs(c - want) > allowed:
                raise EstimatorCheckFailure(
                    report, f"scaled with c_{k} = {want!r} (measured {c!r}, allowed +- {allowed:.2g})"
                )
    return report


def from_torch_surrogate(loss_fn: Callable[..., Any]) -> Estimator:
    r"""A per-group estimator from a PyTorch surrogate loss (minimised): :math:`g = -\partial L/\partial\theta`.

    ``loss_fn(logits, samples, rewards)`` takes torch tensors (``logits`` float64 ``(n,)``
    requiring grad, ``samples`` int64 ``(k,)``, ``rewards`` float64 ``(k,)``) and returns a
    scalar loss, e.g. ``-(rewards * torch.log_softmax(logits, 0)[samples]).mean()``.  Check
    the result with ``check_estimator(est, batched=False)``.  PyTorch is imported on first
    call, so this module does not depend on it.
    """

    def estimator(logits: Any, samples: Any, rewards: Any) -> FloatArray:
        import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

        theta = torch.tensor(np.array(logits, dtype=np.float64), requires_grad=True)
        x = torch.tensor(np.array(samples, dtype=np.int64))
        r = torch.tensor(np.array(rewards, dtype=np.float64))
        loss = loss_fn(theta, x, r)
        (grad,) = torch.autograd.grad(loss, theta, allow_unused=True)
        if grad is None:
            out: FloatArray = np.zeros(theta.shape[0])
            return out
        result: FloatArray = -grad.detach().numpy().astype(np.float64)
        return result

    estimator.__name__ = f"from_torch_surrogate({getattr(loss_fn, '__name__', 'loss_fn')})"
    return estimator


__all__ = [
    "DEFAULT_GROUP_SIZES",
    "DEFAULT_MAX_EXAMPLES",
    "MAX_GROUP_SIZE",
    "Counterexample",
    "EstimatorCheckFailure",
    "EstimatorError",
    "EstimatorReport",
    "Verdict",
    "assert_scaled",
    "assert_unbiased",
    "check_estimator",
    "expectation_of",
    "from_torch_surrogate",
]
