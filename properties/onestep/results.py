"""What a one-step check returns: the report, its counterexample, error and region.

The sequence checker (:mod:`properties.sequence`) extends these classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from impl.types import FloatArray
from properties.judging.verdict import (
    Verdict,
)
from properties.onestep.guard import (
    EPS64,
    FAULT_KINDS,
)
from properties.onestep.prompts import (
    key_text,
)

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


@dataclass(frozen=True)
class ScaleNote:
    """A ``scaled`` verdict whose every :math:`c` lies within a few of a coarser dtype's epsilons of a simple value.

    Keyed by the message's key text (``"k=3"``, ``"k=3, T=1, P=1, V=2"``): ``values`` names
    the value :math:`v` each :math:`c` rounds to (``"1"``, or a known scale formula such as
    ``"(k-1)/k"``), and ``departure`` gives :math:`c/v - 1`; ``dtype``/``epsilon`` the
    coarser dtype whose epsilons explain every departure (a constant stored in it:
    ``float32(1/3) = (1/3)(1 + 2.98e-8)``, or one step computed in it).
    ``rtol``/``atol``/``verdict``/``scale`` are what a second full run concludes at that
    dtype's round-off; the report's verdict itself stays strict.
    """

    dtype: str
    epsilon: float
    values: dict[str, str]
    departure: dict[str, float]
    rtol: float
    atol: float
    verdict: str
    scale: dict[str, float] | None
    inside: str = "the estimator"
    """What the constant or step would be inside (the message's words)."""

    def text(self) -> str:
        """The message's note: the largest departure, the suspected cause, the verdict at that precision.

        >>> text = ScaleNote("float32", 2.0**-23, {"k=3": "1"}, {"k=3": 2.98e-8},
        ...                  2e-05, 0.0, "unbiased", {"k=3": 1.0}).text()
        >>> text[:78]
        'Note: every c is within 0.25 float32 epsilons (1.2e-07) of a simple value (lar'
        >>> text[text.index("c = "):].split("):")[0], text.split("? ")[1][:48]
        ('c = 1 * (1 + 3e-08) at k=3', 'At float32 precision (rtol=2e-05, atol=0) the ve')
        """
        key = max(self.departure, key=lambda k: abs(self.departure[k]))
        delta = self.departure[key]
        return (
            f"Note: every c is within {abs(delta) / self.epsilon:.2g} {self.dtype} epsilons "
            f"({self.epsilon:.2g}) of a simple value (largest: c = {self.values[key]} * (1 {'+-'[delta < 0]} "
            f"{abs(delta):.2g}) at {key}): a {self.dtype} constant or step inside {self.inside}? "
            f"At {self.dtype} precision (rtol={self.rtol:g}, atol={self.atol:g}) the verdict is "
            f"{self.verdict.upper()}; confirm with rtol={self.rtol:g}, atol={self.atol:g}."
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return {
            "dtype": self.dtype,
            "epsilon": self.epsilon,
            "values": dict(self.values),
            "departure": dict(self.departure),
            "rtol": self.rtol,
            "atol": self.atol,
            "verdict": self.verdict,
            "scale": None if self.scale is None else dict(self.scale),
        }


@dataclass(frozen=True)
class RangeNote:
    """A counterexample whose scores lie outside float32's (and bfloat16's) normal range.

    ``largest`` is its largest ``|score|``, ``direction`` ``"underflows"`` (below the
    smallest normal number: float32 flushes such scores to zero) or ``"overflows"``, and
    ``dtype`` the working dtype whose range that is (:data:`properties.judging.verdict.RANGE_DTYPE`).
    ``verdict``/``scale`` (with its uncertainty) are what the checker concludes at
    representable magnitudes: a
    second full run in which every problem whose scores lie outside that range is first
    rescaled into it by a power of two.  The report's verdict itself stays strict.
    """

    largest: float
    direction: str
    dtype: str
    verdict: Verdict
    scale: dict[Any, float] | None
    scale_uncertainty: dict[Any, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return {
            "largest": self.largest,
            "direction": self.direction,
            "dtype": self.dtype,
            "verdict": self.verdict,
            "scale": None if self.scale is None else {_key_str(k): c for k, c in self.scale.items()},
            "scale_uncertainty": None
            if self.scale_uncertainty is None
            else {_key_str(k): c for k, c in self.scale_uncertainty.items()},
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
    ``roundoff`` is set when the discrepancy is within a coarser dtype's round-off, and
    ``out_of_range`` when the scores lie outside float32's normal range (in ``to_dict``
    only when set).
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
    out_of_range: RangeNote | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields (``num_prompts`` only in the multi-prompt protocol)."""
        out: dict[str, Any] = {
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
        if self.out_of_range is not None:
            out["out_of_range"] = self.out_of_range.to_dict()
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

    ``partial`` is ``True`` when a passing verdict (``unbiased``/``scaled``) covers less
    than was asked: ``unchecked`` then lists what was not checked, each entry with its
    reason (e.g. the call budget capped ``n`` for a ``(k, P)``).  A partial pass is no
    pass: ``ok`` is ``False``, :func:`assert_unbiased`/:func:`assert_scaled` fail unless
    given ``allow_partial=True``, and the command line exits 1.  Both fields are in
    ``to_dict`` only when ``partial``.
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
    partial: bool = False
    unchecked: tuple[str, ...] = ()
    scale_note: ScaleNote | None = None
    """For a ``scaled`` verdict whose scales are a coarser dtype's rounding of simple values
    (:class:`ScaleNote`); in ``to_dict`` only when set."""

    @property
    def ok(self) -> bool:
        """``True`` iff the verdict is ``"unbiased"`` on all that was asked (not ``partial``)."""
        return self.verdict == "unbiased" and not self.partial

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields (``json.dumps(report.to_dict())`` works)."""
        out: dict[str, Any] = {
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
        if self.partial:
            out["partial"] = True
            out["unchecked"] = list(self.unchecked)
        if self.scale_note is not None:
            out["scale_note"] = self.scale_note.to_dict()
        return out

    def to_json(self) -> str:
        """``to_dict()`` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)


class EstimatorCheckFailure(AssertionError):
    """Raised by :func:`assert_unbiased` / :func:`assert_scaled`; ``str`` is the report."""

    def __init__(self, report: EstimatorReport, expected: str) -> None:
        super().__init__(f"expected {expected}, but {report.message}")
        self.report = report
