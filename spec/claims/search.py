r"""The search family: an overseer that searches with limited compute, and the unlimited limit.

The overseer draws ``k`` candidates from a proposal ``q`` and returns the best by score
(at equal score the lowest index wins); its output law is :math:`B_k(q)`.  Claims:

* ``limited-search-imitation`` (proved): imitating that overseer converges to
  :math:`B_k(q)`, whose mass on :math:`A^*` is :math:`1-(1-q(A^*))^k < 1` when
  :math:`0 < q(A^*) < 1`;
* ``rl-equals-imitation-under-limited-search`` (refuted): RL on the score reaches
  :math:`A^*`, imitation of the limited search reaches :math:`B_k(q)`; the documented
  counterexample is confirmed exactly by
  :func:`spec.counterexamples.confirm_limited_search_counterexample`;
* ``unbounded-search-limit`` (proved): :math:`B_k(q)(A^*) \to 1` as :math:`k \to \infty`
  when :math:`q(A^*) > 0`, and exhaustive search returns :math:`X^*` exactly.

Their numeric properties are in :mod:`properties.claims.search`; the search itself in
:mod:`impl.search`.

>>> prove_limited_search_imitation(max_n=2, max_k=2).ok
True
>>> prove_limited_search_imitation(astar_mass=lambda q, k: q).ok
False
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction
from functools import partial

import sympy
from sympy import Eq, Function, Limit, Piecewise, Product, Symbol, oo

from spec._core import (
    Expr,
    Proof,
    Step,
    check_cases,
    check_identity,
    check_limit,
    check_sign,
    make_proof,
)
from spec.claims._claim import Claim
from spec.claims._lemmas import B as _b
from spec.claims._lemmas import Q as _q_astar
from spec.claims._lemmas import astar_mass as _default_astar_mass
from spec.claims._lemmas import best_of_k_steps as _best_of_k_steps
from spec.claims._lemmas import imitation_stationary_steps as _imitation_stationary_steps
from spec.counterexamples import confirm_limited_search_counterexample
from spec.symbols import k, n

# --------------------------------------------------------------------------- the proofs


def _best_of_k_enumeration(max_n: int, max_k: int) -> Step:
    """Direct enumeration: the best-of-k output law equals F_j^k - F_{j-1}^k (bounded)."""

    def cases() -> list[tuple[str, Expr, Expr]]:
        out: list[tuple[str, Expr, Expr]] = []
        for size in range(2, max_n + 1):
            qs = sympy.symbols(f"q0:{size}", nonnegative=True)
            cdf = [sum(qs[:t], sympy.Integer(0)) for t in range(size + 1)]
            for kk in range(1, max_k + 1):
                law = [sympy.Integer(0)] * size
                # answers listed in search order (rank 0 = worst): the winner is the max rank,
                # which is how the tie rule (lower index wins at equal score) is applied
                for group in itertools.product(range(size), repeat=kk):
                    weight = sympy.Mul(*[qs[g] for g in group])
                    law[max(group)] += weight
                for rank in range(size):
                    formula = cdf[rank + 1] ** kk - cdf[rank] ** kk
                    out.append((f"n={size}, k={kk}, rank={rank}", law[rank], formula))
        return out

    return check_cases(
        "direct enumeration of all n^k candidate groups: P(winner = x_(j)) = F_j^k - F_{j-1}^k",
        cases,
        bound=f"n <= {max_n}, k <= {max_k}",
        role="cross-check",
    )


def prove_limited_search_imitation(
    *,
    astar_mass: Callable[[Expr, Expr], Expr] = _default_astar_mass,
    max_n: int = 4,
    max_k: int = 3,
) -> Proof:
    r"""``limited-search-imitation``: imitating best-of-k reaches :math:`B_k(q)`, whose
    :math:`A^*` mass is :math:`1-(1-q(A^*))^k < 1` for :math:`0 < q(A^*) < 1`.

    General ``n`` and ``k``: :math:`P(\text{best} \preceq x_{(j)}) = F_j^k`, the masses
    :math:`F_j^k - F_{j-1}^k` telescope to 1 and over the top :math:`|A^*|` ranks to
    :math:`1 - (1-q(A^*))^k` (candidate ``astar_mass(Q, k)``); the imitation optimum is the
    demonstrator (Lagrangian) so it is :math:`B_k(q)`.  A direct enumeration of every
    candidate group for ``n <= max_n``, ``k <= max_k`` cross-checks the rank formula.
    Convergence of the imitation *dynamics* is the "holds" claim
    ``imitation-converges-to-xstar``'s business; here the optimum is proved.
    """

    def build() -> list[Step]:
        steps = _best_of_k_steps(astar_mass)
        steps.append(
            check_sign(
                "for 0 < q(A*) < 1 (b = 1 - q(A*) > 0): candidate A* mass - 1 = -b^k < 0",
                astar_mass(1 - _b, k) - 1,
                "negative",
            )
        )
        steps += _imitation_stationary_steps(lambda qm: qm)
        steps.append(_best_of_k_enumeration(max_n, max_k))
        return steps

    return make_proof(
        "limited-search-imitation",
        "imitating best-of-k search with proposal q converges to B_k(q), "
        "with A* mass 1-(1-q(A*))^k < 1 when 0 < q(A*) < 1",
        build,
    )


def prove_unbounded_search_limit(*, limit_value: Expr = 1, max_n: int = 6) -> Proof:
    r"""``unbounded-search-limit``: :math:`B_k(q)(A^*) \to 1` as :math:`k\to\infty` if :math:`q(A^*)>0`.

    General: :math:`1 - (1-Q)^k` with :math:`1-Q = 1/(1+c)`, :math:`c > 0`, tends to 1
    (candidate ``limit_value``), and to 1 at once when :math:`Q = 1`; it is non-decreasing in
    ``k``.  Exhaustive search puts mass 1 on :math:`X^*` (the top rank under the tie rule):
    :math:`G_j = \prod_{x=1}^{n} 1[x \le j]` is 0 for :math:`j < n` (the top factor vanishes)
    and 1 for :math:`j = n`, general ``n``; cross-checked by expanding the products for
    every ``n <= max_n``.
    """
    limit_value = sympy.sympify(limit_value)
    xs = Symbol("x", integer=True, positive=True)
    ys = Symbol("y", integer=True, nonnegative=True)
    below = n - 1 - Symbol("r", integer=True, nonnegative=True)

    def indicator(x: Expr, jv: Expr) -> Expr:
        # unevaluated, so that the step shows the factor that vanishes rather than 0 = 0
        return Piecewise((1, sympy.Le(x, jv, evaluate=False)), (0, True), evaluate=False)

    c = Symbol("c", positive=True)
    kr = Symbol("k", positive=True)

    def exhaustive_cases() -> list[tuple[str, Expr, Expr]]:
        out: list[tuple[str, Expr, Expr]] = []
        jsym = Symbol("jj", integer=True)
        for size in range(1, max_n + 1):
            # G_j = P(best is among the j lowest ranks) = prod_{x in D} 1[rank(x) <= j]
            def cdf(jv: int, size: int = size) -> Expr:
                ind = [Piecewise((1, x <= jsym), (0, True)) for x in range(1, size + 1)]
                return sympy.Mul(*ind).subs(jsym, jv)

            for jv in range(1, size + 1):
                out.append((f"n={size}, rank {jv}", cdf(jv) - cdf(jv - 1), 1 if jv == size else 0))
        return out

    def build() -> list[Step]:
        steps = _best_of_k_steps(_default_astar_mass)[4:]
        steps += [
            check_limit(
                "0 < q(A*) < 1, 1 - q(A*) = 1/(1+c): 1 - (1 - q(A*))^k -> candidate limit",
                1 - (1 / (1 + c)) ** kr,
                kr,
                oo,
                limit_value,
            ),
            check_identity(
                "q(A*) = 1: 1 - 0^k = 1 already for every k >= 1 (equals the candidate limit)",
                _default_astar_mass(_q_astar, k),
                limit_value,
                given={_q_astar: 1},
            ),
            check_identity(
                "B_{k+1}(A*) - B_k(A*) = b^k (1 - b) with b = 1 - q(A*)",
                _default_astar_mass(1 - _b, k + 1) - _default_astar_mass(1 - _b, k),
                _b**k * (1 - _b),
            ),
            check_limit(
                "unique X*: the mass outside X*, (1 - q(X*))^k, tends to 0 so B_k(q) -> e_{X*}",
                (1 / (1 + c)) ** kr,
                kr,
                oo,
                1 - limit_value,
            ),
            check_identity(
                "exhaustive search, rank j < n (j = n-1-r): G_j = prod_{x<n} 1[x <= j] * 1[n <= j] "
                "= 0, since the factor of the top rank X* vanishes",
                Product(indicator(xs, below), (xs, 1, n - 1)) * indicator(n, below),
                0,
                doit=True,
            ),
            check_identity(
                "rank n: G_n = prod_{y=0}^{n-1} 1[n - y <= n] = 1 (every answer is ranked <= n)",
                Product(indicator(n - ys, n), (ys, 0, n - 1)),
                1,
                doit=True,
            ),
            check_identity(
                "so exhaustive search puts mass G_n - G_{n-1} = 1 on X* (the lowest-index "
                "maximiser, top of the search order) and G_j - G_{j-1} = 0 elsewhere",
                Product(indicator(n - ys, n), (ys, 0, n - 1))
                - Product(indicator(xs, n - 1), (xs, 1, n - 1)) * indicator(n, n - 1),
                1,
                doit=True,
            ),
            check_cases(
                "cross-check: G_j = prod_x 1[rank x <= j], mass G_j - G_{j-1} = 1 "
                "exactly at the top rank",
                exhaustive_cases,
                bound=f"n <= {max_n}",
                role="cross-check",
            ),
        ]
        return steps

    return make_proof(
        "unbounded-search-limit",
        "B_k(q)(A*) -> 1 as k -> oo when q(A*) > 0; exhaustive search gives X* exactly",
        build,
    )


# --------------------------------------------------------------------------- the claims

_astar_mass = Function("B_k(q)(A*)")
_rl_mass = Symbol("lim RL p(A*)")
_QA = Symbol("q(A*)", positive=True)

_TIE_RULE = (
    "ties allowed: A* is the set of maximisers; the search's tie rule is that at equal "
    "score the lowest index wins, which orders A* internally and leaves its mass unchanged"
)

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "limited-search-imitation",
        "imitating best-of-k search with proposal q converges to B_k(q), which gives A* mass "
        "1-(1-q(A*))^k < 1 when 0 < q(A*) < 1",
        "proved",
        Eq(_astar_mass(_QA, k), 1 - (1 - _QA) ** k),
        ("k iid candidates from q", "tie rule: at equal score the lowest index wins"),
        prover=prove_limited_search_imitation,
        parameterisation="the imitation optimum over the simplex (the proof); tabular softmax "
        "imitation ascent in the properties",
        ties=_TIE_RULE,
        meaning="imitation reproduces the limited search, misses included: with 0 < q(A*) < 1 "
        "the distilled model still gives the best answers less than all of its mass.",
    ),
    Claim(
        "rl-equals-imitation-under-limited-search",
        "'RL on the score and imitation of a limited-search M2 reach the same model' "
        "(RL -> A*, imitation -> B_k(q))",
        "refuted",
        Eq(_rl_mass, 1 - (1 - _QA) ** k),
        ("best-of-k overseer with proposal q",),
        counterexample=partial(
            confirm_limited_search_counterexample, [0, 1], [Fraction(1, 2), Fraction(1, 2)], 1
        ),
        parameterisation="tabular softmax: exact RL ascent on the score against the imitation "
        "limit B_k(q)",
        ties=_TIE_RULE,
        meaning="with limited compute the equivalence breaks: RL on the overseer's score "
        "still heads for A*, imitation of the overseer stops at what its search finds.",
    ),
    Claim(
        "unbounded-search-limit",
        "B_k(q)(A*) -> 1 as k -> infinity when q(A*) > 0; exhaustive search gives X* exactly",
        "proved",
        Eq(Limit(1 - (1 - _QA) ** k, k, oo), 1),
        ("q(A*) > 0", "tie rule: at equal score the lowest index wins"),
        prover=prove_unbounded_search_limit,
        parameterisation="none: a statement about the search's output law B_k(q)",
        ties="with tied maximisers B_k(q) concentrates on the lowest-index maximiser that q "
        "proposes, and exhaustive search returns X* = the lowest-index maximiser",
        meaning="'given unlimited compute' is the limit k -> infinity of the search, where "
        "the overseer's answer becomes X* and the limited-search gap closes.",
    ),
)
"""The claims of the search family, in ledger order."""


__all__ = ["CLAIMS", "prove_limited_search_imitation", "prove_unbounded_search_limit"]
