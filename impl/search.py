r"""The overseer's search: unbounded (exhaustive) and best-of-k from a proposal.

Tie rule: candidates are compared by score, and at equal score the **lower
index wins** (:meth:`impl.problem.Problem.rank`).  This makes the search output
a deterministic function of the candidate multiset, so :math:`B_k(q)` has the
closed form below even with tied scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from impl._validate import distribution, positive_int
from impl.errors import InvalidArgument, describe
from impl.problem import Problem, sample_from
from impl.types import IntArray, Probs


def _problem(scores: Any) -> Problem:
    return scores if isinstance(scores, Problem) else Problem(scores)


def unbounded_search(scores: Any) -> int:
    """``X*``: exhaustive search over every answer, lowest index among maximisers.

    >>> unbounded_search([0.1, 0.7, 0.7, 0.2])
    1
    """
    return _problem(scores).best


def best_of_k_distribution(scores: Any, proposal: Any, k: int) -> Probs:
    r"""Exact output distribution :math:`B_k(q)` of best-of-``k`` search.

    Order the answers by the search order (score, then lower index first at a
    tie) as :math:`x_{(1)} \prec \dots \prec x_{(n)}` and let :math:`F_j` be the
    proposal mass of the :math:`j` lowest.  The best of ``k`` iid candidates is
    :math:`x_{(j)}` iff all candidates are among the :math:`j` lowest but not
    all among the :math:`j-1` lowest:

    .. math::  B_k(q)(x_{(j)}) = F_j^k - F_{j-1}^k.

    >>> best_of_k_distribution([0.0, 1.0], [0.5, 0.5], k=2)
    array([0.25, 0.75])
    >>> best_of_k_distribution([1.0, 1.0, 0.0], [0.25, 0.25, 0.5], k=1)
    array([0.25, 0.25, 0.5 ])
    """
    pb = _problem(scores)
    q = distribution(proposal, "proposal", n=pb.n)
    k = positive_int(k, "k")
    rank = pb.rank()
    order = np.argsort(rank)
    cdf = np.clip(np.cumsum(q[order]), 0.0, 1.0)
    cdf[-1] = 1.0
    powers = cdf**k
    mass_sorted = np.diff(powers, prepend=0.0)
    out = np.empty(pb.n)
    out[order] = np.maximum(mass_sorted, 0.0)
    result: Probs = out / out.sum()
    return result


def best_of_k_mass_on_maximisers(scores: Any, proposal: Any, k: int) -> float:
    r""":math:`B_k(q)(A^*) = 1 - (1 - q(A^*))^k`.

    >>> best_of_k_mass_on_maximisers([0.0, 1.0, 1.0], [0.5, 0.25, 0.25], k=3)
    0.875
    """
    pb = _problem(scores)
    q = distribution(proposal, "proposal", n=pb.n)
    k = positive_int(k, "k")
    qa = float(q[list(pb.maximisers)].sum())
    return float(-np.expm1(k * np.log1p(-qa))) if qa < 1.0 else 1.0


def best_of_k_sample(
    scores: Any, proposal: Any, k: int, size: int, rng: np.random.Generator
) -> IntArray:
    """``size`` independent outputs of best-of-``k`` search (each from ``k`` fresh candidates).

    >>> best_of_k_sample([0.0, 1.0], [0.5, 0.5], k=50, size=4, rng=np.random.default_rng(1))
    array([1, 1, 1, 1])
    """
    pb = _problem(scores)
    q = distribution(proposal, "proposal", n=pb.n)
    k = positive_int(k, "k")
    size = positive_int(size, "size", minimum=0)
    if not isinstance(rng, np.random.Generator):
        raise InvalidArgument(f"Expected a numpy Generator but got {describe('rng', rng)}")
    candidates = sample_from(q, (size, k), rng)
    rank = pb.rank()
    best_rank = rank[candidates].max(axis=1)
    order = np.argsort(rank)
    out: IntArray = order[best_rank].astype(np.int64)
    return out


__all__ = [
    "best_of_k_distribution",
    "best_of_k_mass_on_maximisers",
    "best_of_k_sample",
    "unbounded_search",
]
