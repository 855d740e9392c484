r"""The RL family: where RL on the overseer's score goes, and how it gets there.

Claims:

* ``rl-optimum-is-xstar`` (proved): :math:`\sup_\theta J = \max s`; over the closed
  simplex the maximisers are exactly the distributions supported on :math:`A^*`, and no
  finite :math:`\theta` attains the supremum unless every answer is a maximiser;
* ``rl-converges-to-xstar`` (holds; stated here, checked on trajectories by
  :mod:`properties.claims.rl`): exact-gradient ascent on :math:`J` with a step size
  within the smoothness bound, :math:`\eta \le 2/(5(\max s - \min s))`, has
  :math:`J(\theta_t)` non-decreasing, :math:`p_t(A^*) \to 1` and
  :math:`J^* - J(\theta_t) = O(1/t)` (softmax policy gradient, Mei et al. 2020).

Their numeric properties are in :mod:`properties.claims.rl`; the policy in
:mod:`impl.policy` and the ascent in :mod:`impl.dynamics`.

>>> prove_rl_optimum_is_xstar().ok
True
>>> prove_rl_optimum_is_xstar(sup=0).ok
False
"""

from __future__ import annotations

import sympy
from sympy import Eq, Function, IndexedBase, Order, Sum, Symbol, exp, oo

from spec._core import (
    Expr,
    Proof,
    Step,
    check_identity,
    check_limit,
    check_sign,
    check_solve,
    make_proof,
)
from spec.claims._claim import Claim
from spec.symbols import i, n, s

# --------------------------------------------------------------------------- the proofs


def prove_rl_optimum_is_xstar(*, sup: Expr | None = None) -> Proof:
    r"""``rl-optimum-is-xstar``: :math:`\sup_\theta J = \max s =: M`, maximisers supported on :math:`A^*`.

    General ``n``: :math:`J - M = \sum_i p_i (s_i - M)`, every term :math:`\le 0`; a term with
    :math:`s_i < M` vanishes iff :math:`p_i = 0`; softmax has every :math:`p_i > 0` so
    :math:`J < M` unless :math:`A^* = D`; and :math:`\theta = t 1_{A^*}` gives
    :math:`J \to M` (candidate ``sup``) as :math:`t \to \infty`.
    """
    big_m = Symbol("M", real=True)
    target = big_m if sup is None else sympy.sympify(sup)
    pn = IndexedBase("p", nonnegative=True)
    p0 = Symbol("p_i", nonnegative=True)
    ppos = Symbol("p_i", positive=True)
    dle = Symbol("d_i", nonpositive=True)
    dlt = Symbol("d_i", negative=True)
    t = Symbol("t", real=True)
    a_cnt = Symbol("a", positive=True)  # |A*|
    rest = Symbol("b", nonnegative=True)  # n - |A*|
    s_rest = Symbol("S", real=True)  # sum of the scores outside A*
    total = Sum(pn[i], (i, 0, n - 1))

    def build() -> list[Step]:
        return [
            check_identity(
                "J - M = sum_i p_i (s_i - M) when sum_i p_i = 1",
                Sum(pn[i] * s[i], (i, 0, n - 1)) - big_m,
                Sum(pn[i] * (s[i] - big_m), (i, 0, n - 1)),
                assume={total: 1},
            ),
            check_sign(
                "each term p_i (s_i - M) <= 0 (p_i >= 0, s_i <= M), so J <= M",
                p0 * dle,
                "nonpositive",
            ),
            check_solve(
                "for s_i < M the term p_i (s_i - M) is 0 only if p_i = 0: "
                "J = M iff p is supported on A*",
                p0 * dlt,
                p0,
                [0],
            ),
            check_identity(
                "conversely any p supported on A* has J = sum_{A*} p_i M = M",
                (Sum(pn[i] * big_m, (i, 0, n - 1))).doit(),
                big_m * total,
            ),
            check_limit(
                "theta = t 1_{A*}: J(t) = (a e^t M + S)/(a e^t + b) -> candidate sup as t -> oo",
                (a_cnt * exp(t) * big_m + s_rest) / (a_cnt * exp(t) + rest),
                t,
                oo,
                target,
            ),
            check_sign(
                "softmax has p_i > 0, so a term with s_i < M is < 0 and J < M at every finite "
                "theta unless every answer is a maximiser",
                ppos * dlt,
                "negative",
            ),
        ]

    return make_proof(
        "rl-optimum-is-xstar",
        "sup_theta J = max s; maximisers on the simplex = distributions on A*; "
        "not attained at finite theta unless all scores are equal",
        build,
    )


# --------------------------------------------------------------------------- the claims

_t = Symbol("t", integer=True, nonnegative=True)
_sup = Symbol("sup_theta J")
_maxs = Symbol("max s")

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "rl-optimum-is-xstar",
        "sup_theta J = max s; over the closed simplex the maximisers are exactly the "
        "distributions supported on A*; no finite theta attains it unless all scores are equal",
        "proved",
        Eq(_sup, _maxs),
        ("tabular softmax", "ties allowed: A* is the set of maximisers"),
        prover=prove_rl_optimum_is_xstar,
        parameterisation="any distribution on the closed simplex for the maximisers; tabular "
        "softmax for 'no finite theta attains it'",
        ties="allowed: A* is the set of all maximisers and every distribution supported on A* "
        "is optimal (RL does not choose among tied answers)",
        meaning="RL on the overseer's score is after the best answers and nothing else; a "
        "softmax policy only approaches them as its logits diverge.",
    ),
    Claim(
        "rl-converges-to-xstar",
        "exact-gradient ascent on J with eta <= 2/(5 (max s - min s)): J(theta_t) "
        "non-decreasing, p_t(A*) -> 1, J* - J(theta_t) = O(1/t)",
        "holds",
        Eq(_maxs - Function("J")(_t), Order(1 / _t, (_t, oo))),
        ("scores in [0, 1]", "J is 5/2-smooth", "Mei et al. 2020"),
        parameterisation="tabular softmax, exact (expected) gradient ascent with the constant "
        "step eta = 2/(5 (max s - min s)) (scores of any range: the step scales with their "
        "spread); sampled RLOO ascent in the statistical property",
        ties="allowed: the mass goes to the set A*; how it divides among tied maximisers "
        "depends on theta_0",
        meaning="with exact gradients RL gets there: its expected score rises every step and "
        "the gap closes like 1/t, though plateaus can make that slow.",
    ),
)
"""The claims of the RL family, in ledger order."""


__all__ = ["CLAIMS", "prove_rl_optimum_is_xstar"]
