"""Properties of the indicator family: imitation as RL with the reward 1[x = demonstration].

Claims ``indicator-reward-is-imitation`` (exact engine and complex-step gradients) and
``indicator-reward-stochastic-demonstrator``, which is refuted: the search looks for a
demonstrator ``q`` whose imitation optimum RL with the indicator reward leaves, and
:func:`spec.confirm_indicator_counterexample` confirms it in rationals (statements and
proof: :mod:`spec.claims.indicator`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

import impl as _impl
from impl import (
    exact_expectation,
    indicator_reward,
    rl_trajectory,
    smooth_step_size,
    softmax,
    unbounded_search,
)
from impl.types import FloatArray
from properties.claims._common import (
    EXACT_RTOL,
    ClaimSpec,
    Planted,
    Property,
    _estimator_problems,
    _exact_mismatch,
    _max_abs,
    _rational,
)
from properties.claims._violations import Violation
from properties.strategies import PolicyProblem, distributions

# ---------------------------------------------------------------------------------------------
# indicator-reward-is-imitation


def _check_indicator_is_imitation(pb: PolicyProblem) -> Violation | None:
    x_star = unbounded_search(pb.scores)
    p = softmax(pb.logits)
    imitation = np.eye(pb.n)[x_star] - p
    v = _exact_mismatch(indicator_reward(x_star), pb, p[x_star] * imitation, "indicator reward")
    if v is not None:
        return v
    grad_p = np.array([_complex_step_p(pb.logits, x_star, i) for i in range(pb.n)])
    err = _max_abs(grad_p - p[x_star] * imitation)
    if err > EXACT_RTOL:
        return Violation(
            "grad p(X*) != p(X*) grad log p(X*)", {"logits": pb.logits, "grad p": grad_p}
        )
    return None


def _complex_step_p(theta: FloatArray, x: int, i: int) -> float:
    h = 1e-30
    z = theta.astype(np.complex128)
    z[i] += 1j * h
    z = z - z.real.max()
    e = np.exp(z)
    return float((e[x] / e.sum()).imag / h)


# ---------------------------------------------------------------------------------------------
# indicator-reward-stochastic-demonstrator: the counterexample search and its exact confirmation


@st.composite
def _stochastic_demonstrators(draw: st.DrawFn) -> FloatArray:
    """Demonstrators of full support (stochastic) and point masses (deterministic)."""
    n = draw(st.integers(2, 4))
    point = draw(st.booleans())
    if point:
        mass: FloatArray = np.eye(n)[draw(st.integers(0, n - 1))]
        return mass
    return draw(distributions(n, full_support=True))


def _counterexample_indicator_stochastic(q: FloatArray) -> Violation | None:
    """RL with reward 1[x = demo], demo ~ q, versus imitation of q: do their optima differ?"""
    n = q.size
    if q.max() >= 1.0:
        return None  # a point mass: the equivalence holds
    theta_q = np.log(q)
    # exact expected RL gradient at the imitation optimum p = q: mixture over demonstrations
    e = sum(
        q[d] * exact_expectation(indicator_reward(d), theta_q, np.zeros(n), 2).mean
        for d in range(n)
    )
    grad_at_q = np.asarray(e)
    if _max_abs(grad_at_q) <= EXACT_RTOL:
        return None  # q is stationary for RL too (q uniform on its support)
    # train both from the imitation optimum: imitation stays, RL drifts to argmax q
    # exact RL ascent: the expected reward of answer x is q_x, so J = q.p
    p_rl = rl_trajectory(theta_q, q, step_size=smooth_step_size(q), steps=3000).probs[-1]
    tv = 0.5 * float(np.abs(p_rl - q).sum())
    if tv < 0.05:
        return None
    return Violation(
        "RL with the indicator reward moves away from the demonstrator q towards argmax q",
        {
            "demonstrator q": q,
            "E[RL gradient] at p = q": grad_at_q,
            "RL model after 3000 exact steps": p_rl,
            "imitation model": q,
            "total variation": tv,
        },
    )


def _confirm_indicator(case: Any) -> tuple[bool, dict[str, Any]]:
    """Confirm a demonstrator ``q`` exactly in rationals with :mod:`spec`."""
    import spec

    ind = spec.confirm_indicator_counterexample(
        [_rational(x, snap=True) for x in case], normalise=True
    )
    confirmed = ind.refutes and not ind.imitation_optimum_is_rl_optimal
    return confirmed, {"kind": "sympy rationals", "refutes": confirmed, "report": ind.report()}


# ---------------------------------------------------------------------------------------------
# planted violations: each property must catch its own, through its registered check


def _score_reward(_: int) -> Any:
    """Plain REINFORCE on the score where the reward 1[x = X*] was asked for."""
    return _impl.reinforce


# ---------------------------------------------------------------------------------------------
# the claims of the family


CHECKS: tuple[ClaimSpec, ...] = (
    ClaimSpec(
        "indicator-reward-is-imitation",
        "proved",
        (
            Property(
                "E[1[x=X*] grad log p] = p(X*) (e_X* - p) = grad p(X*)",
                _estimator_problems,
                _check_indicator_is_imitation,
                planted=Planted(
                    "the reward s(x) in place of 1[x = X*]",
                    {"indicator_reward": _score_reward},
                    PolicyProblem(np.array([0.0, 1.0]), np.array([0.0, 2.0]), 2),
                ),
            ),
        ),
        implementation=(indicator_reward, unbounded_search, exact_expectation),
    ),
    ClaimSpec(
        "indicator-reward-stochastic-demonstrator",
        "refuted",
        counterexample=Property(
            "a demonstrator q whose imitation optimum q is not RL's optimum",
            _stochastic_demonstrators(),
            _counterexample_indicator_stochastic,
        ),
        confirm=_confirm_indicator,
        not_a_counterexample=np.array([0.5, 0.5]),
        implementation=(indicator_reward, rl_trajectory, exact_expectation),
    ),
)
"""How each claim of the family is checked, in ledger order."""


__all__ = ["CHECKS"]
