"""Properties of the RL family: RL's optimum, and exact-gradient ascent reaching it.

Claims ``rl-optimum-is-xstar`` and ``rl-converges-to-xstar`` (statements and proof:
:mod:`spec.claims.rl`).  The optimum is checked in exact rationals over the simplex and
on finite logits; convergence on exact trajectories of :func:`impl.rl_trajectory`
(monotone J, the O(1/t) bound of softmax policy gradient, p_t(A*) -> 1 on
well-conditioned problems), and sampled RLOO ascent with a binomial test.
"""

from __future__ import annotations

import fractions
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import strategies as st

import impl as _impl
from impl import Problem, rl_trajectory, sampled_rl_trajectory, smooth_step_size, softmax
from impl.types import FloatArray
from properties import stats
from properties.claims._common import (
    EXACT_RTOL,
    FAMILY_ALPHA,
    MONOTONE_SLACK,
    ClaimSpec,
    Planted,
    Property,
    StatOutcome,
    StatProperty,
    _case_seed,
    _max_abs,
    _moderate_problems,
    _trajectory_cases,
)
from properties.claims._violations import Violation
from properties.strategies import PolicyProblem

# ---------------------------------------------------------------------------------------------
# rl-optimum-is-xstar


@st.composite
def _rational_simplex_cases(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    n = draw(st.integers(2, 6))
    scores = draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n))
    weights = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n).filter(lambda w: sum(w) > 0))
    return scores, weights


def _check_simplex_optimum(case: tuple[list[int], list[int]]) -> Violation | None:
    scores, weights = case
    total = sum(weights)
    r = [Fraction(w, total) for w in weights]
    best = max(scores)
    value = sum(ri * si for ri, si in zip(r, scores, strict=True))
    on_a_star = all(ri == 0 or si == best for ri, si in zip(r, scores, strict=True))
    if value > best or (value == best) != on_a_star:
        return Violation(
            "r.s vs max s contradicts the claim",
            {"scores": scores, "r": [str(x) for x in r], "r.s": str(value), "max s": best},
        )
    return None


def _check_finite_theta(pb: PolicyProblem) -> Violation | None:
    j = float(softmax(pb.logits) @ pb.scores)
    best = float(pb.scores.max())
    all_equal = bool(np.all(pb.scores == best))
    if all_equal and abs(j - best) > EXACT_RTOL * (1 + abs(best)):
        return Violation(
            "all scores equal but J != max s", {"logits": pb.logits, "scores": pb.scores}
        )
    if not all_equal and not j < best:
        return Violation(
            "a finite theta attains max s", {"logits": pb.logits, "scores": pb.scores, "J": j}
        )
    # sup: pushing the logit of X* up approaches max s
    theta = np.zeros(pb.n)
    theta[int(np.argmax(pb.scores))] = 40.0
    gap = best - float(softmax(theta) @ pb.scores)
    if gap > 1e-12 * (1.0 + _max_abs(pb.scores)):
        return Violation(
            "J does not approach max s along theta = 40 e_{X*}", {"scores": pb.scores, "gap": gap}
        )
    return None


# ---------------------------------------------------------------------------------------------
# rl-converges-to-xstar: exact trajectories


RL_STEPS = 600
"""Steps of exact policy-gradient ascent per generated case."""


def _check_rl_converges(case: tuple[FloatArray, FloatArray]) -> Violation | None:
    theta0, s = case
    spread = float(s.max() - s.min())
    eta = smooth_step_size(s)
    tr = rl_trajectory(theta0, s, step_size=eta, steps=RL_STEPS)
    j = tr.objective(s)
    dips = np.diff(j)
    if np.any(dips < -MONOTONE_SLACK * spread):
        t = int(np.argmin(dips))
        return Violation(
            f"J decreased at step {t} by {-dips[t]:.3g}",
            {"logits": theta0, "scores": s, "step_size": eta, "step": t},
        )
    a_star = list(Problem(s).maximisers)
    c = np.minimum.accumulate(
        tr.probs[:, a_star].max(axis=1)
    )  # c_t = min_{u<=t} max_{a in A*} p_u(a)
    steps = np.arange(1, RL_STEPS + 1)
    delta = float(s.max()) - j[1:]
    bound = 5.0 * spread / (c[:-1] ** 2 * steps)
    over = delta > bound * (1 + 1e-9) + MONOTONE_SLACK * spread
    if np.any(over):
        u = int(np.argmax(over))
        return Violation(
            f"J* - J(theta_t) = {delta[u]:.4g} exceeds the O(1/t) bound 5 (max s - min s) / (c^2 t) = "
            f"{bound[u]:.4g} at t = {u + 1}",
            {"logits": theta0, "scores": s, "step_size": eta, "t": u + 1, "c": c[u]},
        )
    return None


def _gap_ratio(s: FloatArray) -> float:
    """(max s - best non-maximal score) / (max s - min s); 0 for constant scores."""
    top = float(s.max())
    rest = s[s < top]
    return 0.0 if rest.size == 0 else (top - float(rest.max())) / (top - float(s.min()))


def _well_conditioned(case: tuple[FloatArray, FloatArray]) -> bool:
    theta0, s = case
    mass0 = float(softmax(theta0)[list(Problem(s).maximisers)].sum())
    return _gap_ratio(s) >= RL_MIN_GAP_RATIO and mass0 >= RL_MIN_INITIAL_MASS


def _check_rl_reaches_a_star(case: tuple[FloatArray, FloatArray]) -> Violation | None:
    theta0, s = case
    eta = smooth_step_size(s)
    a_star = list(Problem(s).maximisers)
    steps = _steps_to_mass(theta0, s, a_star, eta, RL_TARGET_MASS, RL_MAX_STEPS)
    if steps is None:
        return Violation(
            f"p_t(A*) did not reach {RL_TARGET_MASS} within {RL_MAX_STEPS} steps",
            {"logits": theta0, "scores": s, "step_size": eta},
        )
    return None


RL_TARGET_MASS = 0.99
RL_MAX_STEPS = 200_000
RL_MIN_GAP_RATIO = 0.1
RL_MIN_INITIAL_MASS = 0.05
"""p_t(A*) -> 1 is checked by running exact ascent until p_t(A*) >= 0.99 within
RL_MAX_STEPS, on well-conditioned problems: the best non-maximal score at least a tenth
of the spread below the maximum, and p_0(A*) >= 0.05.  Elsewhere the time it takes is
unbounded in practice: it grows like spread / (gap c^2) with c = inf_t p_t(A*) (the
O(1/t) bound on J* - J, checked on every problem, divided by the gap), and p_t(A*) need
not grow at first: from a small p_0(X*) the second-best answer soaks up mass before X*
takes over (the plateaus of softmax policy gradient, Mei et al. 2020), measured at more
than 200,000 steps for scores (-1, -4, 0, -1, 1) from logits (0, 0, 0, 0, -3)."""


def _steps_to_mass(
    theta: FloatArray, s: FloatArray, answers: list[int], eta: float, target: float, budget: int
) -> int | None:
    """Exact ascent from ``theta`` until p(answers) >= target; the number of steps, or None."""
    theta = theta.copy()
    centred = s - s.max()
    for t in range(budget):
        e = np.exp(theta - theta.max())
        p = e / e.sum()
        if p[answers].sum() >= target:
            return t
        theta += eta * p * (centred - p @ centred)
    return None


# ---------------------------------------------------------------------------------------------
# rl-converges-to-xstar: sampled RLOO ascent (stated false-alarm rate and power)


SAMPLED_RL_PROBLEMS: tuple[tuple[float, ...], ...] = (
    (0.0, 1.0),
    (0.2, 1.0, 0.5, 0.8),
    (1.0, 0.0, 1.0, 0.3, -0.5),
)
SAMPLED_RL_RUNS = 40
SAMPLED_RL_STEPS = 300
SAMPLED_RL_THRESHOLD = 0.9
"""A sampled run 'converges' when p_T(A*) >= 0.9 after 300 RLOO steps (k=4, batch 4)."""
SAMPLED_RL_RATE = 0.9
"""Null hypothesis: at least 90% of runs converge; reject when the count is significantly lower."""


def _sampled_rl(seed: int) -> StatOutcome:
    alpha = stats.bonferroni(FAMILY_ALPHA, len(SAMPLED_RL_PROBLEMS))
    rejections, parts = 0, []
    ce: dict[str, Any] | None = None
    for s_tuple in SAMPLED_RL_PROBLEMS:
        s = np.array(s_tuple)
        a_star = list(Problem(s).maximisers)
        wins = 0
        for r in range(SAMPLED_RL_RUNS):
            rng = np.random.default_rng([seed, r, _case_seed(0, s)])
            tr = sampled_rl_trajectory(
                np.zeros(s.size),
                s,
                step_size=smooth_step_size(s),
                steps=SAMPLED_RL_STEPS,
                group_size=4,
                batch=4,
                rng=rng,
            )
            wins += int(tr.mass(a_star)[-1] >= SAMPLED_RL_THRESHOLD)
        test = stats.binomial_lower_test(wins, SAMPLED_RL_RUNS, SAMPLED_RL_RATE, alpha=alpha)
        parts.append(f"s={list(s_tuple)}: {wins}/{SAMPLED_RL_RUNS} runs reached p(A*)>=0.9")
        if test.rejected:
            rejections += 1
            ce = {
                "scores": s,
                "converged runs": wins,
                "runs": SAMPLED_RL_RUNS,
                "p-value": test.pvalue,
            }
    power = stats.power_binomial_lower(SAMPLED_RL_RUNS, SAMPLED_RL_RATE, 0.5, alpha=alpha)
    return StatOutcome(
        len(SAMPLED_RL_PROBLEMS),
        rejections,
        FAMILY_ALPHA,
        f"{power:.3f} per problem if only 50% of runs converged",
        "; ".join(parts),
        ce,
    )


# ---------------------------------------------------------------------------------------------
# planted violations: each property must catch its own, through its registered check


def _off_simplex(weight: int, total: int) -> Fraction:
    """Weights divided by their sum minus one: an r that is not on the simplex."""
    return fractions.Fraction(weight, total - 1)


def _uniform_policy(theta: FloatArray) -> FloatArray:
    """A policy that ignores its logits."""
    out: FloatArray = np.full(theta.size, 1.0 / theta.size)
    return out


def _descent(theta: FloatArray, s: FloatArray, *, step_size: float, steps: int) -> Any:
    """Exact ascent on -s: RL run the wrong way."""
    return _impl.rl_trajectory(theta, -s, step_size=step_size, steps=steps)


def _negative_step(s: FloatArray) -> float:
    """The smooth step size with its sign flipped (descent)."""
    return -_impl.smooth_step_size(s)


def _sampled_descent(theta: FloatArray, s: FloatArray, **kwargs: Any) -> Any:
    """Sampled RLOO ascent on -s."""
    return _impl.sampled_rl_trajectory(theta, -s, **kwargs)


_PLANTED_TRAJECTORY = (np.zeros(3), np.array([0.0, 0.5, 1.0]))


# ---------------------------------------------------------------------------------------------
# the claims of the family


CHECKS: tuple[ClaimSpec, ...] = (
    ClaimSpec(
        "rl-optimum-is-xstar",
        "proved",
        (
            Property(
                "over the simplex r.s <= max s, with equality iff supp r within A* (exact rationals)",
                _rational_simplex_cases(),
                _check_simplex_optimum,
                planted=Planted(
                    "r = weights / (sum - 1), off the simplex",
                    {"Fraction": _off_simplex},
                    ([0, 1], [1, 1]),
                ),
            ),
            Property(
                "finite theta: J < max s unless all scores are equal; sup is max s",
                _moderate_problems(),
                _check_finite_theta,
                planted=Planted(
                    "a policy that ignores its logits (uniform)",
                    {"softmax": _uniform_policy},
                    PolicyProblem(np.zeros(2), np.array([0.0, 1.0]), 1),
                ),
            ),
        ),
        implementation=(softmax,),
    ),
    ClaimSpec(
        "rl-converges-to-xstar",
        "holds",
        (
            Property(
                f"exact ascent with eta = 2/(5(max s - min s)), {RL_STEPS} steps: J non-decreasing, "
                "J* - J_t <= 5 (max s - min s)/(c^2 t)",
                _trajectory_cases(),
                _check_rl_converges,
                0.5,
                planted=Planted("ascent on -s (descent)", {"rl_trajectory": _descent}, _PLANTED_TRAJECTORY),
            ),
            Property(
                f"exact ascent reaches p_t(A*) >= {RL_TARGET_MASS} (top gap >= "
                f"{RL_MIN_GAP_RATIO} x spread, p_0(A*) >= {RL_MIN_INITIAL_MASS})",
                _trajectory_cases().filter(_well_conditioned),
                _check_rl_reaches_a_star,
                0.5,
                planted=Planted(
                    "step -eta (descent), within 2,000 steps",
                    {"smooth_step_size": _negative_step, "RL_MAX_STEPS": 2000},
                    _PLANTED_TRAJECTORY,
                ),
            ),
        ),
        (
            StatProperty(
                "sampled RLOO ascent converges to A* (binomial test)",
                _sampled_rl,
                Planted(
                    "sampled ascent on -s (first problem, 10 runs)",
                    {
                        "sampled_rl_trajectory": _sampled_descent,
                        "SAMPLED_RL_PROBLEMS": SAMPLED_RL_PROBLEMS[:1],
                        "SAMPLED_RL_RUNS": 10,
                    },
                ),
            ),
        ),
        implementation=(rl_trajectory, smooth_step_size, sampled_rl_trajectory),
    ),
)
"""How each claim of the family is checked, in ledger order."""


__all__ = ["CHECKS"]
