r"""Derivation steps that several claim families share (every step checked by SymPy).

* :func:`imitation_optimum_steps`: the optimum of imitation is the demonstrator (used by
  :mod:`spec.claims.imitation`, :mod:`spec.claims.search` and
  :mod:`spec.claims.amplification`: distilling a search reaches the search's output law);
* :func:`best_of_k_steps`: the output law of best-of-``k`` search and its mass on
  :math:`A^*` (used by :mod:`spec.claims.search` and :mod:`spec.claims.amplification`).

>>> all(step.ok for step in best_of_k_steps(astar_mass))
True
"""

from __future__ import annotations

from collections.abc import Callable

import sympy
from sympy import Derivative, IndexedBase, Product, Sum, Symbol, diff, log

from spec._core import Expr, Step, chain, check_identity, check_sign, check_solve
from spec.symbols import N_COORD, F, i, j, k, m, n

Q = Symbol("Q", positive=True)
"""q(A*), the proposal mass of the maximisers."""

B = Symbol("b", positive=True)
"""1 - a: the mass outside A* (positive; b < 1 is used explicitly where needed)."""


def astar_mass(qa: Expr, kk: Expr) -> Expr:
    r"""The mass best-of-``k`` search puts on :math:`A^*`: :math:`1 - (1 - q(A^*))^k`."""
    return 1 - (1 - qa) ** kk


def imitation_stationary_steps(optimum: Callable[[Expr], Expr]) -> list[Step]:
    """The Lagrangian's stationary point on the simplex is the candidate ``optimum(q_m)``.

    The multiplier is solved from the normalisation (not set by hand): the stationary
    point p_m = q_m / lambda sums to 1/lambda, and 1/lambda = 1 gives lambda; the last step
    substitutes that solution.
    """
    pq = IndexedBase("p", positive=True)
    qq = IndexedBase("q", positive=True)
    lam = Symbol("lambda", positive=True)
    pm = Symbol("p_m", positive=True)
    qm = Symbol("q_m", positive=True)
    lagrangian = Sum(qq[i] * log(pq[i]), (i, 0, N_COORD - 1)) - lam * (
        Sum(pq[i], (i, 0, N_COORD - 1)) - 1
    )
    sum_q = Sum(qq[i], (i, 0, N_COORD - 1))
    first = check_identity(
        "Lagrangian L = sum_i q_i log p_i - lambda (sum_i p_i - 1): dL/dp_m = q_m/p_m - lambda",
        Derivative(lagrangian, pq[m]),
        qq[m] / pq[m] - lam,
        doit=True,
    )
    gradient = first.rhs.subs({qq[m]: qm, pq[m]: pm})  # dL/dp_m as derived, in scalars
    stationary = sympy.solve(gradient, pm)
    if len(stationary) != 1:
        raise ValueError(f"expected one stationary point of dL/dp_m = {gradient}, got {stationary}")
    total = sympy.simplify(Sum(stationary[0].subs(qm, qq[i]), (i, 0, N_COORD - 1))).subs(sum_q, 1)
    multiplier = sympy.solve(sympy.Eq(total, 1), lam)
    if len(multiplier) != 1:
        raise ValueError(f"expected one multiplier from {total} = 1, got {multiplier}")
    return [
        first,
        check_solve(
            "stationary point: dL/dp_m = 0 (step 1) gives p_m = q_m/lambda",
            gradient,
            pm,
            [qm / lam],
        ),
        *chain(
            [
                check_identity(
                    "the stationary point sums to sum_i q_i / lambda = 1/lambda (sum_i q_i = 1)",
                    Sum(stationary[0].subs(qm, qq[i]), (i, 0, N_COORD - 1)),
                    total,
                    assume={sum_q: 1},
                ),
                check_identity(
                    f"normalisation sum_i p_i = 1 fixes the multiplier: solve(... = 1, lambda) "
                    f"gives lambda = {multiplier[0]}, and then the sum is 1",
                    total,
                    1,
                    assume={lam: multiplier[0]},
                ),
            ]
        ),
        check_identity(
            "the stationary point with the solved multiplier is the candidate optimum",
            stationary[0],
            optimum(qm),
            assume={lam: multiplier[0]},
        ),
    ]


def imitation_optimum_steps(optimum: Callable[[Expr], Expr]) -> list[Step]:
    """argmax of sum_i q_i log p_i over the simplex is p = q (Lagrangian + Gibbs), general n.

    ``optimum(q_m)`` is the candidate optimum (the statement is ``p_m = q_m``).
    """
    pq = IndexedBase("p", positive=True)
    qq = IndexedBase("q", positive=True)
    x = Symbol("x", positive=True)
    gibbs_f = x - 1 - log(x)
    return [
        *imitation_stationary_steps(optimum),
        check_solve(
            "Gibbs: f(x) = x - 1 - log x has f'(x) = 1 - 1/x = 0 only at x = 1",
            diff(gibbs_f, x),
            x,
            [1],
        ),
        check_sign(
            "f''(x) = 1/x^2 > 0: f is strictly convex on x > 0, so f(x) >= f(1) = 0, "
            "i.e. log x <= x - 1 with equality only at x = 1",
            diff(gibbs_f, x, 2),
            "positive",
        ),
        check_identity("f(1) = 0", gibbs_f, 0, given={x: 1}),
        check_identity(
            "sum_i q_i log p_i - sum_i q_i log q_i = sum_i q_i log(p_i/q_i)",
            Sum(qq[i] * log(pq[i]), (i, 0, n - 1)) - Sum(qq[i] * log(qq[i]), (i, 0, n - 1)),
            Sum(qq[i] * log(pq[i] / qq[i]), (i, 0, n - 1)),
        ),
        check_identity(
            "<= sum_i q_i (p_i/q_i - 1) = sum_i p_i - sum_i q_i = 1 - 1 = 0 "
            "(equality iff p_i = q_i wherever q_i > 0)",
            Sum(qq[i] * (pq[i] / qq[i] - 1), (i, 0, n - 1)),
            Sum(pq[i], (i, 0, n - 1)) - Sum(qq[i], (i, 0, n - 1)),
        ),
    ]


def best_of_k_steps(mass: Callable[[Expr, Expr], Expr]) -> list[Step]:
    """B_k(q) is a distribution (telescoping) with A* mass 1 - (1 - q(A*))^k, general n, k.

    ``mass(Q, k)`` is the candidate A* mass (the statement is :func:`astar_mass`).
    """
    c = Symbol("c", integer=True, positive=True)
    a = Symbol("a", integer=True, positive=True)  # |A*|: the a top ranks
    fj = Symbol("F_j", nonnegative=True)
    x = Symbol("x", positive=True)
    steps = [
        check_identity(
            "P(best of k is among the j lowest ranks) = P(all k iid candidates are) = F_j^k",
            Product(fj, (c, 1, k)),
            fj**k,
            doit=True,
        ),
        check_identity(
            "B_k(q)(x_(j)) = F_j^k - F_{j-1}^k sums to F_n^k - F_0^k (telescoping)",
            Sum(F[j] ** k - F[j - 1] ** k, (j, 1, n)),
            F[n] ** k - F[0] ** k,
            kind="telescoping",
            doit=True,
        ),
        check_identity(
            "with F_0 = 0 and F_n = 1 the total mass is 1",
            F[n] ** k - F[0] ** k,
            1,
            given={F[n]: 1, F[0]: 0},
        ),
        check_sign(
            "x -> x^k is increasing on x > 0 (derivative k x^(k-1) > 0), and F_j >= F_{j-1}, "
            "so every mass F_j^k - F_{j-1}^k >= 0",
            diff(x**k, x),
            "positive",
        ),
        check_identity(
            "A* = the a top ranks: sum_{j=n-a+1}^{n} (F_j^k - F_{j-1}^k) = F_n^k - F_{n-a}^k "
            "(telescoping; with ties the tie rule only orders A* internally)",
            Sum(F[j] ** k - F[j - 1] ** k, (j, n - a + 1, n)),
            F[n] ** k - F[n - a] ** k,
            kind="telescoping",
            doit=True,
        ),
        check_identity(
            "with F_n = 1 and F_{n-a} = 1 - q(A*): B_k(q)(A*) = 1 - (1 - q(A*))^k",
            F[n] ** k - F[n - a] ** k,
            mass(Q, k),
            given={F[n]: 1, F[n - a]: 1 - Q},
        ),
    ]
    # the total mass continues the first telescoping sum, the A* mass the second
    return [*steps[:1], *chain(steps[1:3]), steps[3], *chain(steps[4:6])]


__all__ = [
    "B",
    "Q",
    "astar_mass",
    "best_of_k_steps",
    "imitation_optimum_steps",
    "imitation_stationary_steps",
]
