r"""The estimator checker: hand it your estimator, get a verdict you can trust.

A REINFORCE-style estimator ``fn(logits, samples, rewards) -> gradient`` should have
expectation :math:`E[g] = \nabla_\theta J`, :math:`J = E_{X\sim\mathrm{softmax}(\theta)}[s(X)]`.
:func:`check_estimator` decides, **exactly** (no sampling), which of four verdicts holds:

* ``"unbiased"``: :math:`E[g] = \nabla J` on every problem tried, for every group size ``k``;
* ``"scaled"``: :math:`E[g] = c_k \nabla J` with one constant :math:`c_k > 0` per ``k``
  (:math:`c_k \ne 1` for some ``k``), e.g. the self-inclusive group mean, :math:`(k-1)/k`;
* ``"biased"``: anything else, with the simplest counterexample found;
* ``"error"``: the estimator raised or exited, returned ``None``/a wrong shape/a non-float
  dtype/non-finite values, was not deterministic for fixed inputs, wrote into its inputs,
  or (batched) computed a row from other rows of the batch; or its precision is too
  coarse to tell :math:`c_k` from 1 (kind ``imprecise``, e.g. float16 output).

**Precedence** (what is reported when several hold): an error of the estimator beats a
counterexample (``error`` > ``biased``), which beats an imprecise scale (``error``, kind
``imprecise``), which beats ``scaled`` > ``unbiased``.  To make the first rule hold, a
counterexample does not stop the battery: every battery problem (all shapes and sizes:
``n = 2`` to 16, ``n != k``, ``k = 1`` when asked) still runs, looking for errors; only
the Hypothesis search stops at the first counterexample.  A counterexample is
re-evaluated before it is reported: if the estimator then returns different values it
is ``nondeterministic`` (an error), not biased.

For a problem ``(theta, s, k)`` the expectation is the finite sum
:math:`E[g] = \sum_{x\in\{0..n-1\}^k} \prod_j p_{x_j}\; g(\theta, x, s(x))`, computed
in one batched call over all :math:`n^k` groups.  Problems come first from a fixed
battery of hard cases (ties, negative, tiny and huge scores, :math:`p` down to
:math:`10^{-44}`, :math:`\nabla J = 0`, logits shifted by up to :math:`\pm 1000`, ``n`` up
to 16 at small ``k``), then from Hypothesis (seeded, shrinking to a minimal
counterexample; pinned so that the problems depend on the seed only, and writing
nothing to disk).  Every report says which region was covered (:class:`CheckedRegion`).
Tolerances come from the output dtype and the size of the inputs
(:data:`properties._checker_problems.ROUNDOFF_SAFETY`): float32 round-off is accepted
for a float32 output, a float64 bias of one part in a million is not.  When a
counterexample is within the round-off of a coarser dtype (float32, bfloat16, float16),
the verdict stays strict but the report says so, with the verdict at that precision
(:class:`RoundoffNote`).

**Several prompts per batch** (``num_prompts=(1, 2)``): the estimator is called as RL
code pools a batch, ``fn(logits (P*k, n), samples (P*k,), rewards (P*k,), group (P*k,))``,
each prompt with its own problem; the target is the gradient of the mean objective over
prompts, and one scale constant is measured per ``(k, P)`` (see :func:`check_estimator`;
the engine is :mod:`properties._checker_prompts`).

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
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from hypothesis import given
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky

from impl.errors import InvalidArgument, describe
from impl.types import Estimator, FloatArray
from properties._checker_guard import (
    EPS64,
    FAULT_KINDS,
    EstimatorFault,
    GuardedEstimator,
    all_groups,
    frozen,
)
from properties._checker_problems import (
    ROUNDOFF_SAFETY,
    Evaluation,
    battery,
    checker_settings,
    evaluate,
    generated_problems,
    pinned_hypothesis,
)
from properties._checker_prompts import (
    MAX_NUM_PROMPTS,
    MAX_SAMPLES_PER_BATCH,
    PromptsEvaluation,
    PromptsGuard,
    PromptsProblem,
    evaluate_prompts,
    generated_prompt_problems,
    joint_inputs,
    key_text,
    prompt_scale_hints,
    prompts_battery,
)
from properties._judging import (
    REFERENCE_MIN_SIGNAL,
    ROUNDOFF_DTYPES,
    Mismatch,
    ReferenceBook,
    Verdict,
    decide,
    explained_by,
    judge,
    norm,
    relative_residual,
    scale_hints,
    ulps,
)
from properties._user_code import name_of
from properties.strategies import PolicyProblem

DEFAULT_GROUP_SIZES = (2, 3, 4)
"""Group sizes checked unless told otherwise (add 1 to check ``k = 1``)."""

DEFAULT_MAX_EXAMPLES = 100
"""Generated problems after the battery (the battery alone: ``max_examples=0``)."""

MAX_GROUP_SIZE = 12
"""Largest ``k`` accepted (``n`` is reduced for large ``k`` so that ``n**k <= 4096``)."""

SCALE_MATCH_UNCERTAINTIES = 4.0
""":func:`assert_scaled` accepts a measured ``c_k`` within this many uncertainties of the claim."""

SCALE_MATCH_REL = 1e-12
"""... plus this relative slack (a perfectly measured scale has uncertainty ~0)."""

ROUNDOFF_NOTE_ULPS = 4.0
"""A counterexample "is round-off of dtype D" when every mismatch is within the checker's
round-off bound for D with this factor in place of ``ROUNDOFF_SAFETY * k``: a few ulps of
D of the summed terms, not the generous bound used to avoid false alarms; and when the
residual :math:`|E - cG|/|G|` of the mismatch with the largest :math:`|G|` is at most this
many ulps of D (a bias of 10% of :math:`|G|` is not "round-off of bfloat16", even where
the scores are large enough for the absolute bound to allow it)."""

_DTYPE_NAMES = {
    2.0**-7: "bfloat16",
    float(np.finfo(np.float16).eps): "float16",
    float(np.finfo(np.float32).eps): "float32",
    EPS64: "float64",
}


@dataclass(frozen=True)
class RoundoffNote:
    """A counterexample whose residual is within the round-off of a coarser dtype.

    ``relative_residual`` is :math:`|E - c_k G| / |G|` on the counterexample and ``ulps``
    that size in units of each dtype's epsilon; ``dtype`` is the finest dtype whose
    round-off bound (the checker's own) contains the residual of every mismatch the
    battery found; ``rtol``/``atol`` the tolerance that accepts that round-off (``atol``
    covers values below the dtype's smallest normal number, which it flushes), and
    ``verdict``/``scale`` what the checker concludes with it (a second full run).  The
    report's verdict itself stays strict.
    """

    relative_residual: float
    ulps: dict[str, float]
    dtype: str
    rtol: float
    atol: float
    verdict: Verdict
    scale: dict[Any, float] | None  # keyed by k, or by (k, T, P) for a sequence check

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return {
            "relative_residual": self.relative_residual,
            "ulps": dict(self.ulps),
            "dtype": self.dtype,
            "rtol": self.rtol,
            "atol": self.atol,
            "verdict": self.verdict,
            "scale": None if self.scale is None else {_key_str(k): c for k, c in self.scale.items()},
        }


def _key_str(key: Any) -> str:
    """A scale key in JSON: ``"2"`` for ``k = 2``, ``"k=2, P=1"`` for a multi-prompt key."""
    return key_text(key) if isinstance(key, tuple) else str(key)


@dataclass(frozen=True)
class Counterexample:
    """A problem on which :math:`E[g]` is not the claimed multiple of :math:`\\nabla J`.

    ``multiple`` is the best-fitting :math:`c = \\langle E, G\\rangle / \\langle G, G\\rangle`
    on this problem (``None`` when :math:`G = 0`); ``residual`` is :math:`E - cG` (:math:`E`
    when :math:`G = 0`); ``reference_multiple`` is the :math:`c_k` measured on the
    reference problem; ``discrepancy`` is :math:`E - c_k G`, compared with ``tolerance``;
    ``roundoff`` is set when the discrepancy is within a coarser dtype's round-off.
    With ``num_prompts`` ``P`` (the multi-prompt protocol) ``logits``, ``scores`` and the
    vectors are ``(P, n)``: row ``p`` is prompt ``p``'s problem and coordinates, and the
    gradient is :math:`\nabla J_p / P` (the mean objective over prompts).
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
    roundoff: RoundoffNote | None = None
    num_prompts: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields (``num_prompts`` only in the multi-prompt protocol)."""
        out = {
            "logits": self.logits.tolist(),
            "scores": self.scores.tolist(),
            "k": self.k,
            "n": int(self.scores.shape[-1]),
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
            "roundoff": None if self.roundoff is None else self.roundoff.to_dict(),
        }
        if self.num_prompts is not None:
            out["num_prompts"] = self.num_prompts
        return out


ERROR_KINDS = (*FAULT_KINDS, "imprecise")
"""The values of :attr:`EstimatorError.kind`: a failed call, or a scale too imprecise to judge."""


@dataclass(frozen=True)
class EstimatorError:
    """What went wrong when calling the estimator, and on which inputs.

    ``kind`` is one of :data:`ERROR_KINDS`; ``samples``/``rewards`` are the arguments of the
    failing call (one group, or the whole batch of all ``n**k`` groups when the failure
    cannot be narrowed to a row); ``scores`` and ``k`` define the problem.  For
    ``imprecise`` (the scale could not be measured) the logits and scores are those of
    the best reference problem and there is no failing call.  In the multi-prompt
    protocol ``logits`` is the ``(P*k, n)`` argument, ``group`` the fourth argument and
    ``num_prompts`` its ``P`` (both ``None`` otherwise); ``scores`` is then ``(P, n)``.
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
    group: Any = None
    num_prompts: int | None = None

    @classmethod
    def without_call(cls: type[_E], kind: str, detail: str, *, hint: str, found_by: str) -> _E:
        """An error tied to no single call (empty inputs, no problem), of this class."""
        return cls(
            kind=kind,
            detail=detail,
            logits=np.zeros(0),
            samples=np.zeros(0, dtype=np.int64),
            rewards=np.zeros(0),
            scores=None,
            k=None,
            hint=hint,
            found_by=found_by,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields (``group``/``num_prompts`` only when set)."""
        out = {
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
        if self.group is not None:
            out["group"] = np.asarray(self.group).tolist()
        if self.num_prompts is not None:
            out["num_prompts"] = self.num_prompts
        return out


_E = TypeVar("_E", bound=EstimatorError)


@dataclass(frozen=True)
class CheckedRegion:
    """What the verdict covers: the problems that were actually evaluated.

    ``n_range``: fewest and most answers; ``group_sizes``: the ``k`` checked;
    ``logit_range``: smallest and largest logit (shifted problems included);
    ``logit_gap``: the largest ``max - min`` logit within one problem (it sets the
    smallest probability, ``smallest_p``); ``score_range``: smallest and largest score;
    ``problems``: how many problems each source contributed (``battery``, ``shifted``,
    ``large-n``, ``hypothesis``); ``notes``: anything else a checker wants said;
    ``num_prompts``: the ``P`` checked (multi-prompt protocol only).
    """

    group_sizes: tuple[int, ...]
    n_range: tuple[int, int] | None = None
    logit_range: tuple[float, float] | None = None
    logit_gap: float | None = None
    smallest_p: float | None = None
    score_range: tuple[float, float] | None = None
    problems: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    num_prompts: tuple[int, ...] | None = None

    def describe(self) -> str:
        """One line for a report.

        >>> CheckedRegion((2,), (2, 3), (0.0, 1.0), 1.0, 0.27, (0.0, 2.0), {"battery": 4}).describe()
        'n in 2..3; k in {2}; logits in [0, 1] (largest gap 1, p down to 0.27); scores in [0, 2]; problems: 4 battery'
        """
        ks = ", ".join(str(k) for k in self.group_sizes)
        parts = []
        if self.n_range is not None:
            parts.append(f"n in {self.n_range[0]}..{self.n_range[1]}")
        parts.append(f"k in {{{ks}}}")
        if self.num_prompts is not None:
            parts.append(f"P in {{{', '.join(str(p) for p in self.num_prompts)}}} prompts per batch")
        if self.logit_range is not None:
            lo, hi = self.logit_range
            parts.append(
                f"logits in [{lo:.4g}, {hi:.4g}] (largest gap {self.logit_gap or 0.0:.4g}, "
                f"p down to {self.smallest_p if self.smallest_p is not None else 1.0:.2g})"
            )
        if self.score_range is not None:
            parts.append(f"scores in [{self.score_range[0]:.4g}, {self.score_range[1]:.4g}]")
        counts = ", ".join(f"{v} {k}" for k, v in self.problems.items()) or "none"
        parts.append(f"problems: {counts}")
        parts.extend(self.notes)
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return {
            "group_sizes": list(self.group_sizes),
            "n_range": None if self.n_range is None else list(self.n_range),
            "logit_range": None if self.logit_range is None else list(self.logit_range),
            "logit_gap": self.logit_gap,
            "smallest_p": self.smallest_p,
            "score_range": None if self.score_range is None else list(self.score_range),
            "problems": dict(self.problems),
            "notes": list(self.notes),
        } | ({} if self.num_prompts is None else {"num_prompts": list(self.num_prompts)})


@dataclass(frozen=True)
class EstimatorReport:
    """The verdict on an estimator, with the evidence (STYLE item 4: a verdict object).

    ``verdict`` is ``"unbiased"``, ``"scaled"``, ``"biased"`` or ``"error"``; ``scale`` maps
    each ``k`` to :math:`c_k` for ``"unbiased"`` (all 1) and ``"scaled"``, else ``None``;
    ``counterexample`` is set for ``"biased"``, ``error`` for ``"error"``; ``message`` is
    the readable report (also ``str(report)``); ``estimator_seconds`` is the time spent
    inside ``fn`` out of ``seconds`` in all, and ``timing`` splits ``seconds`` into
    ``estimator``, ``evaluation`` (the exact engine and the guard), ``judging``,
    ``generation`` (Hypothesis) and ``other``, plus the ``battery`` and ``hypothesis``
    phase totals; ``region`` is what the verdict covers; ``protocol`` is how the
    estimator was called (``"one-step"`` here; other checkers use other values);
    ``num_prompts`` is the ``P`` checked in the multi-prompt protocol (``None``: one
    group per call or batch row), and then ``scale`` is keyed by ``(k, P)``.
    """

    name: str
    verdict: Verdict
    scale: dict[Any, float] | None  # keyed by k here, by (k, T, P) in a sequence report
    scale_uncertainty: dict[Any, float] | None
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
    region: CheckedRegion = field(default_factory=lambda: CheckedRegion(()))
    protocol: str = "one-step"
    timing: dict[str, float] = field(default_factory=dict, repr=False)
    num_prompts: tuple[int, ...] | None = None

    @property
    def ok(self) -> bool:
        """``True`` iff the verdict is ``"unbiased"``."""
        return self.verdict == "unbiased"

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields (``json.dumps(report.to_dict())`` works)."""
        out = {
            "name": self.name,
            "verdict": self.verdict,
            "protocol": self.protocol,
            "scale": None if self.scale is None else {_key_str(k): c for k, c in self.scale.items()},
            "scale_uncertainty": None
            if self.scale_uncertainty is None
            else {_key_str(k): c for k, c in self.scale_uncertainty.items()},
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
            "timing": dict(self.timing),
            "region": self.region.to_dict(),
            "message": self.message,
        }
        if self.num_prompts is not None:
            out["num_prompts"] = list(self.num_prompts)
        return out

    def to_json(self) -> str:
        """``to_dict()`` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)


class EstimatorCheckFailure(AssertionError):
    """Raised by :func:`assert_unbiased` / :func:`assert_scaled`; ``str`` is the report."""

    def __init__(self, report: EstimatorReport, expected: str) -> None:
        super().__init__(f"expected {expected}, but {report.message}")
        self.report = report


# --------------------------------------------------------------------------- the run


class _Mismatch(Exception):
    """Raised inside the Hypothesis test so that it shrinks; carries the mismatch."""

    def __init__(self, mismatch: Mismatch[Evaluation]) -> None:
        super().__init__(mismatch.reason)
        self.mismatch = mismatch


class _Region:
    """Accumulates the :class:`CheckedRegion` over the evaluated problems."""

    def __init__(self, ks: tuple[int, ...], prompts: tuple[int, ...] | None = None) -> None:
        self.ks, self.prompts = ks, prompts
        self.n: list[int] = []
        self.logits = [math.inf, -math.inf]
        self.gap = 0.0
        self.p = 1.0
        self.scores = [math.inf, -math.inf]
        self.problems: dict[str, int] = {}
        self.largest_n: dict[Any, int] = {}

    def add(self, ev: Evaluation, source: str) -> None:
        n = ev.scores.shape[-1]
        self.n = [min(self.n[0], n), max(self.n[1], n)] if self.n else [n, n]
        self.largest_n[ev.key] = max(self.largest_n.get(ev.key, 0), n)
        lo, hi = float(ev.logits.min()), float(ev.logits.max())
        self.logits = [min(self.logits[0], lo), max(self.logits[1], hi)]
        self.gap = max(self.gap, hi - lo)
        self.p = min(self.p, float(ev.p.min()))
        self.scores = [min(self.scores[0], float(ev.scores.min())), max(self.scores[1], float(ev.scores.max()))]
        self.problems[source] = self.problems.get(source, 0) + 1

    def region(self) -> CheckedRegion:
        if not self.n:
            return CheckedRegion(self.ks, problems=dict(self.problems), num_prompts=self.prompts)
        return CheckedRegion(
            group_sizes=self.ks,
            n_range=(self.n[0], self.n[1]),
            logit_range=(self.logits[0], self.logits[1]),
            logit_gap=self.gap,
            smallest_p=self.p,
            score_range=(self.scores[0], self.scores[1]),
            problems=dict(self.problems),
            notes=self._n_notes(),
            num_prompts=self.prompts,
        )

    def _n_notes(self) -> tuple[str, ...]:
        """Where the largest ``n`` tried is smaller than the overall one (the enumeration
        budget caps ``n`` as ``k`` and ``P`` grow): a bias only at larger ``n`` there is
        outside what was checked."""
        top = self.n[1]
        below: dict[int, list[Any]] = {}
        for key, n in sorted(self.largest_n.items()):
            if n < top:
                below.setdefault(n, []).append(key)
        parts = []
        for n, keys in sorted(below.items(), reverse=True):
            if isinstance(keys[0], tuple):
                where = "(k, P) in " + ", ".join(f"({k}, {p})" for k, p in keys)
            else:
                where = "k in {" + ", ".join(str(k) for k in keys) + "}"
            parts.append(f"n at most {n} for {where}")
        return ("; ".join(parts),) if parts else ()


class _Run:
    """One run of the checker: the battery, the Hypothesis search, the confirmation."""

    def __init__(
        self,
        fn: Callable[..., Any],
        ks: tuple[int, ...],
        *,
        batched: bool,
        seed: int,
        max_examples: int,
        rtol: float | None,
        atol: float,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.fn, self.ks, self.batched = fn, ks, batched
        self.seed, self.max_examples, self.rtol, self.atol = seed, max_examples, rtol, atol
        self.guard = GuardedEstimator(fn, batched=batched)
        self.book: ReferenceBook[Evaluation] = ReferenceBook()
        self.mismatch: Mismatch[Evaluation] | None = None
        self.mismatches: list[Mismatch[Evaluation]] = []
        self.found_by = ""
        self.error: EstimatorError | None = None
        self.region = _Region(ks)
        self.problems = 0
        self.planned = max_examples
        self.max_eps = EPS64
        self.progress = progress
        self.progress_error: Exception | None = None
        self.clock = {
            "evaluation": 0.0, "judging": 0.0, "generation": 0.0, "battery": 0.0, "hypothesis": 0.0,
        }

    prompts: tuple[int, ...] | None = None

    def keys(self) -> tuple[Any, ...]:
        """What one scale constant is measured for: the ``k`` here."""
        return self.ks

    def largest_factor(self) -> int:
        """The most samples in one group or batch (``max k``), for the round-off note's ``rtol``."""
        return max(self.ks)

    # -- bookkeeping ----------------------------------------------------------------
    def _tick(self) -> None:
        if self.progress is None:
            return
        try:
            self.progress(self.problems, max(self.planned, self.problems))
        except Exception as exc:  # the caller's callback: stop calling it, re-raise at the end
            self.progress_error = exc
            self.progress = None

    def _evaluate(
        self,
        theta: FloatArray,
        scores: FloatArray,
        k: int,
        *,
        source: str,
        order: int,
        determinism: bool,
        rows: bool,
    ) -> Evaluation:
        start, inside = time.perf_counter(), self.guard.user_seconds
        try:
            ev = self._compute(theta, scores, k, determinism=determinism, rows=rows)
        finally:
            spent = time.perf_counter() - start
            self.clock["evaluation"] += spent - (self.guard.user_seconds - inside)
        ev.order, ev.source = order, source
        self.max_eps = max(self.max_eps, ev.eps_out)
        self.region.add(ev, source)
        self.problems += 1
        self._tick()
        return ev

    def _compute(
        self, theta: FloatArray, scores: FloatArray, k: int, *, determinism: bool, rows: bool
    ) -> Evaluation:
        return evaluate(
            self.guard, theta, scores, k, rtol=self.rtol, atol=self.atol,
            check_determinism=determinism, check_rows=rows,
        )

    def _keep(self, found: list[Mismatch[Evaluation]], found_by: str) -> None:
        self.mismatches += found
        for m in found:
            if self.mismatch is None or m.evaluation.order < self.mismatch.evaluation.order:
                self.mismatch = m
                self.found_by = found_by

    def _fault(self, fault: EstimatorFault, scores: FloatArray | None, k: int | None, found_by: str) -> None:
        group = fault.group
        self.error = EstimatorError(
            group=group,
            num_prompts=None if group is None or group.size == 0 else int(group.max()) + 1,
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

    # -- phases -----------------------------------------------------------------------
    def run_battery(self) -> None:
        start = time.perf_counter()
        problems = self._battery()
        self.planned = len(problems) + self.max_examples
        for order, bp in enumerate(problems):
            try:
                ev = self._evaluate(
                    bp.theta, bp.scores, bp.k, source=bp.source, order=order,
                    determinism=bp.check_determinism, rows=self.batched,
                )
            except EstimatorFault as fault:
                where = "battery" if bp.source == "battery" else f"battery ({bp.source} problems)"
                self._fault(fault, bp.scores, bp.k, where)
                break
            judging = time.perf_counter()
            self._keep(self.book.offer(ev), "battery")
            self.clock["judging"] += time.perf_counter() - judging
        judging = time.perf_counter()
        self._keep(self.book.close(), "battery")
        self.clock["judging"] += time.perf_counter() - judging
        self.clock["battery"] += time.perf_counter() - start

    def _battery(self) -> list[Any]:
        return list(battery(self.ks))

    def _strategy(self) -> Any:
        return generated_problems(self.ks)

    def _ours(self) -> float:
        return self.guard.user_seconds + self.clock["evaluation"] + self.clock["judging"]

    def run_hypothesis(self) -> None:
        start, before = time.perf_counter(), self._ours()
        try:
            self._hypothesis()
        finally:
            spent = time.perf_counter() - start
            self.clock["hypothesis"] += spent
            self.clock["generation"] += max(spent - (self._ours() - before), 0.0)

    def _hypothesis(self) -> None:
        failure: dict[str, Any] = {}
        base = self.problems
        @checker_settings(self.max_examples)
        @hypothesis_seed(self.seed)
        @given(self._strategy())
        def property_(problem: PolicyProblem | PromptsProblem) -> None:
            try:
                ev = self._evaluate(
                    problem.logits, problem.scores, problem.k, source="hypothesis",
                    order=base + self.problems, determinism=False, rows=False,
                )
            except EstimatorFault as fault:
                failure["last"] = (fault, problem)
                raise
            ref = self.book.reference(ev.key)
            if ref is None:  # no problem could measure c_k: the verdict will say so
                return
            judging = time.perf_counter()
            found = judge(ev, ref)
            self.clock["judging"] += time.perf_counter() - judging
            if found is not None:
                raise _Mismatch(found)

        try:
            with pinned_hypothesis():
                property_()
        except _Mismatch as exc:
            self.mismatch = exc.mismatch
            self.mismatches.append(exc.mismatch)
            self.found_by = "hypothesis (shrunk)"
        except EstimatorFault as fault:
            last = failure.get("last")
            problem = last[1] if last is not None and last[0] is fault else None
            self._fault(
                fault,
                None if problem is None else problem.scores,
                None if problem is None else problem.k,
                "hypothesis (shrunk)",
            )
        except Flaky as exc:
            self.error = EstimatorError.without_call(
                "nondeterministic",
                "gave different verdicts when Hypothesis replayed the same problem "
                f"({type(exc).__name__}); the exact checker needs a deterministic function "
                "of (logits, samples, rewards): an estimator with its own randomness or "
                "hidden state needs a sampling check (properties.stats)",
                hint="",
                found_by="hypothesis",
            )

    def confirm(self) -> None:
        """Re-evaluate the counterexample: a result that moves is ``nondeterministic``."""
        m = self.mismatch
        if m is None or self.error is not None:
            return
        ev = m.evaluation
        try:
            self._recheck(ev)
        except EstimatorFault as fault:
            self._fault(fault, ev.scores, ev.k, f"re-checking the counterexample found by {self.found_by}")

    def _recheck(self, ev: Evaluation) -> None:
        x = all_groups(ev.scores.size, ev.k)
        logits, rewards = frozen(ev.logits), frozen(ev.scores[x])
        self.guard.check_deterministic(logits, x, rewards, ev.g, ev.eps_out)
        if self.batched:
            self.guard.check_rows_independent(logits, x, rewards, ev.g, ev.eps_out, seed=self.seed)

    # -- the verdict --------------------------------------------------------------------
    def imprecise_error(self, keys: tuple[Any, ...]) -> EstimatorError:
        refs = self.book.references()
        best = [(k, refs.get(k)) for k in keys]
        measured = "; ".join(
            f"{key_text(k)}: no problem had |grad J| above the tolerance"
            if ref is None
            else f"{key_text(k)}: best c_k = {ref.multiple:.4g} +- {ref.uncertainty:.2g}"
            for k, ref in best
        )
        if self.rtol is not None:
            cause = (
                f"could not be judged with rtol={self.rtol!r}: that tolerance is more than "
                f"1/{REFERENCE_MIN_SIGNAL:g} of |grad J| on every problem checked"
            )
            fix = "pass a smaller rtol"
        else:
            dtype = _DTYPE_NAMES.get(self.max_eps, f"a dtype with epsilon {self.max_eps:.2g}")
            cause = (
                f"returns {dtype} (round-off unit {self.max_eps:.2g}), too coarse to judge: the "
                f"round-off tolerance that keeps correct {dtype} estimators from false alarms "
                f"is more than 1/{REFERENCE_MIN_SIGNAL:g} of |grad J| on every problem checked"
            )
            fix = (
                "return float32 or float64 (if fn computes in float16, the checker can still "
                "find biases larger than float16 round-off, but cannot certify it)"
                if self.max_eps > float(np.finfo(np.float32).eps)
                else "this should not happen for a float32 or float64 output: please report it"
            )
        ref = next((r for _, r in best if r is not None), None)
        return EstimatorError(
            kind="imprecise",
            detail=(
                f"{cause}, so the scale c_k cannot be told from 1 ({measured}) and no verdict "
                f"between unbiased and scaled is possible; {fix}"
            ),
            logits=np.zeros(0) if ref is None else ref.evaluation.logits,
            samples=np.zeros(0, dtype=np.int64),
            rewards=np.zeros(0),
            scores=None if ref is None else ref.evaluation.scores,
            k=None if ref is None else ref.evaluation.k,
            hint="",
            found_by="the battery (scale reference)",
        )


class _PromptsRun(_Run):
    """A run of the multi-prompt protocol: keys ``(k, P)``, one call per joint batch."""

    def __init__(
        self,
        fn: Callable[..., Any],
        ks: tuple[int, ...],
        prompts: tuple[int, ...],
        **kwargs: Any,
    ) -> None:
        super().__init__(fn, ks, batched=False, **kwargs)
        self.prompts = prompts
        self._keys = tuple((k, p) for k in ks for p in prompts)
        self.guard = PromptsGuard(fn)
        self.region = _Region(ks, prompts)

    def keys(self) -> tuple[Any, ...]:
        return self._keys

    def largest_factor(self) -> int:
        return max(k * p for k, p in self._keys)

    def _compute(
        self, theta: FloatArray, scores: FloatArray, k: int, *, determinism: bool, rows: bool
    ) -> Evaluation:
        assert isinstance(self.guard, PromptsGuard)
        return evaluate_prompts(
            self.guard, theta, scores, k, rtol=self.rtol, atol=self.atol,
            check_determinism=determinism,
        )

    def _battery(self) -> list[Any]:
        return list(prompts_battery(self.keys()))

    def _strategy(self) -> Any:
        return generated_prompt_problems(self.keys())

    def _recheck(self, ev: Evaluation) -> None:
        assert isinstance(self.guard, PromptsGuard) and isinstance(ev, PromptsEvaluation)
        args = joint_inputs(ev.logits, ev.scores, ev.k)[:4]
        self.guard.check_deterministic4(args, ev.num_prompts, ev.k, ev.g, ev.eps_out)


# --------------------------------------------------------------------------- validation


def _validate(
    fn: Any,
    group_sizes: Any,
    seed: Any,
    max_examples: Any,
    batched: Any,
    rtol: Any,
    atol: Any,
    name: Any,
    progress: Any,
) -> tuple[tuple[int, ...], int, int]:
    if not callable(fn):
        raise InvalidArgument(f"Expected a callable estimator but got {describe('fn', fn)}")
    if not isinstance(batched, bool):
        raise InvalidArgument(f"Expected batched=True or False but got {describe('batched', batched)}")
    if isinstance(group_sizes, str | bytes):
        raise InvalidArgument(
            f"Expected a sequence of group sizes but got {describe('group_sizes', group_sizes)}"
        )
    try:
        ks = tuple(group_sizes)
    except KeyboardInterrupt:
        raise
    except BaseException:  # a hostile iterable: say what it was, not its traceback
        raise InvalidArgument(
            f"Expected a sequence of group sizes but got {describe('group_sizes', group_sizes)}"
        ) from None
    if not ks or any(
        isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_GROUP_SIZE
        for k in ks
    ):
        raise InvalidArgument(
            f"Expected a non-empty sequence of integers 1 <= k <= {MAX_GROUP_SIZE} but got "
            f"{describe('group_sizes', group_sizes)}"
        )
    for label, value, low in (("seed", seed, 0), ("max_examples", max_examples, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise InvalidArgument(f"Expected an integer >= {low} but got {describe(label, value)}")
    if rtol is not None and (
        isinstance(rtol, bool)
        or not (isinstance(rtol, float | int) and math.isfinite(rtol) and rtol > 0)
    ):
        raise InvalidArgument(f"Expected rtol=None or a finite float > 0 but got {describe('rtol', rtol)}")
    if isinstance(atol, bool) or not (
        isinstance(atol, float | int) and math.isfinite(atol) and atol >= 0
    ):
        raise InvalidArgument(f"Expected a finite atol >= 0 but got {describe('atol', atol)}")
    if name is not None and not isinstance(name, str):
        raise InvalidArgument(f"Expected name=None or a str but got {describe('name', name)}")
    if progress is not None and not callable(progress):
        raise InvalidArgument(
            f"Expected progress=None or a callable (done, planned) but got {describe('progress', progress)}"
        )
    return tuple(sorted({int(k) for k in ks})), int(seed), int(max_examples)


def _validate_prompts(
    num_prompts: Any, batched: bool, ks: tuple[int, ...]
) -> tuple[int, ...] | None:
    """``None`` or the sorted ``P`` to check (bad values: :class:`InvalidArgument`)."""
    if num_prompts is None:
        return None
    if batched:
        raise InvalidArgument(
            "batched=True and num_prompts cannot be combined: the multi-prompt protocol calls "
            "fn(logits (P*k, n), samples (P*k,), rewards (P*k,), group (P*k,)) once per batch, "
            f"{describe('num_prompts', num_prompts)}"
        )
    message = (
        f"Expected num_prompts=None or a non-empty sequence of integers 1 <= P <= "
        f"{MAX_NUM_PROMPTS} but got {describe('num_prompts', num_prompts)}"
    )
    if isinstance(num_prompts, str | bytes):
        raise InvalidArgument(message)
    try:
        values = tuple(num_prompts)
    except KeyboardInterrupt:
        raise
    except BaseException:
        raise InvalidArgument(message) from None
    if not values or any(
        isinstance(p, bool) or not isinstance(p, int | np.integer) or not 1 <= p <= MAX_NUM_PROMPTS
        for p in values
    ):
        raise InvalidArgument(message)
    prompts = tuple(sorted({int(p) for p in values}))
    if max(ks) * max(prompts) > MAX_SAMPLES_PER_BATCH:
        raise InvalidArgument(
            f"Expected k*P <= {MAX_SAMPLES_PER_BATCH} for every group size and number of prompts "
            f"(2**(k*P) joint batches, one call each) but got group_sizes={ks!r} and "
            f"{describe('num_prompts', num_prompts)}; check fewer prompts or smaller groups"
        )
    return prompts


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
    progress: Callable[[int, int], None] | None = None,
    num_prompts: Iterable[int] | None = None,
) -> EstimatorReport:
    r"""Decide whether :math:`E[g] = \nabla_\theta E_{X\sim\mathrm{softmax}(\theta)}[s(X)]` exactly.

    ``fn(logits, samples, rewards)``: per group (``batched=False``) ``logits`` float64
    ``(n,)``, ``samples`` int64 ``(k,)``, ``rewards`` float64 ``(k,)``, returning ``(n,)``;
    batched (``batched=True``) ``samples``/``rewards`` ``(B, k)`` returning ``(B, n)``, each
    row a function of its own group only (the checker also calls it on shuffled rows and
    sub-batches).  The inputs are read-only; float64, float32 and float16 arrays, lists
    and tensors are accepted as results (integer, bool, complex and object are errors).

    ``group_sizes``: the ``k`` to check (include 1 to check single-sample groups);
    ``seed``/``max_examples``: the Hypothesis search after the fixed battery (the
    verdict is reproducible from them, whatever modules the caller has imported);
    ``rtol``/``atol``: override the derived round-off tolerance :math:`\tau_i` with
    ``atol + rtol * (E|g_i| + S (2 p_i + 1))`` (e.g. ``rtol=2e-5`` for an estimator that
    computes in float32 internally but returns float64); ``name``: how to call the
    estimator in the report; ``progress(done, planned)``: called after every problem
    (``planned`` is an estimate: the battery plus ``max_examples``, at least ``done``);
    an exception it raises is re-raised once the check has finished.

    ``num_prompts`` (e.g. ``(1, 2)``): check the **multi-prompt protocol** instead, as RL
    code pools a batch: for every ``P`` given, ``fn(logits, samples, rewards, group)``
    with ``P`` prompts of ``k`` responses each, ``logits`` float64 ``(P*k, n)`` (row ``j``
    holds the logits of row ``j``'s prompt), ``samples`` int64 ``(P*k,)``, ``rewards``
    float64 ``(P*k,)`` and ``group`` int64 ``(P*k,)`` ``= np.repeat(np.arange(P), k)``
    (prompt-major, contiguous), all read-only; it returns ``(P*k, n)``, row ``j`` being
    row ``j``'s contribution to the gradient with respect to the logits of its own
    prompt (the estimate for prompt ``p`` is the sum of its rows).  Each prompt has its
    own problem (logits and scores, one ``n`` for all prompts of a problem).  The target is
    the gradient of the **mean** objective over prompts, :math:`J = \frac1P\sum_p J_p`,
    i.e. :math:`\nabla J_p / P` for prompt ``p``'s coordinates: the RL objective is an
    expectation over prompts, so a loss averaging over all ``P*k`` rows is unbiased, a
    baseline pooled over the batch is scaled or biased, and whitening over the batch is
    biased.  :math:`E[g]` is exact, summed over all :math:`n^{kP}` joint batches (one call
    each; ``n`` is capped so that a problem takes at most 1024 calls, and ``k*P <= 10``); a
    scale constant is measured per ``(k, P)`` (``report.scale`` is keyed by ``(k, P)``).
    ``batched=True`` does not combine with it, and the check that rows are independent
    does not apply: pooling the rows is what this protocol declares.

    Never raises for misbehaving user code (that is the ``"error"`` verdict; only a
    ``KeyboardInterrupt`` stops the run); raises :class:`impl.errors.InvalidArgument`
    for bad arguments to the checker itself.  Writes nothing to disk.

    >>> import numpy as np
    >>> def sign_bug(logits, samples, rewards):
    ...     p = np.exp(logits - logits.max()); p /= p.sum()
    ...     return -np.mean(rewards[:, None] * (np.eye(p.size)[samples] - p), axis=0)
    >>> report = check_estimator(sign_bug)
    >>> report.verdict, report.counterexample.multiple
    ('biased', -1.0)

    Several prompts per batch: a REINFORCE loss averaged over all ``P*k`` rows is unbiased,
    a baseline that is the mean reward of the whole batch is scaled by ``(Pk-1)/(Pk)``:

    >>> def batch_baseline(logits, samples, rewards, group):
    ...     p = np.exp(logits - logits.max(axis=1, keepdims=True))
    ...     p /= p.sum(axis=1, keepdims=True)
    ...     w = (rewards - rewards.mean()) / rewards.size
    ...     return w[:, None] * (np.eye(p.shape[1])[samples] - p)
    >>> report = check_estimator(batch_baseline, group_sizes=(2,), num_prompts=(1, 2),
    ...                          max_examples=5)
    >>> report.verdict, {key: round(c, 9) for key, c in report.scale.items()}
    ('scaled', {(2, 1): 0.5, (2, 2): 0.75})
    """
    ks, seed, max_examples = _validate(
        fn, group_sizes, seed, max_examples, batched, rtol, atol, name, progress
    )
    prompts = _validate_prompts(num_prompts, batched, ks)
    start = time.perf_counter()
    with warnings.catch_warnings(), np.errstate(**np.geterr()):  # user code may change both
        run = _check(
            fn, ks, seed=seed, max_examples=max_examples, batched=batched,
            rtol=None if rtol is None else float(rtol), atol=float(atol), progress=progress,
            prompts=prompts,
        )
        shown = name_of(fn) if name is None else str.__str__(name)  # a str subclass stays inert
        report = _make_report(shown, run, start)
    if run.progress_error is not None:
        raise run.progress_error
    return report


def _check(
    fn: Callable[..., Any],
    ks: tuple[int, ...],
    *,
    seed: int,
    max_examples: int,
    batched: bool,
    rtol: float | None,
    atol: float,
    progress: Callable[[int, int], None] | None,
    prompts: tuple[int, ...] | None = None,
) -> _Run:
    run = (
        _Run(
            fn, ks, batched=batched, seed=seed, max_examples=max_examples, rtol=rtol, atol=atol,
            progress=progress,
        )
        if prompts is None
        else _PromptsRun(
            fn, ks, prompts, seed=seed, max_examples=max_examples, rtol=rtol, atol=atol,
            progress=progress,
        )
    )
    run.run_battery()
    if run.error is None and run.mismatch is None and max_examples > 0:
        run.run_hypothesis()
    run.confirm()
    return run


_EPSILONS = {name: eps for name, eps in ROUNDOFF_DTYPES}

_SMALLEST_NORMAL = {
    "float32": float(np.finfo(np.float32).tiny),
    "bfloat16": float(np.finfo(np.float32).tiny),  # bfloat16 keeps float32's exponent range
    "float16": float(np.finfo(np.float16).tiny),
}


def _roundoff_note(run: _Run, m: Mismatch[Evaluation]) -> RoundoffNote | None:
    """A :class:`RoundoffNote` if every mismatch found is within a coarser dtype's round-off."""
    if run.rtol is not None or any(x.kind == "nonpositive" for x in run.mismatches):
        return None
    order = [name for name, _ in ROUNDOFF_DTYPES]
    finest = -1
    for x in run.mismatches or [m]:
        ev = x.evaluation
        # "a few ulps": the checker's own bound for that dtype without its safety factor
        shrink = ROUNDOFF_NOTE_ULPS / (ROUNDOFF_SAFETY * ev.factor_k)

        def bound(eps: float, ev: Evaluation = ev, shrink: float = shrink) -> FloatArray:
            out: FloatArray = ev.tolerance_at(eps) * shrink
            return out

        dtype = explained_by(x, bound, finer_than=ev.eps_out)
        if dtype is None:
            return None
        finest = max(finest, order.index(dtype))
    dtype = order[finest]
    eps = _EPSILONS[dtype]
    # ... and relative to |grad J| where grad J is best determined (where it nearly cancels,
    # round-off is large relative to it): a few ulps there too, or it is not round-off
    clearest = max(run.mismatches or [m], key=lambda x: norm(x.evaluation.gradient))
    if relative_residual(clearest) > ROUNDOFF_NOTE_ULPS * eps:
        return None
    ev = m.evaluation
    # the rtol that reproduces the derived tolerance at that precision for the largest k
    # (and at least twice what this counterexample needs), one significant digit, rounded up
    size = max(float(np.abs(ev.scores).max()), float(np.abs(ev.g).max(initial=0.0)))
    need = np.abs(m.discrepancy) - m.reference.uncertainty * np.abs(ev.gradient) - ev.atol
    denominator = ev.magnitude + size * (2.0 * ev.p + 1.0)
    needed = float(np.max(need / np.where(denominator > 0, denominator, np.inf)))
    rtol = _round_up(max(ROUNDOFF_SAFETY * run.largest_factor() * eps, 2.0 * needed))
    atol = _round_up(max(run.atol, ROUNDOFF_SAFETY * _SMALLEST_NORMAL[dtype]))
    again = _check(
        run.fn, run.ks, seed=run.seed, max_examples=run.max_examples, batched=run.batched,
        rtol=rtol, atol=atol, progress=None, prompts=run.prompts,
    )
    for key in ("evaluation", "judging", "generation"):
        run.clock[key] += again.clock[key]
    run.guard.calls += again.guard.calls
    run.guard.user_seconds += again.guard.user_seconds
    decision = _decide(again)
    scale = _keyed(decision.scale)
    relative = relative_residual(m)
    return RoundoffNote(
        relative_residual=relative,
        ulps=ulps(relative),
        dtype=dtype,
        rtol=rtol,
        atol=atol,
        verdict=decision.verdict,
        scale=scale,
    )


def _round_up(x: float) -> float:
    """``x`` rounded up to one significant digit.

    >>> _round_up(1.53e-5), _round_up(2e-5)
    (2e-05, 2e-05)
    """
    if x <= 0 or not math.isfinite(x):
        return x
    exponent = math.floor(math.log10(x))
    unit = 10.0**exponent
    digit = math.ceil(round(x / unit, 9))
    return float(f"{digit * unit:.1g}")


def _decide(run: _Run) -> Any:
    return decide(
        fault=run.error is not None,
        mismatch=run.mismatch is not None,
        references=run.book.references(),
        keys=run.keys(),
    )


def _keyed(values: Mapping[Any, float] | None) -> dict[Any, float] | None:
    """Scale keys as ints (``k``) or ``(k, P)`` tuples of ints."""
    if values is None:
        return None
    return {
        (tuple(int(x) for x in key) if isinstance(key, tuple) else int(key)): c
        for key, c in values.items()
    }


def _counterexample(run: _Run, m: Mismatch[Evaluation], note: RoundoffNote | None) -> Counterexample:
    ev, ref = m.evaluation, m.reference
    return Counterexample(
        logits=ev.logits.copy(),
        scores=ev.scores.copy(),
        k=ev.k,
        expectation=ev.mean,
        gradient=ev.gradient,
        multiple=m.multiple,
        residual=m.residual,
        reference_multiple=ref.multiple,
        reference_logits=ref.evaluation.logits.copy(),
        reference_scores=ref.evaluation.scores.copy(),
        discrepancy=m.discrepancy,
        tolerance=m.allowed,
        reason=m.reason,
        found_by=run.found_by if ev.source in ("battery", "hypothesis") else f"{run.found_by} ({ev.source})",
        roundoff=note,
        num_prompts=ev.num_prompts if isinstance(ev, PromptsEvaluation) else None,
    )


def _make_report(name: str, run: _Run, start: float) -> EstimatorReport:
    decision = _decide(run)
    verdict: Verdict = decision.verdict
    cex = None
    error = run.error
    if verdict == "biased":
        assert run.mismatch is not None
        cex = _counterexample(run, run.mismatch, _roundoff_note(run, run.mismatch))
    if verdict == "error" and error is None:
        error = run.imprecise_error(decision.imprecise)
    scale = _keyed(decision.scale)
    unc = _keyed(decision.uncertainty)
    seconds = time.perf_counter() - start
    inside = run.guard.user_seconds
    timing = {
        "battery": run.clock["battery"],
        "hypothesis": run.clock["hypothesis"],
        "estimator": inside,
        "evaluation": run.clock["evaluation"],
        "judging": run.clock["judging"],
        "generation": run.clock["generation"],
    }
    timing["other"] = max(
        seconds - sum(timing[k] for k in ("estimator", "evaluation", "judging", "generation")), 0.0
    )
    report = EstimatorReport(
        name=name,
        verdict=verdict,
        scale=scale,
        scale_uncertainty=unc,
        counterexample=cex,
        error=error,
        group_sizes=run.ks,
        seed=run.seed,
        max_examples=run.max_examples,
        batched=run.batched,
        problems_checked=run.problems,
        estimator_calls=run.guard.calls,
        estimator_seconds=inside,
        seconds=seconds,
        message="",
        region=run.region.region(),
        protocol="one-step",
        timing=timing,
        num_prompts=run.prompts,
    )
    object.__setattr__(report, "message", _message(report))
    return report


# --------------------------------------------------------------------------- messages


_MAX_SHOWN = 24
"""Batches with more entries than this are described, not printed, in messages."""


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
        "  from properties.checker import expectation_of\n"
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


def _scales_text(scale: Mapping[Any, float]) -> str:
    hints = _hints(scale, {k: 0.0 for k in scale})
    text = ", ".join(f"{_c(k)} = {c:.6g}" for k, c in scale.items())
    named = sorted(set(hints.values()))
    return text + (f" ({'; '.join(named)})" if named else "")


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
    if report.verdict == "unbiased":
        return (
            f"{head} is UNBIASED: E[g] = grad J{target} exactly (to round-off) on every problem "
            f"checked: {checked}.\n{region}"
        )
    if report.verdict == "scaled":
        assert report.scale is not None and report.scale_uncertainty is not None
        per = "group size" if report.num_prompts is None else "(k, P)"
        lines = [
            f"{head} is SCALED: E[g] = c grad J{target} with a fixed c > 0 per {per}, on every "
            f"problem checked ({checked}):"
        ]
        hints = _hints(report.scale, report.scale_uncertainty)
        for k, c in report.scale.items():
            unc = report.scale_uncertainty[k]
            hint = f" = {hints[k]}" if k in hints else ""
            name = "c" if isinstance(k, tuple) else "c_k"
            lines.append(f"  {key_text(k)}: {name} = {c:.12g} (+- {unc:.1g}){hint}")
        cname = _constant_name(report)
        lines.append(
            f"It ascends J, but its step is rescaled by {cname}; it is not an unbiased estimate "
            f"of grad J. Divide by {cname} (or fix the baseline) to make it unbiased."
        )
        lines.append(region)
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


def _cex_key(cex: Counterexample) -> Any:
    return cex.k if cex.num_prompts is None else (cex.k, cex.num_prompts)


# --------------------------------------------------------------------------- helpers


def expectation_of(
    fn: Callable[..., Any],
    logits: Any,
    scores: Any,
    k: int,
    *,
    batched: bool = False,
    num_prompts: int | None = None,
) -> tuple[FloatArray, FloatArray]:
    r"""The exact :math:`(E[g], \nabla J)` of ``fn`` on one problem: the reproduction helper.

    Misbehaviour of ``fn`` raises :class:`impl.errors.InvalidArgument` naming it.  With
    ``num_prompts`` ``P`` (the multi-prompt protocol of :func:`check_estimator`), ``logits``
    and ``scores`` are ``(P, n)`` (row ``p``: prompt ``p``'s problem) and so are both
    results, the gradient being :math:`\nabla J_p / P` (the mean objective over prompts).

    >>> from impl.estimators import group_mean_baseline
    >>> E, G = expectation_of(group_mean_baseline, [0.0, 0.0], [0.0, 1.0], k=2, batched=True)
    >>> E.tolist(), G.tolist()
    ([-0.125, 0.125], [-0.25, 0.25])
    >>> from impl.catalogue import get_multi_prompt
    >>> E, G = expectation_of(get_multi_prompt("pooled-reinforce-sum").fn, [[0.0, 0.0], [0.0, 0.0]],
    ...                       [[0.0, 1.0], [0.0, 2.0]], k=1, num_prompts=2)
    >>> E.tolist(), G.tolist()
    ([[-0.25, 0.25], [-0.5, 0.5]], [[-0.125, 0.125], [-0.25, 0.25]])
    """
    from impl._validate import float_vector, positive_int

    if num_prompts is not None:
        return _expectation_of_prompts(fn, logits, scores, k, batched, num_prompts)
    theta = float_vector(logits, "logits", min_size=2)
    s = float_vector(scores, "scores", min_size=2)
    if s.size != theta.size:
        raise InvalidArgument(f"logits and scores must have the same length but got {describe('scores', scores)}")
    k = positive_int(k, "k")
    if not isinstance(batched, bool):
        raise InvalidArgument(f"Expected batched=True or False but got {describe('batched', batched)}")
    guard = GuardedEstimator(fn, batched=batched)
    try:
        ev = evaluate(guard, theta, s, k, rtol=None, atol=0.0)
    except EstimatorFault as fault:
        raise InvalidArgument(f"the estimator misbehaved: {fault}") from None
    return ev.mean, ev.gradient


def _expectation_of_prompts(
    fn: Callable[..., Any], logits: Any, scores: Any, k: Any, batched: Any, num_prompts: Any
) -> tuple[FloatArray, FloatArray]:
    from impl._validate import positive_int

    if batched is not False:
        raise InvalidArgument(
            f"batched=True and num_prompts cannot be combined but got {describe('batched', batched)}"
        )
    if (
        isinstance(num_prompts, bool)
        or not isinstance(num_prompts, int | np.integer)
        or not 1 <= num_prompts <= MAX_NUM_PROMPTS
    ):
        raise InvalidArgument(
            f"Expected an integer 1 <= num_prompts <= {MAX_NUM_PROMPTS} but got "
            f"{describe('num_prompts', num_prompts)}"
        )
    k = positive_int(k, "k")
    arrays = []
    for label, value in (("logits", logits), ("scores", scores)):
        try:
            a = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidArgument(f"Expected a (P, n) float array but got {describe(label, value)}") from None
        if a.ndim != 2 or a.shape[0] != num_prompts or a.shape[1] < 2 or not np.all(np.isfinite(a)):
            raise InvalidArgument(
                f"Expected a finite (P, n) array with P={num_prompts} rows and n >= 2 but got "
                f"{describe(label, value)}"
            )
        arrays.append(a)
    theta, s = arrays
    if theta.shape != s.shape:
        raise InvalidArgument(f"logits and scores must have the same shape but got {describe('scores', scores)}")
    if k * num_prompts > MAX_SAMPLES_PER_BATCH or theta.shape[1] ** (k * num_prompts) > 10**6:
        raise InvalidArgument(
            f"Expected n**(k*P) <= 1e6 joint batches and k*P <= {MAX_SAMPLES_PER_BATCH} but got "
            f"n={theta.shape[1]}, k={k}, {describe('num_prompts', num_prompts)}"
        )
    guard = PromptsGuard(fn)
    try:
        ev = evaluate_prompts(guard, theta, s, k, rtol=None, atol=0.0)
    except EstimatorFault as fault:
        raise InvalidArgument(f"the estimator misbehaved: {fault}") from None
    return ev.mean, ev.gradient


def _report_or_check(fn: Any, kwargs: dict[str, Any], who: str) -> EstimatorReport:
    if isinstance(fn, EstimatorReport):
        if kwargs:
            raise InvalidArgument(
                f"{who} got a finished EstimatorReport and check options {sorted(kwargs)}; pass "
                "either a report or an estimator with its options"
            )
        return fn
    return check_estimator(fn, **kwargs)


def assert_unbiased(fn: Callable[..., Any] | EstimatorReport, **kwargs: Any) -> EstimatorReport:
    """:func:`check_estimator` (or a finished report), raising :class:`EstimatorCheckFailure` unless ``"unbiased"``.

    >>> from impl.estimators import group_mean_baseline
    >>> assert_unbiased(group_mean_baseline, batched=True, max_examples=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    properties.checker.EstimatorCheckFailure: expected unbiased, but Estimator 'group_mean_baseline' is SCALED: ...
    """
    report = _report_or_check(fn, kwargs, "assert_unbiased")
    if report.verdict != "unbiased":
        raise EstimatorCheckFailure(report, "unbiased")
    return report


def assert_scaled(
    fn: Callable[..., Any] | EstimatorReport,
    scale: Mapping[Any, float] | Callable[..., float] | None = None,
    **kwargs: Any,
) -> EstimatorReport:
    """:func:`check_estimator` (or a finished report), raising :class:`EstimatorCheckFailure` unless ``"scaled"``.

    With ``scale`` (``{k: c_k}`` or ``k -> c_k``), also require the measured :math:`c_k`
    to equal it within the measurement's uncertainty; for a check with ``num_prompts``
    ``scale`` is ``{(k, P): c}`` or ``(k, P) -> c``.

    >>> from impl.estimators import group_mean_baseline
    >>> r = assert_scaled(group_mean_baseline, lambda k: (k - 1) / k, batched=True, max_examples=0)
    >>> r.verdict
    'scaled'
    """
    report = _report_or_check(fn, kwargs, "assert_scaled")
    if report.verdict != "scaled":
        raise EstimatorCheckFailure(report, "scaled")
    if scale is not None:
        assert report.scale is not None and report.scale_uncertainty is not None
        for k, c in report.scale.items():
            if callable(scale):
                want = float(scale(*k) if isinstance(k, tuple) else scale(k))
            else:
                want = float(scale[k])
            allowed = (
                SCALE_MATCH_UNCERTAINTIES * report.scale_uncertainty[k]
                + SCALE_MATCH_REL * abs(want)
            )
            if abs(c - want) > allowed:
                raise EstimatorCheckFailure(
                    report, f"scaled with {_c(k)} = {want!r} (measured {c!r}, allowed +- {allowed:.2g})"
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

    estimator.__name__ = f"from_torch_surrogate({name_of(loss_fn)})"
    return estimator


__all__ = [
    "DEFAULT_GROUP_SIZES",
    "DEFAULT_MAX_EXAMPLES",
    "ERROR_KINDS",
    "MAX_GROUP_SIZE",
    "ROUNDOFF_NOTE_ULPS",
    "SCALE_MATCH_REL",
    "SCALE_MATCH_UNCERTAINTIES",
    "CheckedRegion",
    "Counterexample",
    "EstimatorCheckFailure",
    "EstimatorError",
    "EstimatorReport",
    "RoundoffNote",
    "Verdict",
    "assert_scaled",
    "assert_unbiased",
    "check_estimator",
    "expectation_of",
    "from_torch_surrogate",
]
