r"""The exact expectation engine: :math:`E[g]` over all :math:`n^k` sample groups.

For a finite answer set the expectation of any estimator is a finite sum,

.. math::

    E[g] = \sum_{x \in D^k} \Big(\prod_{j=1}^k p_{x_j}\Big)\, g(\theta, x, s(x)),

computed here in a few batched calls, with no sampling noise.  This is the
oracle that the claim properties and the estimator checker stand on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from impl._validate import float_vector, positive_int
from impl.errors import InvalidArgument, describe
from impl.policy import softmax
from impl.types import Estimator, FloatArray, IntArray

MAX_GROUPS = 4_000_000
"""Refuse enumerations larger than this (``n**k`` groups): past it, sample instead."""

DEFAULT_CHUNK = 1 << 16
"""Groups per batched call: bounds memory at ``chunk * max(n, k) * 8`` bytes."""


@dataclass(frozen=True)
class Expectation:
    r"""Exact moments of an estimator over every sample group.

    ``mean`` is :math:`E[g]`; ``second_moment`` is :math:`E[g^2]` (elementwise);
    ``magnitude`` is :math:`E[|g|]`, the size of the summed terms, which is what a
    round-off tolerance must scale with; ``max_abs`` is the largest :math:`|g|`
    over all groups (including groups of negligible probability); ``groups`` is
    :math:`n^k`.
    """

    mean: FloatArray
    second_moment: FloatArray
    magnitude: FloatArray
    max_abs: float
    groups: int

    @property
    def variance(self) -> FloatArray:
        """Elementwise :math:`\\operatorname{Var}[g] = E[g^2] - E[g]^2` (clipped at 0)."""
        out: FloatArray = np.maximum(self.second_moment - self.mean**2, 0.0)
        return out


def enumerate_groups(n: int, k: int) -> IntArray:
    """All ``n**k`` ordered groups of ``k`` answers, shape ``(n**k, k)``, lexicographic.

    >>> enumerate_groups(2, 2)
    array([[0, 0],
           [0, 1],
           [1, 0],
           [1, 1]])
    """
    n = positive_int(n, "n")
    k = positive_int(k, "k")
    if n**k > MAX_GROUPS:
        raise InvalidArgument(
            f"n**k={n**k} groups exceeds MAX_GROUPS={MAX_GROUPS} (n={n}, k={k}); sample instead"
        )
    out: IntArray = np.indices((n,) * k, dtype=np.int64).reshape(k, -1).T.copy()
    return out


def group_probs(p: FloatArray, k: int) -> FloatArray:
    r""":math:`\prod_j p_{x_j}` for every group of :func:`enumerate_groups` order, shape ``(n**k,)``.

    The groups are lexicographic, so this is the ``k``-fold outer product of ``p``,
    raveled: no ``(n**k, k)`` temporary (a hot path of the estimator checker).

    >>> group_probs(np.array([0.25, 0.75]), 2)
    array([0.0625, 0.1875, 0.1875, 0.5625])
    """
    out: FloatArray = p
    for _ in range(k - 1):
        out = np.multiply.outer(out, p).ravel()
    return out


def iter_groups(
    logits: Any, scores: Any, k: int, *, chunk_size: int = DEFAULT_CHUNK
) -> Iterator[tuple[IntArray, FloatArray, FloatArray]]:
    """Yield ``(samples, rewards, probabilities)`` chunks covering all ``n**k`` groups.

    >>> [(x.shape, r.tolist(), w.tolist()) for x, r, w in iter_groups([0.0, 0.0], [1.0, 2.0], 1)]
    [((2, 1), [[1.0], [2.0]], [0.5, 0.5])]
    """
    theta = float_vector(logits, "logits")
    s = float_vector(scores, "scores")
    if s.size != theta.size:
        raise InvalidArgument(
            f"logits and scores must have the same length but got n={theta.size} and {describe('scores', scores)}"
        )
    chunk_size = positive_int(chunk_size, "chunk_size")
    groups = enumerate_groups(theta.size, k)
    probs = group_probs(softmax(theta), k)
    for start in range(0, groups.shape[0], chunk_size):
        x = groups[start : start + chunk_size]
        yield x, s[x], probs[start : start + chunk_size]


def exact_expectation(
    estimator: Estimator,
    logits: Any,
    scores: Any,
    k: int,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> Expectation:
    r"""Exact :math:`E[g]` (and second moment) of a batched estimator over all groups of ``k``.

    ``estimator`` must be batched: ``(logits (n,), samples (B, k), rewards (B, k)) -> (B, n)``.
    It is called once per chunk of at most ``chunk_size`` groups, with fresh arrays.

    >>> from impl.estimators import reinforce, group_mean_baseline
    >>> from impl.policy import policy_gradient
    >>> theta, s = np.array([0.3, -1.0, 0.5]), np.array([1.0, 0.0, 2.0])
    >>> e = exact_expectation(reinforce, theta, s, k=3)
    >>> bool(np.allclose(e.mean, policy_gradient(theta, s), rtol=0, atol=1e-14)), e.groups
    (True, 27)
    >>> e = exact_expectation(group_mean_baseline, theta, s, k=3)
    >>> bool(np.allclose(e.mean, 2 / 3 * policy_gradient(theta, s), rtol=0, atol=1e-14))
    True
    """
    theta = float_vector(logits, "logits")
    n = theta.size
    mean = np.zeros(n)
    second = np.zeros(n)
    magnitude = np.zeros(n)
    max_abs = 0.0
    total = 0
    for x, r, w in iter_groups(theta, scores, k, chunk_size=chunk_size):
        g = np.asarray(estimator(theta.copy(), x.copy(), r.copy()), dtype=np.float64)
        if g.shape != (x.shape[0], n):
            raise InvalidArgument(
                f"Expected the estimator to return shape {(x.shape[0], n)} but got shape {g.shape}"
            )
        mean += w @ g
        second += w @ (g * g)
        magnitude += w @ np.abs(g)
        if g.size:
            max_abs = max(max_abs, float(np.abs(g).max()))
        total += x.shape[0]
    return Expectation(
        mean=mean, second_moment=second, magnitude=magnitude, max_abs=max_abs, groups=total
    )


__all__ = [
    "DEFAULT_CHUNK",
    "MAX_GROUPS",
    "Expectation",
    "enumerate_groups",
    "exact_expectation",
    "group_probs",
    "iter_groups",
]
