r"""The imitation family: where imitating a demonstrator goes, and imitating X* in particular.

Claims:

* ``imitation-optimum-is-demonstrator`` (proved):
  :math:`\arg\max_p \sum_i q_i \log p_i = q` (Gibbs' inequality);
* ``imitation-converges-to-xstar`` (holds; stated here, checked on trajectories by
  :mod:`properties.claims.imitation`): imitating the unbounded-search overseer,
  :math:`p_t(X^*)` increases to 1.

Their numeric properties are in :mod:`properties.claims.imitation`; imitation ascent in
:mod:`impl.dynamics`, the unbounded search in :mod:`impl.search`.

>>> prove_imitation_optimum_is_demonstrator().ok
True
>>> prove_imitation_optimum_is_demonstrator(optimum=lambda q: q**2).ok
False
"""

from __future__ import annotations

from collections.abc import Callable

from sympy import Derivative, Eq, Function, Limit, Sum, Symbol, log, oo

from spec._core import (
    Expr,
    Proof,
    Step,
    check_identity,
    make_proof,
)
from spec.claims._claim import Claim
from spec.claims._lemmas import imitation_optimum_steps as _imitation_optimum_steps
from spec.symbols import N_COORD, PARTITION, i, m, n, q, softmax_p, theta

# --------------------------------------------------------------------------- the proofs


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

_t = Symbol("t", integer=True, nonnegative=True)
_argmax = Function("argmax")
_pt = Function("p_t")

CLAIMS: tuple[Claim, ...] = (
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
    Claim(
        "imitation-converges-to-xstar",
        "imitating the unbounded-search overseer: p_t(X*) increases to 1",
        "holds",
        Eq(Limit(_pt(Symbol("X*"), _t), _t, oo), 1),
        ("gradient ascent on log p_t(X*)",),
        parameterisation="tabular softmax, gradient ascent on log p_t(X*) with step 1; the "
        "sampled version draws its demonstrations from the overseer",
        ties="X* is the lowest-index maximiser (the tie rule of unbounded search): with tied "
        "maximisers imitation puts all its mass on that one answer",
        meaning="given unlimited compute the overseer always demonstrates X*, and imitating it "
        "reaches X*, as RL does: the equivalence the thread starts from.",
    ),
)
"""The claims of the imitation family, in ledger order."""


__all__ = ["CLAIMS", "prove_imitation_optimum_is_demonstrator"]
