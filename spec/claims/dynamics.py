r"""The dynamics family: what gradient ascent does over time, for RL and for imitation.

Claims (statements only: both are expected to *hold*, which the numeric properties in
:mod:`properties.claims.dynamics` check on trajectories; there is no symbolic proof):

* ``rl-converges-to-xstar``: exact-gradient ascent on :math:`J` with a step size within
  the smoothness bound, :math:`\eta \le 2/(5(\max s - \min s))`, has :math:`J(\theta_t)`
  non-decreasing, :math:`p_t(A^*) \to 1` and :math:`J^* - J(\theta_t) = O(1/t)` (softmax
  policy gradient, Mei et al. 2020);
* ``imitation-converges-to-xstar``: imitating the unbounded-search overseer,
  :math:`p_t(X^*)` increases to 1.

The trajectories are computed by :mod:`impl.dynamics`.

>>> [c.expected for c in CLAIMS]
['holds', 'holds']
"""

from __future__ import annotations

from sympy import Eq, Function, Limit, Order, Symbol, oo

from spec.claims._claim import Claim

# --------------------------------------------------------------------------- the claims

_t = Symbol("t", integer=True, nonnegative=True)
_pt = Function("p_t")
_maxs = Symbol("max s")

CLAIMS: tuple[Claim, ...] = (
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
"""The claims of the dynamics family, in ledger order."""


__all__ = ["CLAIMS"]
