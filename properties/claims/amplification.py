"""Properties of the amplification family: amplify by best-of-k, distil by imitation, repeat.

Claim ``iterated-amplification-converges`` (statement and proof:
:mod:`spec.claims.amplification`): the exact trajectory of
:func:`impl.amplification_trajectory` follows a -> 1-(1-a)^k and increases to 1, and the
sampled one passes a binomial test at every step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import impl as _impl
from impl import Problem, amplification_trajectory, sampled_amplification_trajectory
from impl.types import FloatArray
from properties import stats
from properties.claims._common import (
    FAMILY_ALPHA,
    ClaimSpec,
    Planted,
    Property,
    StatOutcome,
    StatProperty,
)
from properties.claims._violations import Violation
from properties.strategies import search_problems

# ---------------------------------------------------------------------------------------------
# exact trajectory


def _check_amplification(case: tuple[FloatArray, FloatArray, int]) -> Violation | None:
    s, p0, k = case
    k = max(k, 2)
    a_star = list(Problem(s).maximisers)
    traj = amplification_trajectory(p0, s, k, steps=40)
    a = traj[:, a_star].sum(axis=1)
    rec = a[0]
    for t in range(1, a.size):
        rec = 1 - (1 - rec) ** k
        if abs(a[t] - rec) > 1e-9:
            return Violation(
                f"a_t does not follow a -> 1-(1-a)^k at t = {t}",
                {"scores": s, "p0": p0, "k": k, "a_t": a[t], "recursion": rec},
            )
    moving = a[:-1] < 1 - 1e-15
    if np.any((np.diff(a) <= 0) & moving):
        return Violation("a_t not strictly increasing", {"scores": s, "p0": p0, "k": k, "a": a})
    if a[-1] < 1 - 1e-9:
        return Violation("a_t did not reach 1", {"scores": s, "p0": p0, "k": k, "a_T": a[-1]})
    return None


# ---------------------------------------------------------------------------------------------
# sampled amplification (stated false-alarm rate and power)


AMPLIFICATION_DEMOS = 2000


AMPLIFICATION_STEPS = 6


SAMPLED_AMPLIFICATION_CASES: tuple[tuple[tuple[float, ...], tuple[float, ...], int], ...] = (
    ((0.0, 1.0), (0.8, 0.2), 2),
    ((0.3, 0.9, 0.1, 0.9), (0.4, 0.05, 0.5, 0.05), 3),
    ((1.0, 0.0, 0.5), (0.1, 0.6, 0.3), 2),
)


def _sampled_amplification(seed: int) -> StatOutcome:
    """Each step's count of A* among the demos is Binomial(demos, 1-(1-a_t)^k) given a_t."""
    tests = len(SAMPLED_AMPLIFICATION_CASES) * AMPLIFICATION_STEPS
    alpha = stats.bonferroni(FAMILY_ALPHA, tests)
    rejections = 0
    ce: dict[str, Any] | None = None
    finals = []
    for i, (s_t, p_t, k) in enumerate(SAMPLED_AMPLIFICATION_CASES):
        s, p0 = np.array(s_t), np.array(p_t)
        a_star = list(Problem(s).maximisers)
        traj = sampled_amplification_trajectory(
            p0,
            s,
            k,
            steps=AMPLIFICATION_STEPS,
            demos=AMPLIFICATION_DEMOS,
            rng=np.random.default_rng([seed, i]),
        )
        a = traj[:, a_star].sum(axis=1)
        for t in range(AMPLIFICATION_STEPS):
            expected = 1 - (1 - a[t]) ** k
            count = round(a[t + 1] * AMPLIFICATION_DEMOS)
            test = stats.binomial_test(count, AMPLIFICATION_DEMOS, expected, alpha=alpha)
            if test.rejected:
                rejections += 1
                ce = {
                    "scores": s,
                    "p0": p0,
                    "k": k,
                    "step": t,
                    "a_t": a[t],
                    "count": count,
                    "expected rate": expected,
                    "p-value": test.pvalue,
                }
        finals.append(round(float(a[-1]), 4))
    power = stats.power_binomial_two_sided(AMPLIFICATION_DEMOS, 0.5, 0.56, alpha=alpha)
    return StatOutcome(
        tests,
        rejections,
        FAMILY_ALPHA,
        f"{power:.3f} per step against a shift of the A* rate from 0.5 to 0.56",
        f"final a_T of the sampled runs: {finals}",
        ce,
    )


# ---------------------------------------------------------------------------------------------
# planted violations: each property must catch its own, through its registered check


def _amplify_k_plus_1(p0: FloatArray, s: FloatArray, k: int, **kwargs: Any) -> Any:
    """Best-of-(k+1) amplification where best-of-k was asked for."""
    return _impl.amplification_trajectory(p0, s, k + 1, **kwargs)


def _sampled_k_plus_1(p0: FloatArray, s: FloatArray, k: int, **kwargs: Any) -> Any:
    """Sampled best-of-(k+1) amplification where best-of-k was asked for."""
    return _impl.sampled_amplification_trajectory(p0, s, k + 1, **kwargs)


# ---------------------------------------------------------------------------------------------
# the claims of the family


CHECKS: tuple[ClaimSpec, ...] = (
    ClaimSpec(
        "iterated-amplification-converges",
        "proved",
        (
            Property(
                "p_{t+1} = B_k(p_t): a_t follows 1-(1-a)^k, strictly increasing to 1",
                search_problems(),
                _check_amplification,
                planted=Planted(
                    "best-of-(k+1) amplification",
                    {"amplification_trajectory": _amplify_k_plus_1},
                    (np.array([0.0, 1.0]), np.array([0.5, 0.5]), 2),
                ),
            ),
        ),
        (
            StatProperty(
                "sampled amplification follows the recursion (binomial test per step)",
                _sampled_amplification,
                Planted(
                    "sampled best-of-(k+1) amplification",
                    {"sampled_amplification_trajectory": _sampled_k_plus_1},
                ),
            ),
        ),
        implementation=(amplification_trajectory, sampled_amplification_trajectory),
    ),
)
"""How each claim of the family is checked, in ledger order."""


__all__ = ["CHECKS"]
