r"""Hypothesis strategies for the setting of CLAIMS.md, for use in your own tests.

They aim where estimator and claim bugs hide, not at "random floats":

* answer sets of size 2 **and** 3+ (``n = 2`` hides index and missing-term bugs);
* score tables with several distinct values, tied maxima, negative, zero, huge
  and binary scores (binary scores hide bugs in nonlinear reward transforms);
* logits near zero and extreme, down to probabilities of about 1e-12
  (``theta = 0`` hides bugs in the ``-p`` term);
* group sizes 1 and larger (``k = 1`` hides baseline bugs; ``k >= 2`` is where
  self-inclusive baselines bias).

Every bound is keyword-only and checked up front; a bad bound raises
:class:`impl.errors.InvalidArgument` when the strategy is built.

>>> from hypothesis import find
>>> s = find(score_tables(3, min_distinct=3), lambda s: s.min() < 0)
>>> len(set(s.tolist())), bool(s.min() < 0)
(3, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from impl.errors import InvalidArgument, describe
from impl.types import FloatArray, Probs

MAX_N = 12
"""Largest answer set the strategies will generate (exact enumeration is n**k)."""

EXTREME_LOGIT = 27.7
"""|logit differences| up to this give probabilities down to about 1e-12."""

_SPECIAL_SCORES = (0.0, 1.0, -1.0, 0.5, 2.0, -3.0, 1e3, -1e3, 1e-3, 7.0)
_SPECIAL_LOGITS = (0.0, 1.0, -1.0, 2.5, -4.0, EXTREME_LOGIT, -EXTREME_LOGIT, 13.0, -13.0)


def _check_int(name: str, value: Any, *, minimum: int, maximum: int = MAX_N) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidArgument(f"Expected an int but got {describe(name, value)}")
    if not minimum <= value <= maximum:
        raise InvalidArgument(
            f"Expected {minimum} <= {name} <= {maximum} but got {describe(name, value)}"
        )
    return int(value)


def _check_order(lo_name: str, lo: int, hi_name: str, hi: int) -> None:
    if lo > hi:
        raise InvalidArgument(
            f"Expected {lo_name} <= {hi_name} but got {lo_name}={lo}, {hi_name}={hi}"
        )


def answer_set_sizes(*, min_n: int = 2, max_n: int = 5) -> st.SearchStrategy[int]:
    """Sizes ``n`` of the answer set, ``min_n <= n <= max_n`` (``2 <= min_n``).

    >>> from hypothesis import find
    >>> find(answer_set_sizes(min_n=3, max_n=6), lambda n: n > 4)
    5
    """
    min_n = _check_int("min_n", min_n, minimum=2)
    max_n = _check_int("max_n", max_n, minimum=2)
    _check_order("min_n", min_n, "max_n", max_n)
    return st.integers(min_n, max_n)


def group_sizes(*, min_k: int = 1, max_k: int = 4) -> st.SearchStrategy[int]:
    """Group sizes ``k`` (samples per group), ``1 <= min_k <= k <= max_k``."""
    min_k = _check_int("min_k", min_k, minimum=1)
    max_k = _check_int("max_k", max_k, minimum=1)
    _check_order("min_k", min_k, "max_k", max_k)
    return st.integers(min_k, max_k)


def score_values(
    *, max_magnitude: float = 1e3, allow_negative: bool = True
) -> st.SearchStrategy[float]:
    """Single scores: special values (0, +-1, 1e3, ...), small integers, and floats."""
    if not (np.isfinite(max_magnitude) and max_magnitude >= 1):
        raise InvalidArgument(
            f"Expected max_magnitude >= 1 but got {describe('max_magnitude', max_magnitude)}"
        )
    lo = -max_magnitude if allow_negative else 0.0
    special = [v for v in _SPECIAL_SCORES if lo <= v <= max_magnitude]
    return st.one_of(
        st.integers(-3 if allow_negative else 0, 3).map(float),
        st.sampled_from(special),
        st.floats(lo, max_magnitude, allow_nan=False, allow_infinity=False, allow_subnormal=False),
    )


@st.composite
def _score_table(
    draw: st.DrawFn, n: int, min_distinct: int, max_distinct: int, value: st.SearchStrategy[float]
) -> FloatArray:
    d = draw(st.integers(min_distinct, max_distinct))
    values = draw(st.lists(value, min_size=d, max_size=d, unique=True))
    # every distinct value appears at least once, the rest are ties
    assignment = list(range(d)) + draw(
        st.lists(st.integers(0, d - 1), min_size=n - d, max_size=n - d)
    )
    order = draw(st.permutations(range(n)))
    out = np.array([values[assignment[i]] for i in order], dtype=np.float64)
    return out


def score_tables(
    n: int,
    *,
    min_distinct: int = 1,
    max_distinct: int | None = None,
    binary: bool = False,
    allow_negative: bool = True,
    max_magnitude: float = 1e3,
) -> st.SearchStrategy[FloatArray]:
    """Score tables ``s`` of shape ``(n,)`` with between ``min_distinct`` and ``max_distinct`` values.

    Ties (including tied maxima) appear whenever fewer than ``n`` values are
    distinct.  ``binary=True`` gives 0/1 scores.
    """
    n = _check_int("n", n, minimum=2)
    if binary:
        min_distinct = min(min_distinct, 2)
        return _score_table(
            n,
            _check_int("min_distinct", min_distinct, minimum=1, maximum=2),
            2,
            st.sampled_from([0.0, 1.0]),
        )
    min_distinct = _check_int("min_distinct", min_distinct, minimum=1, maximum=n)
    max_distinct = (
        n
        if max_distinct is None
        else _check_int("max_distinct", max_distinct, minimum=1, maximum=n)
    )
    _check_order("min_distinct", min_distinct, "max_distinct", max_distinct)
    return _score_table(
        n,
        min_distinct,
        max_distinct,
        score_values(max_magnitude=max_magnitude, allow_negative=allow_negative),
    )


def logits(n: int, *, max_abs: float = EXTREME_LOGIT) -> st.SearchStrategy[FloatArray]:
    """Softmax logits of shape ``(n,)``: zero, moderate and extreme (``|theta| <= max_abs``)."""
    n = _check_int("n", n, minimum=1)
    if not (np.isfinite(max_abs) and max_abs > 0):
        raise InvalidArgument(
            f"Expected a finite max_abs > 0 but got {describe('max_abs', max_abs)}"
        )
    special = [v for v in _SPECIAL_LOGITS if abs(v) <= max_abs]
    one = st.one_of(
        st.sampled_from(special),
        st.floats(-min(3.0, max_abs), min(3.0, max_abs), allow_nan=False, allow_subnormal=False),
        st.floats(-max_abs, max_abs, allow_nan=False, allow_subnormal=False),
    )
    return st.lists(one, min_size=n, max_size=n).map(lambda xs: np.array(xs, dtype=np.float64))


def distributions(
    n: int, *, min_support: int = 1, full_support: bool = False
) -> st.SearchStrategy[Probs]:
    """Distributions over ``n`` answers with rational-looking weights (integer weights normalised).

    ``full_support=True`` gives every answer positive mass.
    """
    n = _check_int("n", n, minimum=1)
    min_support = _check_int("min_support", min_support, minimum=1, maximum=n)
    lo = 1 if full_support else 0

    def build(weights: list[int]) -> Probs:
        w = np.array(weights, dtype=np.float64)
        out: Probs = w / w.sum()
        return out

    return (
        st.lists(st.integers(lo, 12), min_size=n, max_size=n)
        .filter(lambda w: sum(1 for x in w if x > 0) >= min_support)
        .map(build)
    )


def demonstrators(n: int, *, deterministic: bool | None = None) -> st.SearchStrategy[Probs]:
    """Output distributions of a demonstrator: point masses (deterministic) or spread (stochastic).

    ``deterministic=None`` mixes both; ``False`` gives at least two answers positive mass.
    """
    n = _check_int("n", n, minimum=2)
    point = st.integers(0, n - 1).map(lambda i: np.eye(n)[i])
    spread = distributions(n, min_support=2)
    if deterministic is None:
        return st.one_of(point, spread)
    return point if deterministic else spread


def proposals(n: int, *, full_support: bool = True) -> st.SearchStrategy[Probs]:
    """Proposal distributions ``q`` for best-of-k search (full support by default).

    With full support and at least two distinct scores, ``0 < q(A*) < 1``: the regime
    where limited search differs from exhaustive search.
    """
    return distributions(n, full_support=full_support)


def search_problems(
    *,
    min_n: int = 2,
    max_n: int = 5,
    min_k: int = 1,
    max_k: int = 4,
    full_support: bool = True,
) -> st.SearchStrategy[tuple[FloatArray, Probs, int]]:
    """``(scores, proposal q, k)`` for best-of-k search; scores take at least two distinct values.

    >>> from hypothesis import find
    >>> s, q, k = find(search_problems(min_n=3, max_n=3), lambda c: c[2] == 2)
    >>> s.shape, q.shape, k
    ((3,), (3,), 2)
    """
    sizes = answer_set_sizes(min_n=min_n, max_n=max_n)
    ks = group_sizes(min_k=min_k, max_k=max_k)

    @st.composite
    def build(draw: st.DrawFn) -> tuple[FloatArray, Probs, int]:
        n = draw(sizes)
        scores = draw(score_tables(n, min_distinct=2, max_magnitude=10.0))
        return scores, draw(proposals(n, full_support=full_support)), draw(ks)

    return build()


@dataclass(frozen=True)
class PolicyProblem:
    """A generated problem for an estimator: logits, the score table and a group size ``k``."""

    logits: FloatArray
    scores: FloatArray
    k: int

    @property
    def n(self) -> int:
        """The number of answers."""
        return int(self.scores.size)


def policy_problems(
    *,
    min_n: int = 2,
    max_n: int = 5,
    min_k: int = 1,
    max_k: int = 4,
    max_abs_logit: float = EXTREME_LOGIT,
    max_magnitude: float = 1e3,
) -> st.SearchStrategy[PolicyProblem]:
    """Whole problems ``(logits, scores, k)`` with ``n`` in ``[min_n, max_n]`` and ``k`` in ``[min_k, max_k]``."""
    sizes = answer_set_sizes(min_n=min_n, max_n=max_n)
    ks = group_sizes(min_k=min_k, max_k=max_k)
    logits(2, max_abs=max_abs_logit)  # validate bounds eagerly
    score_values(max_magnitude=max_magnitude)

    @st.composite
    def build(draw: st.DrawFn) -> PolicyProblem:
        n = draw(sizes)
        return PolicyProblem(
            logits=draw(logits(n, max_abs=max_abs_logit)),
            scores=draw(score_tables(n, max_magnitude=max_magnitude)),
            k=draw(ks),
        )

    return build()


__all__ = [
    "EXTREME_LOGIT",
    "MAX_N",
    "PolicyProblem",
    "answer_set_sizes",
    "demonstrators",
    "distributions",
    "group_sizes",
    "logits",
    "policy_problems",
    "proposals",
    "score_tables",
    "score_values",
    "search_problems",
]
