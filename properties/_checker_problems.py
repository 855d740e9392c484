r"""Problems, exact evaluation and tolerances for :mod:`properties.checker` (private).

:func:`evaluate` computes, for one problem ``(theta, s, k)``, the exact
:math:`E[g] = \sum_{x\in D^k} \big(\prod_j p_{x_j}\big)\, g(\theta, x, s(x))` with one
batched call, the true gradient :math:`G = \nabla J`, and a per-coordinate round-off
tolerance derived from the output dtype and the size of the inputs.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from impl.exact import group_probs
from impl.types import FloatArray
from properties._checker_guard import EPS64, GuardedEstimator, all_groups
from properties.strategies import PolicyProblem, policy_problems

ROUNDOFF_SAFETY = 32.0
r"""Safety factor on the round-off bound.

The bound per coordinate :math:`i` is

.. math::

    \tau_i = F\,k\,\Big[\epsilon_{64}\,L\,A_i + \epsilon_{out}\big(A_i + S\,(2p_i + 1)\big)\Big]

with :math:`F` this factor, :math:`A_i = E|g_i|` (the size of the summed terms),
:math:`S = \max(\max_x |s(x)|, \max_{x\in D^k} \|g(x)\|_\infty)` (the size of the
intermediate rewards and baselines, which may cancel inside :math:`g`: at
:math:`p_i \approx 1`, :math:`(e_x - p)_i = 1 - p_i` is exact only to :math:`\epsilon`
absolutely, and so is a :math:`p_i` computed as one minus the others: hence the
absolute term :math:`S\,\epsilon_{out}` on every coordinate),
:math:`L = 1 + k\max_x|\log p_x|` (a bound on the relative error of group
probabilities :math:`\prod_j p_{x_j}`, whether an estimator forms them as products or
as :math:`\exp\sum\log p`),
:math:`\epsilon_{64}` float64's epsilon and :math:`\epsilon_{out}` the epsilon of the
estimator's output dtype.  A correct float64 estimator sits well inside it (no false
alarm on the catalogue's correct entries over 20 seeds, ``benchmarks/bench_checker.py``); a bias of
one part in a million of :math:`|G|` sits orders of magnitude outside it.
"""

REFERENCE_MIN_SIGNAL = 100.0
"""A problem serves as the scale reference for ``k`` only if ``|G| > REFERENCE_MIN_SIGNAL * |tol|``."""

MAX_GROUPS_PER_PROBLEM = 4096
"""Largest ``n**k`` enumerated for one problem (``n`` is capped per ``k`` to stay under it)."""

MAX_N = 5
"""Largest answer set generated (``n <= 5`` keeps ``n**k`` small for ``k <= 4``)."""


class Evaluation:
    """The exact expectation of the estimator on one problem; its tolerance on demand.

    ``floor`` is a lower bound on every coordinate of ``tolerance`` (its constant
    part), so that ``max|E - c G| <= floor`` settles a check without computing the rest.
    """

    __slots__ = (
        "_g",
        "_tolerance",
        "atol",
        "eps_out",
        "gradient",
        "k",
        "logits",
        "mean",
        "p",
        "rtol",
        "scores",
        "weights",
    )

    def __init__(
        self,
        logits: FloatArray,
        scores: FloatArray,
        k: int,
        mean: FloatArray,
        gradient: FloatArray,
        p: FloatArray,
        weights: FloatArray,
        g: FloatArray,
        eps_out: float,
        rtol: float | None,
        atol: float,
    ) -> None:
        self.logits, self.scores, self.k = logits, scores, k
        self.mean, self.gradient, self.p, self.weights = mean, gradient, p, weights
        self._g, self.eps_out, self.rtol, self.atol = g, eps_out, rtol, atol
        self._tolerance: FloatArray | None = None

    @property
    def floor(self) -> float:
        """The constant part of the tolerance, using ``max|s|`` only."""
        size = max(float(_max(self.scores)), -float(_min(self.scores)))
        if self.rtol is not None:
            return self.rtol * size + self.atol
        return (
            ROUNDOFF_SAFETY * self.k * self.eps_out * size
            + self.atol
            + ROUNDOFF_SAFETY * _TINY.get(self.eps_out, _TINY[EPS64])
        )

    @property
    def magnitude(self) -> FloatArray:
        """:math:`E|g|` per coordinate."""
        out: FloatArray = self.weights @ np.abs(self._g)
        return out

    @property
    def tolerance(self) -> FloatArray:
        """The per-coordinate round-off tolerance :math:`\tau` (computed once, on demand)."""
        if self._tolerance is None:
            absg = np.abs(self._g)
            largest = float(_max(absg, axis=None)) if absg.size else 0.0
            self._tolerance = tolerance(
                self.p,
                self.scores,
                self.k,
                self.weights @ absg,
                largest,
                self.eps_out,
                rtol=self.rtol,
                atol=self.atol,
            )
        return self._tolerance


def tolerance(
    p: FloatArray,
    scores: FloatArray,
    k: int,
    magnitude: FloatArray,
    largest: float,
    eps_out: float,
    *,
    rtol: float | None,
    atol: float,
) -> FloatArray:
    """The per-coordinate tolerance (see :data:`ROUNDOFF_SAFETY`), or the user's override.

    ``p`` is the policy, ``magnitude`` is :math:`E|g|` and ``largest`` the largest
    :math:`|g_i|` over all groups.

    >>> t = tolerance(np.array([0.5, 0.5]), np.array([0.0, 1.0]), 2, np.array([0.25, 0.25]),
    ...               0.5, EPS64, rtol=None, atol=0.0)
    >>> bool(np.all(t < 1e-12)), bool(np.all(t > 1e-15))
    (True, True)
    """
    # Written as a1 * A + b2 * p + b0 with scalar coefficients: this runs once per
    # problem on the hot path, so it avoids every temporary it can.
    size = max(float(_max(scores)), -float(_min(scores)), largest)
    if rtol is not None:
        a1, b = rtol, rtol * size
        b0 = b + atol
    else:
        spread = 1.0 - k * math.log(float(_min(p)))
        factor = ROUNDOFF_SAFETY * k
        a1 = factor * (EPS64 * spread + eps_out)
        b = factor * eps_out * size
        # below the output dtype's smallest normal number relative round-off no longer
        # holds (a float32 estimator returns 0 for a score of 1e-100)
        b0 = b + atol + ROUNDOFF_SAFETY * _TINY.get(eps_out, _TINY[EPS64])
    out: FloatArray = magnitude * a1
    out += p * (2.0 * b)
    out += b0
    return out


_sum, _max, _min = np.add.reduce, np.maximum.reduce, np.minimum.reduce

_TINY = {
    float(np.finfo(t).eps): float(np.finfo(t).tiny) for t in (np.float16, np.float32, np.float64)
}


def evaluate(
    guard: GuardedEstimator,
    theta: FloatArray,
    scores: FloatArray,
    k: int,
    *,
    rtol: float | None,
    atol: float,
    check_determinism: bool = False,
) -> Evaluation:
    r"""Exact ``E[g]`` over all ``n**k`` groups with one batched call through ``guard``.

    ``theta`` and ``scores`` must be finite float64 vectors of one length (the checker
    builds them); this is the hot path, so it does not re-validate them.

    >>> from impl.estimators import reinforce
    >>> ev = evaluate(GuardedEstimator(reinforce, batched=True), np.zeros(2),
    ...               np.array([0.0, 1.0]), 2, rtol=None, atol=0.0)
    >>> ev.mean.tolist(), ev.gradient.tolist()
    ([-0.25, 0.25], [-0.25, 0.25])
    """
    x = all_groups(theta.size, k)
    top = int(theta.argmax())
    e = np.exp(theta - theta[top])
    p = e / _sum(e)
    # group probabilities prod_j p_{x_j}: relative error <= k eps (|log p| <= 64 here).
    # The groups are in lexicographic order, so the weights are the k-fold outer product
    # of p, raveled: no (n**k, k) temporary (which also kept the estimator's own
    # temporaries off glibc's mmap path, measured 3x faster at n=8, k=4).
    weights = group_probs(p, k)
    rewards = scores[x]
    rewards.setflags(write=False)
    logits = theta.copy()
    logits.setflags(write=False)
    g, eps = guard(logits, x, rewards)
    mean = weights @ g
    if not math.isfinite(float(_sum(mean))):  # NaN and inf in any group reach the sum
        raise guard.non_finite(g, logits, x, rewards)
    if check_determinism:
        guard.check_deterministic(logits, x, rewards, g, eps)
    # grad J = p (s - J), with s shifted by the score of the most probable answer so that
    # s_i - J keeps its relative precision when that answer holds almost all the mass
    centred = scores - scores[top]
    gradient = p * (centred - p @ centred)
    return Evaluation(theta, scores, k, mean, gradient, p, weights, g, eps, rtol, atol)


def max_n_for(k: int) -> int:
    """The largest ``n <= MAX_N`` with ``n**k <= MAX_GROUPS_PER_PROBLEM`` (at least 2).

    >>> [max_n_for(k) for k in (1, 4, 6, 12)]
    [5, 5, 4, 2]
    """
    n = MAX_N
    while n > 2 and n**k > MAX_GROUPS_PER_PROBLEM:
        n -= 1
    return n


_X = 27.7  # logit gap giving p ~ 1e-12 (strategies.EXTREME_LOGIT)

BATTERY: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...] = (
    # (logits, scores), simplest first: the first failing one is the reported counterexample.
    ((0.0, 0.0), (0.0, 1.0)),  # the scale reference
    ((0.0, 0.0), (1.0, 3.0)),  # J != 0 (missing -p)
    ((1.0, 0.0), (0.0, 1.0)),  # theta != 0 (grad p, eps in log, temperature)
    ((0.0, 0.0), (2.0, 2.0)),  # grad J = 0
    ((1.0, 0.0), (2.0, 2.0)),  # grad J = 0 at theta != 0 (entropy bonus)
    ((0.0, 0.0), (-1.0, -3.0)),  # negative scores
    ((1.0, 0.0), (-1.0, 2.0)),  # a negative and a large score (clipping)
    ((_X, 0.0), (0.0, 1.0)),  # p ~ 1e-12 (floors and clamps)
    ((-_X, 0.0), (1.0, 3.0)),
    ((0.0, 0.0, 0.0), (0.0, 1.0, 2.0)),  # n = 3
    ((0.5, -1.0, 0.0), (1.0, 0.0, 2.0)),
    ((1.0, -1.0, 0.5), (1.0, 1.0, 1.0)),  # grad J = 0, n = 3
    ((0.0, 1.0, 2.0), (0.0, 1.0, 0.0)),  # binary scores
    ((0.3, -0.7, 1.2), (4.0, -3.0, 11.0)),  # an affine change of the previous scales
    ((0.2, -0.5, 1.0, 0.0), (1.0, 1.0, 0.0, 1.0)),  # tied maxima
    ((0.0, 0.0, 0.0), (1e3, -1e3, 0.5)),  # huge scores
    ((13.0, 0.0, -13.0), (1.0, 0.0, 2.0)),  # p ~ 2e-6 and 5e-12
    ((-_X, 0.0, _X), (2.0, 1.0, 0.0)),  # p ~ 1e-24
    ((0.0, 0.0, 0.0, 0.0), (1.0, 3.0, -2.0, 0.5)),
    ((0.1, -0.2, 0.3, -0.4, 0.5), (0.0, 1.0, 2.0, 3.0, 4.0)),  # n = 5
    ((2.0, -1.0, 0.5, 0.0, -3.0), (-1.0, 0.5, 7.0, 0.0, -3.0)),
)
"""Hand-picked hard problems, run for every ``k`` before any generated one.

They aim at the places bugs hide: ``theta = 0`` and ``theta != 0``, ``grad J = 0``,
negative, large and tied scores, probabilities of ``1e-6`` to ``1e-24``, ``n = 2`` and
``n >= 3`` with several distinct scores.
"""


def battery_problems(k: int) -> list[tuple[FloatArray, FloatArray]]:
    """The :data:`BATTERY` problems as arrays, those with ``n**k`` within budget."""
    out = []
    for theta, s in BATTERY:
        if len(theta) <= max_n_for(k):
            out.append((np.array(theta, dtype=np.float64), np.array(s, dtype=np.float64)))
    return out


def generated_problems(group_sizes: tuple[int, ...]) -> st.SearchStrategy[PolicyProblem]:
    """:func:`properties.strategies.policy_problems` for each ``k`` in ``group_sizes`` (shrinks to the first)."""
    ks = tuple(sorted(set(group_sizes)))
    return st.sampled_from(ks).flatmap(
        lambda k: policy_problems(min_n=2, max_n=max_n_for(k), min_k=k, max_k=k)
    )


__all__ = [
    "BATTERY",
    "MAX_GROUPS_PER_PROBLEM",
    "MAX_N",
    "REFERENCE_MIN_SIGNAL",
    "ROUNDOFF_SAFETY",
    "Evaluation",
    "battery_problems",
    "evaluate",
    "generated_problems",
    "max_n_for",
    "tolerance",
]
