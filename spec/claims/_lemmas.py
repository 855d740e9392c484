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

from spec._core import Expr, Step, check_identity, check_predicate, check_sign, check_solve
from spec.symbols import N_COORD, F, i, j, k, m, n

Q = Symbol("Q", positive=True)
"""q(A*), the proposal mass of the maximisers."""

B = Symbol("b", positive=True)
"""1 - a: the mass outside A* (positive; b < 1 is used explicitly where needed)."""


def astar_mass(qa: Expr, kk: Expr) -> Expr:
    r"""The mass best-of-``k`` search puts on :math:`A^*`: :math:`1 - (1 - q(A^*))^k`."""
    return 1 - (1 - qa) ** kk


def imitation_optimum_steps(optimum: Callable[[Expr], Expr]) -> list[Step]:
    """argmax of sum_i q_i log p_i over the simplex is p = q (Lagrangian + Gibbs), general n.

    ``optimum(q_m)`` is the candidate optimum (the statement is ``p_m = q_m``).
    """
    pq = IndexedBase("p", positive=True)
    qq = IndexedBase("q", positive=True)
    lam = Symbol("lambda", positive=True)
    pm = Symbol("p_m", positive=True)
    qm = Symbol("q_m", positive=True)
    x = Symbol("x", positive=True)
    lagrangian = Sum(qq[i] * log(pq[i]), (i, 0, N_COORD - 1)) - lam * (
        Sum(pq[i], (i, 0, N_COORD - 1)) - 1
    )
    stationary = qm / lam
    sum_q = Sum(qq[i], (i, 0, N_COORD - 1))

    def lagrange_multiplier() -> tuple[bool, str]:
        # sum_i q_i / lambda = 1 with sum_i q_i = 1  =>  lambda = 1
        normalised = sympy.simplify(Sum(qq[i] / lam, (i, 0, N_COORD - 1))).subs(sum_q, 1)
        sols = sympy.solve(sympy.Eq(normalised, 1), lam)
        return sols == [1], f"sum_i q_i/lambda = {normalised}; lambda in {sols}"

    gibbs_f = x - 1 - log(x)
    return [
        check_identity(
            "Lagrangian L = sum_i q_i log p_i - lambda (sum_i p_i - 1): dL/dp_m = q_m/p_m - lambda",
            Derivative(lagrangian, pq[m]),
            qq[m] / pq[m] - lam,
            doit=True,
        ),
        check_solve(
            "stationary point: q_m/p_m - lambda = 0 gives p_m = q_m/lambda",
            qm / pm - lam,
            pm,
            [stationary],
        ),
        check_predicate(
            "normalisation sum_i p_i = 1 fixes the multiplier: lambda = sum_i q_i = 1",
            "solve(sum_i q_i/lambda = 1, lambda) = [1]",
            lagrange_multiplier,
            kind="solve",
        ),
        check_identity(
            "the stationary point is the candidate optimum: p_m = q_m",
            stationary.subs(lam, 1),
            optimum(qm),
        ),
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
        check_identity("f(1) = 0", gibbs_f.subs(x, 1), 0),
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
    return [
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
            (F[n] ** k - F[0] ** k).subs({F[n]: 1, F[0]: 0}),
            1,
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
            (F[n] ** k - F[n - a] ** k).subs({F[n]: 1, F[n - a]: 1 - Q}),
            mass(Q, k),
        ),
    ]


__all__ = ["B", "Q", "astar_mass", "best_of_k_steps", "imitation_optimum_steps"]
