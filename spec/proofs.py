r"""The derivations of the "proved" claims, one function per claim, every step checked by SymPy.

Each ``prove_*`` function rebuilds its derivation from scratch on every call (nothing is
cached) and takes keyword-only *candidate* arguments: the piece of the statement being
proved (the softmax score, the baseline factor, the amplification map, ...).  The
defaults are the statements of ``CLAIMS.md``; passing a wrong candidate must make the
proof report ``ok=False``, which is how the tests show the proofs can fail.

>>> prove_self_inclusive_baseline_scales().ok
True
>>> prove_self_inclusive_baseline_scales(factor=1).ok
False
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import sympy
from sympy import (
    Piecewise,
    Product,
    Symbol,
    diff,
    exp,
    log,
    oo,
)

from spec._core import (
    Expr,
    Proof,
    Step,
    check_cases,
    check_identity,
    check_limit,
    check_predicate,
    check_sign,
    make_proof,
)
from spec.claims._lemmas import B as _b
from spec.claims._lemmas import astar_mass as _default_astar_mass
from spec.claims._lemmas import best_of_k_steps as _best_of_k_steps
from spec.claims._lemmas import imitation_optimum_steps as _imitation_optimum_steps
from spec.claims.estimators import (
    BaselineCandidate,
    ScoreCandidate,
    group_mean,
    leave_one_out,
    prove_baseline_invariant,
    prove_reinforce_raises_above_average,
    prove_reinforce_unbiased,
    prove_self_inclusive_baseline_scales,
)
from spec.claims.indicator import prove_indicator_reward_is_imitation
from spec.claims.optima import prove_imitation_optimum_is_demonstrator, prove_rl_optimum_is_xstar
from spec.symbols import (
    k,
    n,
)

# --------------------------------------------------------------------------- shared steps

_a = Symbol("a", positive=True)
"""a_t = p_t(A*)."""

_k2 = Symbol("kappa", integer=True, nonnegative=True)
"""k = kappa + 2 encodes k >= 2."""


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


# --------------------------------------------------------------------------- the claims


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
        steps += _imitation_optimum_steps(lambda qm: qm)[:4]
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
        return Piecewise((1, x <= jv), (0, True))

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
                out.append(
                    (f"n={size}, rank {jv}", cdf(jv) - cdf(jv - 1), 1 if jv == size else 0)
                )
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
                _default_astar_mass(sympy.Integer(1), k),
                limit_value,
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


def prove_iterated_amplification_converges(
    *, amplify: Callable[[Expr, Expr], Expr] = _default_astar_mass, max_k: int = 8
) -> Proof:
    r"""``iterated-amplification-converges``: :math:`a_{t+1} = f(a_t) = 1-(1-a_t)^k \uparrow 1`.

    General ``k >= 2`` (written :math:`k = \kappa + 2`): distillation reaches
    :math:`p_{t+1} = B_k(p_t)` (imitation optimum), so :math:`a_{t+1} = f(a_t)` (candidate
    ``amplify(a, k)``); :math:`f' > 0` on (0,1); :math:`f(a) - a = b(1 - b^{k-1}) > 0` with
    :math:`b = 1 - a \in (0,1)`; :math:`f(a) < 1`; :math:`f(1) = 1`; and
    :math:`1 - a_t = b_0^{k^t} \to 0`.  The real fixed points of ``f`` on ``[0, 1]`` are
    listed for ``k <= max_k`` as a bounded cross-check.
    """
    kk = _k2 + 2
    a = _a
    f = amplify(a, kk)
    fb = f.subs(a, 1 - _b)
    t = Symbol("t", integer=True, nonnegative=True)
    tr = Symbol("t", positive=True)
    b0 = Symbol("b_0", positive=True)
    c = Symbol("c", positive=True)
    big_l = Symbol("L", positive=True)

    def fixed_points() -> tuple[bool, str]:
        x = Symbol("x", real=True)
        for kv in range(2, max_k + 1):
            poly = sympy.Poly(sympy.expand(amplify(x, sympy.Integer(kv)) - x), x)
            if poly.is_zero:
                return False, f"k={kv}: f(a) = a identically"
            roots = sorted({rt for rt in sympy.real_roots(poly) if 0 <= rt <= 1})
            if roots != [0, 1]:
                return False, f"k={kv}: real fixed points in [0, 1] are {roots}, expected [0, 1]"
        return True, f"k = 2..{max_k}: real fixed points in [0, 1] are exactly 0 and 1"

    def log_k_positive() -> tuple[bool, str]:
        value = log(kk).is_positive
        return value is True, f"log(kappa + 2) > 0: {value}"

    def build() -> list[Step]:
        steps = _imitation_optimum_steps(lambda qm: qm)[:4]
        steps += _best_of_k_steps(_default_astar_mass)[4:]
        steps += [
            check_identity(
                "a_{t+1} = B_k(p_t)(A*) = 1 - (1 - a_t)^k is the candidate map",
                _default_astar_mass(a, kk),
                f,
            ),
            check_sign(
                "f is strictly increasing on (0, 1): f'(a) > 0 (b = 1 - a > 0, k >= 2)",
                diff(f, a).subs(a, 1 - _b),
                "positive",
            ),
            check_identity(
                "h(b) = (f(a) - a)/b at a = 1 - b satisfies h(1) = 0",
                ((fb - (1 - _b)) / _b).subs(_b, 1),
                0,
            ),
            check_sign(
                "h'(b) < 0 for b > 0, so h(b) > h(1) = 0 for 0 < b < 1: f(a) > a on (0, 1)",
                diff(sympy.simplify((fb - (1 - _b)) / _b), _b),
                "negative",
            ),
            check_sign(
                "f maps (0, 1) into (0, 1): 1 - f(a) > 0 (and f(a) > a > 0)",
                1 - fb,
                "positive",
            ),
            check_identity("1 is a fixed point: f(1) = 1", f.subs(a, 1), 1),
            check_identity(
                "recursion: 1 - a_t = b_0^(k^t) solves 1 - a_{t+1} = (1 - a_t)^k",
                1 - amplify(1 - b0 ** (kk**t), kk),
                b0 ** (kk ** (t + 1)),
                kind="recursion",
            ),
            check_predicate(
                "k >= 2: L = log k > 0, so k^t = e^(L t) -> oo",
                "log(k) > 0",
                log_k_positive,
            ),
            check_limit(
                "0 < a_0 < 1, b_0 = 1/(1+c): 1 - a_t = b_0^(e^(L t)) -> 0, so a_t increases to 1",
                (1 / (1 + c)) ** exp(big_l * tr),
                tr,
                oo,
                0,
            ),
            check_predicate(
                "bounded cross-check: the only real fixed points of f on [0, 1] are 0 and 1",
                "real_roots(f(a) - a) in [0, 1] = [0, 1]",
                fixed_points,
                kind="solve",
                scope="bounded",
                bound=f"2 <= k <= {max_k}",
                role="cross-check",
            ),
        ]
        return steps

    return make_proof(
        "iterated-amplification-converges",
        "p_{t+1} = B_k(p_t), a_{t+1} = 1-(1-a_t)^k strictly increases to 1 (k >= 2, 0 < a_0 < 1)",
        build,
    )


__all__ = [
    "BaselineCandidate",
    "ScoreCandidate",
    "group_mean",
    "leave_one_out",
    "prove_baseline_invariant",
    "prove_imitation_optimum_is_demonstrator",
    "prove_indicator_reward_is_imitation",
    "prove_iterated_amplification_converges",
    "prove_limited_search_imitation",
    "prove_reinforce_raises_above_average",
    "prove_reinforce_unbiased",
    "prove_rl_optimum_is_xstar",
    "prove_self_inclusive_baseline_scales",
    "prove_unbounded_search_limit",
]
