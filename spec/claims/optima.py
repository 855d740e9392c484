r"""The optima family: where RL on the score and imitation of a demonstrator end up.

Claims (statements and checked SymPy derivations):

* ``rl-optimum-is-xstar``: :math:`\sup_\theta J = \max s`; over the closed simplex the
  maximisers are exactly the distributions supported on :math:`A^*`, and no finite
  :math:`\theta` attains the supremum unless every answer is a maximiser;
* ``imitation-optimum-is-demonstrator``: :math:`\arg\max_p \sum_i q_i \log p_i = q`
  (Gibbs' inequality).

Their numeric properties are in :mod:`properties.claims.optima`; the policy and its
objective in :mod:`impl.policy`, imitation ascent in :mod:`impl.dynamics`.

>>> prove_rl_optimum_is_xstar().ok, prove_imitation_optimum_is_demonstrator().ok
(True, True)
>>> prove_imitation_optimum_is_demonstrator(optimum=lambda q: q**2).ok
False
"""

from __future__ import annotations

from collections.abc import Callable

import sympy
from sympy import Derivative, Eq, Function, IndexedBase, Sum, Symbol, exp, log, oo

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
from spec.claims._lemmas import imitation_optimum_steps as _imitation_optimum_steps
from spec.symbols import N_COORD, PARTITION, i, m, n, q, s, softmax_p, theta

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


def prove_imitation_optimum_is_demonstrator(
    *, optimum: Callable[[Expr], Expr] = lambda qm: qm
) -> Proof:
    r"""``imitation-optimum-is-demonstrator``: :math:`\arg\max_p \sum_i q_i \log p_i = q`.

    General ``n``: the Lagrangian's stationary point is :math:`p = q` (candidate
    ``optimum(q_m)``), and Gibbs' inequality (:math:`\log x \le x - 1`) shows it is the
    global maximum.  For softmax the gradient is :math:`q - p`.
    """

    def build() -> list[Step]:
        steps = _imitation_optimum_steps(optimum)
        steps.append(
            check_identity(
                "softmax: d/dtheta_m sum_i q_i log p_i = q_m - p_m sum_i q_i = q_m - p_m",
                Derivative(Sum(q[i] * log(softmax_p(i)), (i, 0, N_COORD - 1)), theta[m]),
                q[m] - softmax_p(m) * Sum(q[i], (i, 0, N_COORD - 1)),
                doit=True,
                assume=PARTITION,
            )
        )
        return steps

    return make_proof(
        "imitation-optimum-is-demonstrator",
        "argmax over the simplex of sum_i q_i log p_i is p = q",
        build,
    )


# --------------------------------------------------------------------------- the claims

_argmax = Function("argmax")
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
        "imitation-optimum-is-demonstrator",
        "argmax over the simplex of sum_i q_i log p_i is p = q (Gibbs' inequality)",
        "proved",
        Eq(_argmax(Sum(q[i] * log(Symbol("p")), (i, 0, n - 1))), q),
        ("q a distribution over the n answers",),
        prover=prove_imitation_optimum_is_demonstrator,
        parameterisation="any distribution on the simplex (0 log 0 = 0); for tabular softmax "
        "the gradient is q - p",
        ties="no scores are involved: the optimum is the demonstrator's whole output "
        "distribution q",
        meaning="imitation copies what the demonstrator does, randomness included, not what "
        "the demonstrator would rate best.",
    ),
)
"""The claims of the optima family, in ledger order."""


__all__ = ["CLAIMS", "prove_imitation_optimum_is_demonstrator", "prove_rl_optimum_is_xstar"]
