r"""Exact confirmation of counterexamples to the two "refuted" claims.

Both functions take a concrete candidate (exact numbers: ``int``, ``fractions.Fraction``,
SymPy ``Rational`` or a string such as ``"2/3"``; a ``float`` is converted exactly, as the
binary fraction it is), compute the two sides of the claimed equivalence with SymPy
``Rational`` arithmetic, and return a frozen result saying whether they differ.  Nothing is
rounded, so "differ" is exact.

* ``indicator-reward-stochastic-demonstrator``: RL with reward :math:`1[x = d]`,
  :math:`d \sim q`, has expected gradient :math:`\nabla(q\cdot p)`, maximised by the point
  masses on :math:`\arg\max q`; imitation of ``q`` is maximised by :math:`p = q`.
* ``rl-equals-imitation-under-limited-search``: RL on the score reaches :math:`A^*`
  (mass 1); imitation of best-of-``k`` reaches :math:`B_k(q)`, with :math:`A^*` mass
  :math:`1-(1-q(A^*))^k`.

>>> from fractions import Fraction
>>> r = confirm_indicator_counterexample([Fraction(1, 3), Fraction(2, 3)])
>>> r.refutes, r.rl_optimum, r.imitation_optimum
(True, (0, 1), (1/3, 2/3))
>>> r = confirm_limited_search_counterexample([0, 1], ["1/2", "1/2"], 2)
>>> r.refutes, r.rl_astar_mass, r.imitation_astar_mass
(True, 1, 3/4)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import sympy

from spec._core import SpecError

MAX_ENUMERATION = 4096
"""Enumerate all ``n**k`` candidate groups (an independent check of B_k) only up to this."""


def _rational(value: Any, name: str) -> sympy.Rational:
    if isinstance(value, bool):
        raise SpecError(f"Expected an exact number but got {name}={value!r} (type=bool)")
    try:
        if isinstance(value, Fraction):
            out = sympy.Rational(value.numerator, value.denominator)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError("not finite")
            out = sympy.Rational(value)
        else:
            out = sympy.Rational(value)
    except (TypeError, ValueError) as exc:
        raise SpecError(
            f"Expected an exact number but got {name}={value!r} (type={type(value).__name__})"
        ) from exc
    return out


def _vector(values: Any, name: str, *, min_size: int = 1) -> tuple[sympy.Rational, ...]:
    if isinstance(values, str) or (not isinstance(values, Sequence) and not hasattr(
        values, "__iter__"
    )):
        raise SpecError(
            f"Expected a sequence of numbers but got {name}={values!r} "
            f"(type={type(values).__name__})"
        )
    out = tuple(_rational(v, f"{name}[{t}]") for t, v in enumerate(values))
    if len(out) < min_size:
        raise SpecError(
            f"Expected at least {min_size} entries but got {name}={values!r} (size={len(out)})"
        )
    return out


def _distribution(values: Any, name: str, *, normalise: bool) -> tuple[sympy.Rational, ...]:
    q = _vector(values, name, min_size=2)
    if any(v < 0 for v in q):
        raise SpecError(f"Expected non-negative entries but got {name}={values!r}")
    total = sum(q, sympy.Integer(0))
    if normalise:
        if total == 0:
            raise SpecError(f"Expected a positive total mass but got {name}={values!r}")
        q = tuple(v / total for v in q)
    elif total != 1:
        raise SpecError(
            f"Expected entries summing exactly to 1 but got {name}={values!r} (sum={total}); "
            "pass normalise=True to divide by the sum"
        )
    return q


@dataclass(frozen=True)
class IndicatorCounterexample:
    r"""Both sides of "RL with reward 1[x = demo] equals imitation" for demonstrator ``q``.

    ``rl_optimum``: the point mass on the lowest-index :math:`\arg\max q` (the tie rule),
    one maximiser of :math:`q\cdot p`; ``rl_optimal_support``: :math:`\arg\max q`, the support
    of every maximiser.  ``imitation_optimum``: ``q``.  ``rl_value_sup`` = :math:`\max q`;
    ``rl_value_at_imitation_optimum`` = :math:`q\cdot q`.  The RL expected gradient
    :math:`p_m(q_m - q\cdot p)` and the imitation gradient :math:`q_m - p_m` at :math:`p = q`.
    ``imitation_optimum_is_rl_optimal``: ``q`` maximises :math:`q\cdot p` (true exactly when
    ``q`` is uniform on its support, a point mass included).  ``refutes``: the claimed
    equivalence fails at ``q``: imitation's optimum ``q`` is not optimal for RL
    (:math:`q\cdot q < \max q`) and RL's expected gradient at :math:`p = q` is not zero, both
    computed exactly.  A uniform demonstrator does not refute it (``q`` is one of RL's
    optima there, and RL's gradient vanishes), nor does a point mass.
    """

    q: tuple[sympy.Rational, ...]
    rl_optimum: tuple[sympy.Rational, ...]
    rl_optimal_support: tuple[int, ...]
    imitation_optimum: tuple[sympy.Rational, ...]
    rl_value_sup: sympy.Rational
    rl_value_at_imitation_optimum: sympy.Rational
    rl_gradient_at_imitation_optimum: tuple[sympy.Rational, ...]
    imitation_gradient_at_imitation_optimum: tuple[sympy.Rational, ...]
    imitation_optimum_is_rl_optimal: bool
    refutes: bool

    def report(self) -> str:
        """Both sides, side by side."""
        return (
            f"indicator-reward-stochastic-demonstrator with q={list(map(str, self.q))}: "
            f"RL optimum {list(map(str, self.rl_optimum))} (support {list(self.rl_optimal_support)}, "
            f"value {self.rl_value_sup}) vs imitation optimum {list(map(str, self.imitation_optimum))} "
            f"(RL value {self.rl_value_at_imitation_optimum}); RL gradient at p=q "
            f"{list(map(str, self.rl_gradient_at_imitation_optimum))}; refutes={self.refutes}"
        )


def confirm_indicator_counterexample(
    q: Sequence[Any], *, normalise: bool = False
) -> IndicatorCounterexample:
    r"""Exactly compare the RL (reward :math:`1[x=d]`, :math:`d\sim q`) and imitation optima.

    The RL side uses the proved softmax gradient :math:`\partial_m J = p_m (s_m - J)` with
    :math:`s = q` (the expected reward of :math:`x` is :math:`q_x`), evaluated at
    :math:`p = q`.

    >>> r = confirm_indicator_counterexample([1, 0, 0])
    >>> r.refutes, r.rl_gradient_at_imitation_optimum
    (False, (0, 0, 0))
    >>> uniform = confirm_indicator_counterexample(["1/2", "1/2"])
    >>> uniform.imitation_optimum_is_rl_optimal, uniform.refutes
    (True, False)
    """
    qq = _distribution(q, "q", normalise=normalise)
    size = len(qq)
    top = max(qq)
    support = tuple(x for x in range(size) if qq[x] == top)
    rl_opt = tuple(sympy.Integer(1 if x == support[0] else 0) for x in range(size))
    value_at_q = sum((v * v for v in qq), sympy.Integer(0))
    grad_rl = tuple(qq[x] * (qq[x] - value_at_q) for x in range(size))
    grad_im = tuple(qq[x] - qq[x] for x in range(size))
    rl_optimal = bool(value_at_q == top)
    moves = any(g != 0 for g in grad_rl)
    return IndicatorCounterexample(
        q=qq,
        rl_optimum=rl_opt,
        rl_optimal_support=support,
        imitation_optimum=qq,
        rl_value_sup=top,
        rl_value_at_imitation_optimum=value_at_q,
        rl_gradient_at_imitation_optimum=grad_rl,
        imitation_gradient_at_imitation_optimum=grad_im,
        imitation_optimum_is_rl_optimal=rl_optimal,
        refutes=bool(not rl_optimal and moves),
    )


def best_of_k_exact(
    scores: Sequence[Any], q: Sequence[Any], k: int
) -> tuple[sympy.Rational, ...]:
    r"""Exact :math:`B_k(q)(x_{(j)}) = F_j^k - F_{j-1}^k`, ranks by score, lower index wins ties.

    >>> best_of_k_exact([0, 1], ["1/2", "1/2"], 2)
    (1/4, 3/4)
    >>> best_of_k_exact([1, 1, 0], ["1/4", "1/4", "1/2"], 1)
    (1/4, 1/4, 1/2)
    """
    s = _vector(scores, "scores", min_size=2)
    qq = _distribution(q, "q", normalise=False)
    kk = _positive_int(k)
    if len(s) != len(qq):
        raise SpecError(f"scores and q must have the same length but got {len(s)} and {len(qq)}")
    order = sorted(range(len(s)), key=lambda x: (s[x], -x))  # worst first; lower index wins
    out = [sympy.Integer(0)] * len(s)
    cdf = sympy.Integer(0)
    for x in order:
        prev, cdf = cdf, cdf + qq[x]
        out[x] = cdf**kk - prev**kk
    return tuple(out)


def _positive_int(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SpecError(f"Expected an integer k >= 1 but got k={k!r} (type={type(k).__name__})")
    return k


def best_of_k_enumerated(
    scores: Sequence[Any], q: Sequence[Any], k: int, *, normalise: bool = False
) -> tuple[sympy.Rational, ...]:
    r"""Exact :math:`B_k(q)` by enumerating all :math:`n^k` candidate groups (lower index wins ties).

    Independent of the rank formula of :func:`best_of_k_exact`, so the two cross-check.

    >>> best_of_k_enumerated([0, 1], ["1/2", "1/2"], 2)
    (1/4, 3/4)
    """
    s = _vector(scores, "scores", min_size=2)
    qq = _distribution(q, "q", normalise=normalise)
    kk = _positive_int(k)
    if len(s) != len(qq):
        raise SpecError(f"scores and q must have the same length but got {len(s)} and {len(qq)}")
    return _enumerate_best_of_k(s, qq, kk)


def _enumerate_best_of_k(
    s: tuple[sympy.Rational, ...], q: tuple[sympy.Rational, ...], k: int
) -> tuple[sympy.Rational, ...]:
    out = [sympy.Integer(0)] * len(s)
    for group in itertools.product(range(len(s)), repeat=k):
        winner = max(group, key=lambda x: (s[x], -x))
        out[winner] += sympy.Mul(*[q[g] for g in group])
    return tuple(out)


@dataclass(frozen=True)
class LimitedSearchCounterexample:
    r"""Both sides of "RL and imitation of best-of-k reach the same model".

    ``rl_astar_mass`` is 1 (RL's optimum puts all mass on :math:`A^*`, e.g. ``rl_optimum``,
    the point mass on :math:`X^*`, the lowest-index maximiser); ``imitation_optimum`` is
    :math:`B_k(q)` and ``imitation_astar_mass`` its :math:`A^*` mass, which equals
    ``closed_form_astar_mass`` = :math:`1 - (1 - q(A^*))^k`.  ``enumerated`` is
    :math:`B_k(q)` by enumerating all :math:`n^k` groups (``None`` above
    :data:`MAX_ENUMERATION`).  ``refutes``: the :math:`A^*` masses differ and the result is
    ``consistent`` (the closed form, and the enumeration where run, agree with the rank
    formula), so the refutation is exactly confirmed.
    """

    scores: tuple[sympy.Rational, ...]
    q: tuple[sympy.Rational, ...]
    k: int
    maximisers: tuple[int, ...]
    rl_optimum: tuple[sympy.Rational, ...]
    rl_astar_mass: sympy.Rational
    imitation_optimum: tuple[sympy.Rational, ...]
    imitation_astar_mass: sympy.Rational
    closed_form_astar_mass: sympy.Rational
    enumerated: tuple[sympy.Rational, ...] | None
    refutes: bool

    @property
    def consistent(self) -> bool:
        """The closed form and (if run) the enumeration agree with the rank formula."""
        agree = self.closed_form_astar_mass == self.imitation_astar_mass
        return agree and (self.enumerated is None or self.enumerated == self.imitation_optimum)

    def report(self) -> str:
        """Both sides, side by side."""
        return (
            f"rl-equals-imitation-under-limited-search with scores={list(map(str, self.scores))}, "
            f"q={list(map(str, self.q))}, k={self.k}: RL A* mass {self.rl_astar_mass} vs "
            f"imitation (B_k(q)) A* mass {self.imitation_astar_mass}; B_k(q)="
            f"{list(map(str, self.imitation_optimum))}; refutes={self.refutes}"
        )


def confirm_limited_search_counterexample(
    scores: Sequence[Any], q: Sequence[Any], k: int, *, normalise: bool = False
) -> LimitedSearchCounterexample:
    r"""Exactly compare RL's optimum (mass 1 on :math:`A^*`) with imitation's :math:`B_k(q)`.

    ``q`` must sum exactly to 1 unless ``normalise=True`` (then it is divided by its sum,
    e.g. after rounding float probabilities to fractions).

    >>> r = confirm_limited_search_counterexample([3, 1, 3], [0, 1, 0], 5)
    >>> r.imitation_astar_mass, r.refutes, r.consistent
    (0, True, True)
    >>> confirm_limited_search_counterexample([0, 1], [0, 1], 3).refutes
    False
    """
    s = _vector(scores, "scores", min_size=2)
    qq = _distribution(q, "q", normalise=normalise)
    kk = _positive_int(k)
    if len(s) != len(qq):
        raise SpecError(f"scores and q must have the same length but got {len(s)} and {len(qq)}")
    top = max(s)
    astar = tuple(x for x in range(len(s)) if s[x] == top)
    law = best_of_k_exact(s, qq, kk)
    mass = sum((law[x] for x in astar), sympy.Integer(0))
    q_astar = sum((qq[x] for x in astar), sympy.Integer(0))
    enumerated = _enumerate_best_of_k(s, qq, kk) if len(s) ** kk <= MAX_ENUMERATION else None
    closed_form = 1 - (1 - q_astar) ** kk
    consistent = closed_form == mass and (enumerated is None or enumerated == law)
    return LimitedSearchCounterexample(
        scores=s,
        q=qq,
        k=kk,
        maximisers=astar,
        rl_optimum=tuple(sympy.Integer(1 if x == astar[0] else 0) for x in range(len(s))),
        rl_astar_mass=sympy.Integer(1),
        imitation_optimum=law,
        imitation_astar_mass=mass,
        closed_form_astar_mass=closed_form,
        enumerated=enumerated,
        refutes=bool(mass != 1 and consistent),
    )


__all__ = [
    "MAX_ENUMERATION",
    "IndicatorCounterexample",
    "LimitedSearchCounterexample",
    "best_of_k_enumerated",
    "best_of_k_exact",
    "confirm_indicator_counterexample",
    "confirm_limited_search_counterexample",
]
