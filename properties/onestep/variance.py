r"""Exact variance and mean squared error of a one-step estimator, by enumeration.

On a problem :math:`(\theta, s, k)` the estimate :math:`g(x)` is a function of the group
:math:`x \in D^k`, drawn with probability :math:`w_x = \prod_j p_{x_j}`; the exact engine
(:func:`properties.onestep.problems.evaluate`) already holds :math:`g(x)` and :math:`w_x`
for every group.  Here:

* the **variance** (the trace of the covariance matrix)

  .. math::

      \operatorname{Var}[g] = \operatorname{tr}\operatorname{Cov}[g]
      = E|g|^2 - |E g|^2 = \sum_x w_x\,|g(x) - E g|^2,

  computed in the last form (two passes: a sum of non-negative terms, so no cancellation
  can make it negative);
* the **bias** :math:`b = E g - \nabla J` and the **mean squared error**
  :math:`E|g - \nabla J|^2 = |b|^2 + \operatorname{Var}[g]`, so that a small bias bought
  with a large variance reduction can be judged.

Closed forms these match (``tests/test_variance.py`` derives and checks them), with
:math:`a(x) = e_x - p` the score function, :math:`G = \nabla J`, :math:`u = s - J`,
:math:`\sigma^2 = \operatorname{Var}[s]` and :math:`A = E|a|^2 = 1 - |p|^2`:

* REINFORCE with a constant baseline :math:`\beta` (plain REINFORCE: :math:`\beta = 0`):
  :math:`\frac1k\big(E[(s-\beta)^2|a|^2] - |G|^2\big)`; on two answers with
  :math:`q = p_1` this is :math:`2q(1-q)(\beta - \beta^*)^2/k`, with
  :math:`\beta^* = q s_0 + (1-q) s_1`;
* leave-one-out (RLOO):
  :math:`\frac1k\big(E[u^2|a|^2] - |G|^2\big) + \frac{\sigma^2 A + |G|^2}{k(k-1)}`;
* the self-inclusive group mean is :math:`\frac{k-1}{k}` times RLOO, so its variance is
  :math:`(\frac{k-1}{k})^2` times RLOO's and its bias is :math:`-G/k`.

>>> from impl.estimators import reinforce
>>> from properties.onestep.guard import GuardedEstimator
>>> from properties.onestep.problems import evaluate
>>> ev = evaluate(GuardedEstimator(reinforce, batched=True), np.zeros(2),
...               np.array([0.0, 1.0]), 2, rtol=None, atol=0.0)
>>> m = moments(ev)
>>> m.variance, m.bias_squared  # 2 q (1-q) (q s_0 + (1-q) s_1)^2 / k = 2/4 * 1/4 / 2
(0.0625, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from impl.types import FloatArray
from properties.judging.seam import wrap_guard
from properties.onestep.guard import EPS64, GuardedEstimator
from properties.onestep.problems import Evaluation, evaluate, max_n_for

DEFAULT_NUM_PROBLEMS = 8
"""Problems in the default comparison set (:func:`comparison_problems`)."""

COMPARISON_N = (2, 3, 4, 5)
"""The answer-set sizes of the comparison problems, in turn (``n`` above
:func:`~properties.onestep.problems.max_n_for` of a ``k`` is left out at that ``k``)."""

VARIANCE_FLOOR_REL = (1024.0 * EPS64) ** 2
r"""A reference variance at most this times :math:`E|g|^2` is indistinguishable from zero.

Each difference :math:`g(x) - E g` is off by about :math:`\epsilon_{64}|g(x)|`, so a
variance computed as zero may come out as :math:`\sim\epsilon_{64}^2 E|g|^2`; this floor
leaves a thousand-fold margin per difference.  A ratio to such a variance means nothing,
so that problem is left out of the ratio (and counted as left out)."""


@dataclass(frozen=True)
class Moments:
    r"""Exact moments of an estimator on one problem and group size.

    ``variance`` is :math:`\operatorname{tr}\operatorname{Cov}[g]`, ``bias_squared`` is
    :math:`|E g - \nabla J|^2`, ``second_moment`` is :math:`E|g|^2` and
    ``gradient_squared`` is :math:`|\nabla J|^2`.

    >>> Moments(variance=0.5, bias_squared=0.25, second_moment=1.0, gradient_squared=1.0).mse
    0.75
    """

    variance: float
    bias_squared: float
    second_moment: float
    gradient_squared: float

    @property
    def mse(self) -> float:
        r"""The mean squared error :math:`E|g - \nabla J|^2 = |b|^2 + \operatorname{Var}[g]`."""
        return self.bias_squared + self.variance

    def to_dict(self) -> dict[str, float]:
        """Plain JSON-serialisable fields (``mse`` included)."""
        return {
            "variance": self.variance,
            "bias_squared": self.bias_squared,
            "mse": self.mse,
            "second_moment": self.second_moment,
            "gradient_squared": self.gradient_squared,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Moments:
        """The inverse of :meth:`to_dict` (raises ``ValueError`` on anything else).

        >>> Moments.from_dict(Moments(1.0, 0.0, 2.0, 1.0).to_dict())
        Moments(variance=1.0, bias_squared=0.0, second_moment=2.0, gradient_squared=1.0)
        """
        try:
            values = [float(data[f]) for f in _FIELDS]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"not a Moments dict: {str(data)[:80]!r}") from None
        if not all(math.isfinite(v) and v >= 0.0 for v in values):
            raise ValueError(f"Moments must be finite and >= 0 but got {values!r}")
        return cls(*values)


_FIELDS = ("variance", "bias_squared", "second_moment", "gradient_squared")


def covariance_trace(weights: FloatArray, g: FloatArray, mean: FloatArray) -> float:
    r""":math:`\sum_x w_x |g(x) - \mu|^2` for the rows ``g`` (``(B, n)``) with weights ``w``.

    >>> covariance_trace(np.array([0.5, 0.5]), np.array([[1.0, 0.0], [-1.0, 0.0]]), np.zeros(2))
    1.0
    """
    centred = g - mean
    return float(weights @ np.einsum("ij,ij->i", centred, centred))


def moments(ev: Evaluation) -> Moments:
    """The exact :class:`Moments` of the estimator evaluated in ``ev``."""
    bias = ev.mean - ev.gradient
    return Moments(
        variance=covariance_trace(ev.weights, ev.g, ev.mean),
        bias_squared=float(bias @ bias),
        second_moment=float(ev.weights @ np.einsum("ij,ij->i", ev.g, ev.g)),
        gradient_squared=float(ev.gradient @ ev.gradient),
    )


@dataclass(frozen=True)
class ComparisonProblem:
    """One problem of a comparison: ``logits`` and ``scores`` (float64, one length ``n``)."""

    logits: FloatArray
    scores: FloatArray

    @property
    def n(self) -> int:
        """The number of answers."""
        return int(self.logits.size)

    def to_list(self) -> list[list[float]]:
        """``[logits, scores]`` as plain lists."""
        return [self.logits.tolist(), self.scores.tolist()]


def comparison_problems(
    count: int = DEFAULT_NUM_PROBLEMS, seed: int = 0
) -> tuple[ComparisonProblem, ...]:
    r"""A fixed, seeded set of ``count`` problems: the default ground of a comparison.

    Problem ``i`` has :math:`n` = ``COMPARISON_N[i % 4]`` answers, logits drawn from
    :math:`N(0, 1)` and rewards from :math:`U[0, 1]` (non-negative rewards, as in most RL
    setups: the case baselines are made for), both rounded to 3 decimals, from
    ``np.random.default_rng(seed)``.

    >>> [p.n for p in comparison_problems(5)]
    [2, 3, 4, 5, 2]
    >>> comparison_problems(1)[0].scores.tolist() == comparison_problems(1)[0].scores.tolist()
    True
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        n = COMPARISON_N[i % len(COMPARISON_N)]
        logits = np.round(rng.normal(size=n), 3)
        scores = np.round(rng.uniform(size=n), 3)
        out.append(ComparisonProblem(logits, scores))
    return tuple(out)


def as_problems(problems: Iterable[Any]) -> tuple[ComparisonProblem, ...]:
    """``(logits, scores)`` pairs (or :class:`ComparisonProblem`) as validated problems.

    Raises ``ValueError`` naming the first bad one.

    >>> as_problems([([0.0, 0.0], [0.0, 1.0])])[0].n
    2
    """
    out = []
    for i, item in enumerate(problems):
        if isinstance(item, ComparisonProblem):
            item = (item.logits, item.scores)
        try:
            logits, scores = (np.array(v, dtype=np.float64) for v in item)
        except (TypeError, ValueError):
            raise ValueError(f"problem {i} is not a pair (logits, scores) of float vectors") from None
        if (
            logits.ndim != 1
            or logits.shape != scores.shape
            or logits.size < 2
            or not (np.all(np.isfinite(logits)) and np.all(np.isfinite(scores)))
        ):
            raise ValueError(
                f"problem {i} must have finite logits and scores of one length n >= 2 but got "
                f"shapes {logits.shape} and {scores.shape}"
            )
        out.append(ComparisonProblem(logits, scores))
    if not out:
        raise ValueError("at least one problem is needed")
    return tuple(out)


def problems_at(problems: Sequence[ComparisonProblem], k: int) -> tuple[ComparisonProblem, ...]:
    """The problems small enough to enumerate at ``k`` (``n <= max_n_for(k)``).

    >>> [p.n for p in problems_at(comparison_problems(4), 6)]
    [2, 3, 4]
    """
    return tuple(p for p in problems if p.n <= max_n_for(k))


def estimator_moments(
    fn: Callable[..., Any],
    problems: Sequence[ComparisonProblem],
    group_sizes: Sequence[int],
    *,
    batched: bool,
) -> dict[int, tuple[Moments, ...]]:
    """Exact :class:`Moments` of ``fn`` on every problem at every ``k`` (those of :func:`problems_at`).

    Every problem is evaluated twice, and a batched ``fn`` also on shuffled rows and
    sub-batches: a variance of an estimator that is not a deterministic function of its
    own group would mean nothing.  Raises :class:`properties.onestep.guard.EstimatorFault`
    when ``fn`` misbehaves (kind ``nondeterministic`` for that).

    >>> from impl.estimators import reinforce
    >>> m = estimator_moments(reinforce, comparison_problems(2), (2,), batched=True)
    >>> len(m[2]), all(x.bias_squared < 1e-30 for x in m[2])
    (2, True)
    """
    # through the seam, so that the command line's parent can re-run this on the child's record
    guard = wrap_guard(GuardedEstimator(fn, batched=batched))
    out: dict[int, tuple[Moments, ...]] = {}
    for k in group_sizes:
        out[k] = tuple(
            moments(
                evaluate(
                    guard, p.logits, p.scores, k, rtol=None, atol=0.0,
                    check_determinism=True, check_rows=batched,
                )
            )
            for p in problems_at(problems, k)
        )
    return out


@dataclass(frozen=True)
class Ratio:
    """A ratio aggregated over problems: ``value`` (``None`` when no problem counted),
    ``used`` problems counted and ``skipped`` problems left out (reference variance zero)."""

    value: float | None
    used: int
    skipped: int


def geometric_mean_ratio(
    values: Sequence[float], references: Sequence[Moments], *, of: str = "variance"
) -> Ratio:
    r"""The geometric mean over problems of ``values[i] / references[i].<of>``.

    ``of`` is ``"variance"`` or ``"mse"``.  A problem whose reference variance is at most
    :data:`VARIANCE_FLOOR_REL` times its :math:`E|g|^2` is left out (a ratio to a zero
    variance means nothing); a zero value makes the mean 0.  The geometric mean is the one
    mean of ratios that does not depend on which estimator is on top (the mean of
    :math:`r` is the inverse of the mean of :math:`1/r`).

    >>> ref = [Moments(1.0, 0.0, 1.0, 1.0), Moments(4.0, 0.0, 4.0, 1.0), Moments(0.0, 0.0, 1.0, 1.0)]
    >>> geometric_mean_ratio([2.0, 2.0, 5.0], ref)
    Ratio(value=1.0, used=2, skipped=1)
    """
    logs: list[float] = []
    zero = False
    skipped = 0
    for value, ref in zip(values, references, strict=True):
        if ref.variance <= VARIANCE_FLOOR_REL * ref.second_moment:
            skipped += 1
            continue
        denominator = ref.variance if of == "variance" else ref.mse
        if value <= 0.0:
            zero = True
            logs.append(0.0)
        else:
            logs.append(math.log(value / denominator))
    if not logs:
        return Ratio(None, 0, skipped)
    return Ratio(0.0 if zero else math.exp(math.fsum(logs) / len(logs)), len(logs), skipped)


__all__ = [
    "COMPARISON_N",
    "DEFAULT_NUM_PROBLEMS",
    "VARIANCE_FLOOR_REL",
    "ComparisonProblem",
    "Moments",
    "Ratio",
    "as_problems",
    "comparison_problems",
    "covariance_trace",
    "estimator_moments",
    "geometric_mean_ratio",
    "moments",
    "problems_at",
]
