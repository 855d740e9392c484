r"""The indicator family: imitation written as RL with the reward 1[x = demonstration].

The thread's reverse mapping turns imitation into RL by rewarding the overseer's
demonstrated answer with 1 and every other answer with 0.  Claims:

* ``indicator-reward-is-imitation`` (proved): for a deterministic demonstration
  :math:`X^*`, :math:`E[1[x=X^*]\nabla\log p(x)] = \nabla p(X^*) = p(X^*)\nabla\log p(X^*)`,
  a positive multiple of the imitation gradient;
* ``indicator-reward-stochastic-demonstrator`` (refuted): for a stochastic demonstrator
  ``q`` the expected RL gradient is :math:`\nabla(q\cdot p)`, whose optimum sits on
  :math:`\arg\max q`, while imitation's optimum is ``q`` itself.  The documented
  counterexample is confirmed exactly by
  :func:`spec.counterexamples.confirm_indicator_counterexample`.

Their numeric properties are in :mod:`properties.claims.indicator`; the indicator reward
in :mod:`impl.estimators`.

>>> prove_indicator_reward_is_imitation().ok
True
>>> CLAIMS[1].refute().refutes
True
"""

from __future__ import annotations

from fractions import Fraction
from functools import partial

import sympy
from sympy import Derivative, Eq, Function, KroneckerDelta, Sum, Symbol, diff, log

from spec._core import Expr, Proof, Step, check_identity, check_sign, check_solve, make_proof
from spec.claims._claim import Claim
from spec.counterexamples import confirm_indicator_counterexample
from spec.symbols import N_COORD, general_p, i, m, q, softmax_p, vartheta

# --------------------------------------------------------------------------- the proofs


def prove_indicator_reward_is_imitation(*, multiple: Expr | None = None) -> Proof:
    r"""``indicator-reward-is-imitation``: :math:`E[1[x=x^*]\nabla\log p(x)] = p(x^*)\nabla\log p(x^*)`.

    Any parameterisation, general ``n`` (:math:`x^* = m`):
    :math:`\sum_i p_i \delta_{i x^*}\partial\log p_i = p_{x^*}\partial\log p_{x^*} = \partial p_{x^*}`,
    a positive multiple (candidate ``multiple``, default :math:`p(x^*)`) of the imitation
    gradient; for softmax, :math:`p_{x^*}(e_{x^*} - p)`.
    """
    px = general_p(m)
    cand = px if multiple is None else sympy.sympify(multiple)
    pos = Symbol("P", positive=True)
    dv = Symbol("D", real=True)
    gfun = sympy.Function("g_c")

    def build() -> list[Step]:
        lhs = Sum(general_p(i) * KroneckerDelta(i, m) * diff(log(general_p(i)), vartheta),
                  (i, 0, N_COORD - 1))
        return [
            check_identity(
                "E[1[x = x*] d log p(x)] = p(x*) d log p(x*) (the Kronecker delta picks x* = m)",
                lhs,
                cand * diff(log(px), vartheta),
                doit=True,
            ),
            check_identity(
                "= d p(x*)/dvartheta",
                lhs,
                diff(px, vartheta),
                doit=True,
            ),
            check_identity(
                "softmax: sum_i p_i delta_{i x*} g_c(i) = p_{x*} g_c(x*) for any score vector g_c, "
                "in particular g_c(i) = delta_ic - p_c: p_{x*} times the imitation gradient "
                "(e_{x*} - p)_c",
                Sum(softmax_p(i) * KroneckerDelta(i, m) * gfun(i), (i, 0, N_COORD - 1)),
                cand.subs(px, softmax_p(m)) * gfun(m),
                doit=True,
            ),
            check_sign(
                "the multiple is positive (softmax: p(x*) = e^theta_x* / Z > 0)",
                cand.subs(px, pos),
                "positive",
            ),
            check_solve(
                "same fixed points: P * D = 0 with P > 0 only when D = 0",
                pos * dv,
                dv,
                [0],
            ),
        ]

    return make_proof(
        "indicator-reward-is-imitation",
        "E[1[x = X*] grad log p(x)] = grad p(X*) = p(X*) grad log p(X*)",
        build,
    )


# --------------------------------------------------------------------------- the claims

_score = Derivative(log(general_p(i)), vartheta)
_argmax = Function("argmax")

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "indicator-reward-is-imitation",
        "reward 1[x = X*] for a deterministic demonstration: E[1[x=X*] grad log p(x)] = "
        "grad p(X*) = p(X*) grad log p(X*)",
        "proved",
        Eq(
            Sum(general_p(i) * KroneckerDelta(i, m) * _score, (i, 0, N_COORD - 1)),
            general_p(m) * Derivative(log(general_p(m)), vartheta),
        ),
        ("X* = m, 0 <= m < n", "p(X*) > 0"),
        prover=prove_indicator_reward_is_imitation,
        parameterisation="any differentiable p(i, vartheta) (the proof); for tabular softmax "
        "the update is p(X*) (e_X* - p)",
        ties="the demonstration X* is one fixed answer (a deterministic demonstrator); with "
        "tied maximisers it is the tie-rule winner, the lowest index",
        meaning="for a deterministic overseer, RL on the reward 1[x = X*] is imitation of X* "
        "with a step scaled by p(X*) > 0: same direction, same fixed points, slower when "
        "p(X*) is small.",
    ),
    Claim(
        "indicator-reward-stochastic-demonstrator",
        "'RL with reward 1[x = demo] is equivalent to imitation' for a stochastic "
        "demonstrator q (expected gradient grad (q.p), optimum on argmax q, vs imitation's q)",
        "refuted",
        Eq(
            _argmax(Sum(q[i] * softmax_p(i), (i, 0, N_COORD - 1))),
            _argmax(Sum(q[i] * log(softmax_p(i)), (i, 0, N_COORD - 1))),
        ),
        ("demo ~ q independent of x ~ p",),
        counterexample=partial(confirm_indicator_counterexample, [Fraction(1, 3), Fraction(2, 3)]),
        parameterisation="tabular softmax; exact RL ascent on J = q.p against the imitation "
        "optimum p = q",
        ties="ties in q matter: when q is uniform on its support, q is one of RL's optima "
        "(RL's gradient vanishes there), so a counterexample needs unequal masses; RL's "
        "optimum is any distribution on argmax q",
        meaning="the reverse mapping fails for a stochastic demonstrator: RL collapses onto "
        "the demonstrator's most frequent answer, imitation keeps its whole distribution; "
        "they agree only for a point mass.",
    ),
)
"""The claims of the indicator family, in ledger order."""


__all__ = ["CLAIMS", "prove_indicator_reward_is_imitation"]
