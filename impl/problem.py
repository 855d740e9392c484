"""The answer set and the overseer's score table.

Tie rule (used everywhere in ida-verify): among answers with equal score the
**lowest index wins**.  So ``X*`` is the lowest-index maximiser, and a search
that compares candidates prefers, at equal score, the lower index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from impl._validate import float_vector, positive_int
from impl.errors import InvalidArgument, describe
from impl.types import FloatArray, IntArray, Scores


@dataclass(frozen=True)
class Problem:
    r"""One question ``Y`` with answers ``0..n-1`` and a deterministic score table.

    ``scores[x]`` is :math:`s(x) = M_2(\text{"How good is answer x to Y?"})`.
    The stored array is a read-only copy.

    >>> pb = Problem([0.2, 0.9, 0.9, 0.1])
    >>> pb.n, pb.best, pb.maximisers
    (4, 1, (1, 2))
    >>> pb.scores.flags.writeable
    False
    """

    scores: Scores = field()

    def __init__(self, scores: Any) -> None:
        s = float_vector(scores, "scores", min_size=2)
        s.setflags(write=False)
        object.__setattr__(self, "scores", s)

    @property
    def n(self) -> int:
        """The number of answers."""
        return int(self.scores.size)

    @property
    def best(self) -> int:
        """``X*``: the lowest-index answer of maximal score."""
        return int(np.argmax(self.scores))

    @property
    def maximisers(self) -> tuple[int, ...]:
        """``A*``: every answer whose score equals the maximum exactly."""
        return tuple(int(i) for i in np.flatnonzero(self.scores == self.scores.max()))

    @property
    def maximiser_mask(self) -> IntArray:
        """``A*`` as a 0/1 int array of shape ``(n,)``."""
        out: IntArray = (self.scores == self.scores.max()).astype(np.int64)
        return out

    def rank(self) -> IntArray:
        """The position of each answer in the search order (0 = worst, n-1 = ``X*``).

        Higher score ranks higher; at equal score the lower index ranks higher.

        >>> Problem([0.5, 0.9, 0.5]).rank()
        array([1, 2, 0])
        """
        order = np.lexsort((-np.arange(self.n), self.scores))
        rank = np.empty(self.n, dtype=np.int64)
        rank[order] = np.arange(self.n)
        return rank

    def reward(self, samples: Any) -> FloatArray:
        """The scores of ``samples`` (any integer array), same shape.

        >>> Problem([1.0, 2.0]).reward([[0, 1, 1]])
        array([[1., 2., 2.]])
        """
        x = np.asarray(samples)
        if not np.issubdtype(x.dtype, np.integer) or (
            x.size and (x.min() < 0 or x.max() >= self.n)
        ):
            raise InvalidArgument(
                f"Expected integer answers in 0..{self.n - 1} but got {describe('samples', samples)}"
            )
        out: FloatArray = self.scores[x]
        return out


@dataclass(frozen=True)
class NoisyOverseer:
    r"""An overseer returning :math:`s(x) + \varepsilon`, :math:`\varepsilon \sim N(0, \sigma^2)` iid.

    The noise is zero-mean, so every expectation over it equals the noiseless one
    for estimators linear in the rewards.

    >>> ov = NoisyOverseer(Problem([0.0, 1.0]), noise_std=0.5)
    >>> r = ov.reward(np.zeros((2, 3), dtype=np.int64), np.random.default_rng(0))
    >>> r.shape
    (2, 3)
    """

    problem: Problem
    noise_std: float

    def __post_init__(self) -> None:
        if not isinstance(self.problem, Problem):
            raise InvalidArgument(f"Expected a Problem but got {describe('problem', self.problem)}")
        if not (np.isfinite(self.noise_std) and self.noise_std >= 0):
            raise InvalidArgument(
                f"Expected a finite noise_std >= 0 but got {describe('noise_std', self.noise_std)}"
            )

    def reward(self, samples: Any, rng: np.random.Generator) -> FloatArray:
        """Noisy scores of ``samples``, drawn with the passed generator."""
        if not isinstance(rng, np.random.Generator):
            raise InvalidArgument(f"Expected a numpy Generator but got {describe('rng', rng)}")
        clean = self.problem.reward(samples)
        out: FloatArray = clean + rng.normal(0.0, self.noise_std, size=clean.shape)
        return out


def sample_groups(logits: Any, size: int, k: int, rng: np.random.Generator) -> IntArray:
    """``size`` groups of ``k`` iid answers from ``softmax(logits)``: shape ``(size, k)``.

    >>> sample_groups([0.0, 50.0], 2, 3, np.random.default_rng(0))
    array([[1, 1, 1],
           [1, 1, 1]])
    """
    from impl.policy import softmax

    p = softmax(logits)
    size = positive_int(size, "size", minimum=0)
    k = positive_int(k, "k")
    if not isinstance(rng, np.random.Generator):
        raise InvalidArgument(f"Expected a numpy Generator but got {describe('rng', rng)}")
    return sample_from(p, (size, k), rng)


def sample_from(q: FloatArray, shape: tuple[int, ...], rng: np.random.Generator) -> IntArray:
    """Iid draws from the distribution ``q`` by inverse CDF (vectorised), any shape."""
    cdf = np.cumsum(q)
    cdf[-1] = 1.0
    u = rng.random(shape)
    out: IntArray = np.searchsorted(cdf, u, side="right").astype(np.int64)
    # side="right" never returns an answer of zero mass unless u hits cdf exactly
    return np.minimum(out, q.size - 1)


__all__ = ["NoisyOverseer", "Problem", "sample_from", "sample_groups"]
