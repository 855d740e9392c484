"""Properties of the imitation family: imitation's optimum, and imitating X* reaching it.

Claims ``imitation-optimum-is-demonstrator`` and ``imitation-converges-to-xstar``
(statements and proof: :mod:`spec.claims.imitation`).  Gibbs' inequality is checked
through Pinsker's bound; convergence on exact trajectories of
:func:`impl.imitation_trajectory`, and the sampled imitation of the unbounded-search
overseer against the exact trajectory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

import impl as _impl
from impl import imitation_trajectory, sampled_imitation_trajectory, softmax, unbounded_search
from impl.types import FloatArray
from properties.claims._common import (
    EXACT_RTOL,
    ClaimSpec,
    Planted,
    Property,
    _case_seed,
    _max_abs,
    _trajectory_cases,
)
from properties.claims._violations import Violation
from properties.strategies import distributions, logits

# ---------------------------------------------------------------------------------------------
# imitation-optimum-is-demonstrator


def _check_gibbs(case: tuple[FloatArray, FloatArray]) -> Violation | None:
    q, theta = case
    p = softmax(theta)
    from scipy.special import rel_entr

    kl = float(np.sum(rel_entr(q, p)))
    tv = 0.5 * float(np.abs(q - p).sum())
    # Pinsker: KL >= 2 TV^2 > 0 unless p = q; the cross-entropy gap sum q log q - sum q log p = KL
    if kl < 2 * tv * tv - 1e-12:
        return Violation(f"KL(q||p) = {kl:.3g} < 2 TV^2 = {2 * tv * tv:.3g}", {"q": q, "p": p})
    return None


def _check_imitation_to_q(case: tuple[FloatArray, FloatArray]) -> Violation | None:
    q, theta = case
    tr = imitation_trajectory(theta, q, step_size=1.0, steps=400)
    err = _max_abs(tr.probs[-1] - q)
    if err > 1e-6:
        return Violation(
            f"imitation ended {err:.3g} from the demonstrator",
            {"q": q, "logits": theta, "p_T": tr.probs[-1]},
        )
    return None


@st.composite
def _q_and_theta(draw: st.DrawFn, *, full_support: bool = False) -> tuple[FloatArray, FloatArray]:
    n = draw(st.integers(2, 5))
    return draw(distributions(n, full_support=full_support)), draw(logits(n, max_abs=5.0))


# ---------------------------------------------------------------------------------------------
# imitation-converges-to-xstar


IMITATION_STEPS = 2000


def _check_imitation_to_xstar(case: tuple[FloatArray, FloatArray]) -> Violation | None:
    theta0, s = case
    x_star = unbounded_search(s)
    tr = imitation_trajectory(theta0, np.eye(s.size)[x_star], step_size=1.0, steps=IMITATION_STEPS)
    m = tr.probs[:, x_star]
    still_moving = m[:-1] < 1.0
    if np.any((np.diff(m) <= 0) & still_moving):
        t = int(np.argmax((np.diff(m) <= 0) & still_moving))
        return Violation(f"p_t(X*) did not increase at step {t}", {"logits": theta0, "scores": s})
    if m[-1] < 0.99:
        return Violation(
            f"p_T(X*) = {m[-1]:.4f} < 0.99 after {IMITATION_STEPS} steps",
            {"logits": theta0, "scores": s},
        )
    return None


def _check_sampled_imitation_of_xstar(case: tuple[FloatArray, FloatArray]) -> Violation | None:
    theta0, s = case
    x_star = unbounded_search(s)
    demonstrator = np.eye(s.size)[x_star]
    exact = imitation_trajectory(theta0, demonstrator, step_size=1.0, steps=200)
    rng = np.random.default_rng(_case_seed(0, theta0, s))
    sampled = sampled_imitation_trajectory(
        theta0, demonstrator, step_size=1.0, steps=200, batch=4, rng=rng
    )
    err = _max_abs(sampled.probs - exact.probs)
    if err > EXACT_RTOL:
        return Violation(
            f"sampled and exact imitation of X* differ by {err:.3g}",
            {"logits": theta0, "scores": s},
        )
    return None


# ---------------------------------------------------------------------------------------------
# planted violations: each property must catch its own, through its registered check


def _twice_softmax(theta: FloatArray) -> FloatArray:
    """2 softmax(theta): not a distribution."""
    out: FloatArray = 2.0 * _impl.softmax(theta)
    return out


def _imitate_reversed(theta: FloatArray, target: FloatArray, *, step_size: float, steps: int) -> Any:
    """Imitation of the demonstrator with its answers reversed."""
    return _impl.imitation_trajectory(theta, target[::-1], step_size=step_size, steps=steps)


def _half_step_sampled(theta: FloatArray, demonstrator: FloatArray, **kwargs: Any) -> Any:
    """Sampled imitation with half the step size of the exact trajectory."""
    kwargs["step_size"] = 0.5 * kwargs["step_size"]
    return _impl.sampled_imitation_trajectory(theta, demonstrator, **kwargs)


_Q = np.array([0.25, 0.75])
_X_STAR_CASE = (np.zeros(2), np.array([0.0, 1.0]))


# ---------------------------------------------------------------------------------------------
# the claims of the family


CHECKS: tuple[ClaimSpec, ...] = (
    ClaimSpec(
        "imitation-optimum-is-demonstrator",
        "proved",
        (
            Property(
                "Gibbs: KL(q||p) >= 2 TV(q,p)^2 (Pinsker), zero only at p = q",
                _q_and_theta(),
                _check_gibbs,
                planted=Planted(
                    "p = 2 softmax(theta), not a distribution",
                    {"softmax": _twice_softmax},
                    (_Q, np.log(_Q)),
                ),
            ),
            Property(
                "imitation ascent converges to q",
                _q_and_theta(full_support=True),
                _check_imitation_to_q,
                0.5,
                planted=Planted(
                    "imitation of the reversed demonstrator",
                    {"imitation_trajectory": _imitate_reversed},
                    (_Q, np.zeros(2)),
                ),
            ),
        ),
        implementation=(imitation_trajectory, softmax),
    ),
    ClaimSpec(
        "imitation-converges-to-xstar",
        "holds",
        (
            Property(
                f"imitating X*: p_t(X*) strictly increasing, >= 0.99 after {IMITATION_STEPS} steps",
                _trajectory_cases(min_distinct=1),
                _check_imitation_to_xstar,
                0.5,
                planted=Planted(
                    "imitation of the reversed demonstrator (away from X*)",
                    {"imitation_trajectory": _imitate_reversed},
                    _X_STAR_CASE,
                ),
            ),
            Property(
                "sampled imitation of the unbounded-search overseer equals the exact trajectory "
                "(its demonstrations are always X*)",
                _trajectory_cases(min_distinct=1),
                _check_sampled_imitation_of_xstar,
                0.5,
                planted=Planted(
                    "sampled imitation with half the step size",
                    {"sampled_imitation_trajectory": _half_step_sampled},
                    _X_STAR_CASE,
                ),
            ),
        ),
        implementation=(imitation_trajectory, sampled_imitation_trajectory, unbounded_search),
    ),
)
"""How each claim of the family is checked, in ledger order."""


__all__ = ["CHECKS"]
