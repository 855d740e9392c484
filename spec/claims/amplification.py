r"""The amplification family: amplify by best-of-k search, distil by imitation, repeat.

Claim ``iterated-amplification-converges`` (proved): if each round amplifies the current
model by best-of-``k`` search (proposal = the model) and distils by imitating the result
to convergence, then :math:`p_{t+1} = B_k(p_t)`, and the mass on the maximisers,
:math:`a_t = p_t(A^*)`, follows :math:`a_{t+1} = 1-(1-a_t)^k`, strictly increasing to 1
for :math:`k \ge 2` and :math:`0 < a_0 < 1`.

Its numeric properties are in :mod:`properties.claims.amplification`; the trajectories
in :mod:`impl.dynamics`.

>>> prove_iterated_amplification_converges(max_k=3).ok
True
>>> prove_iterated_amplification_converges(amplify=lambda a, k: a, max_k=3).ok
False
"""

from __future__ import annotations

from collections.abc import Callable

import sympy
from sympy import Eq, Function, Limit, Symbol, diff, exp, log, oo

from spec._core import (
    Expr,
    Proof,
    Step,
    check_identity,
    check_limit,
    check_predicate,
    check_sign,
    make_proof,
)
from spec.claims._claim import Claim
from spec.claims._lemmas import B as _b
from spec.claims._lemmas import Q as _q_astar
from spec.claims._lemmas import astar_mass as _default_astar_mass
from spec.claims._lemmas import best_of_k_steps as _best_of_k_steps
from spec.claims._lemmas import imitation_stationary_steps as _imitation_stationary_steps
from spec.symbols import k

# --------------------------------------------------------------------------- the proofs


_a = Symbol("a", positive=True)
"""a_t = p_t(A*)."""


_k2 = Symbol("kappa", integer=True, nonnegative=True)
"""k = kappa + 2 encodes k >= 2."""


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
        steps = _imitation_stationary_steps(lambda qm: qm)
        steps += _best_of_k_steps(_default_astar_mass)[4:]
        steps += [
            check_identity(
                "a_{t+1} = B_k(p_t)(A*): the A* mass of best-of-k (the step before) with the "
                "proposal p_t, so q(A*) = a_t, is the candidate map",
                steps[-1].rhs,
                f,
                given={_q_astar: a, k: kk},
            ),
            check_sign(
                "f is strictly increasing on (0, 1): f'(a) > 0 (b = 1 - a > 0, k >= 2)",
                diff(f, a).subs(a, 1 - _b),
                "positive",
            ),
            check_identity(
                "h(b) = (f(a) - a)/b at a = 1 - b satisfies h(1) = 0",
                (fb - (1 - _b)) / _b,
                0,
                given={_b: 1},
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
            check_identity("1 is a fixed point: f(1) = 1", f, 1, given={a: 1}),
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


# --------------------------------------------------------------------------- the claims

_t = Symbol("t", integer=True, nonnegative=True)
_a_t = Function("a")

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "iterated-amplification-converges",
        "p_{t+1} = B_k(p_t), a_{t+1} = 1-(1-a_t)^k strictly increasing to 1 for k >= 2, "
        "0 < a_0 < 1",
        "proved",
        sympy.And(Eq(_a_t(_t + 1), 1 - (1 - _a_t(_t)) ** k), Eq(Limit(_a_t(_t), _t, oo), 1)),
        ("k >= 2", "0 < a_0 < 1", "distillation reaches the imitation optimum"),
        prover=prove_iterated_amplification_converges,
        parameterisation="a model that can represent B_k(p_t) exactly (tabular), distilled to "
        "its imitation optimum every round",
        ties="ties allowed: a_t is the mass on the whole set A*; the search's tie rule (lowest "
        "index wins) only orders A* internally",
        meaning="iterating limited search and imitation recovers the unlimited-compute answer: "
        "each round's search finds A* more often than the model it started from.",
    ),
)
"""The claims of the amplification family."""


__all__ = ["CLAIMS", "prove_iterated_amplification_converges"]
