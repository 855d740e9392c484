"""Properties of the estimator family: REINFORCE's expected update, with and without baselines.

Claims ``reinforce-unbiased``, ``baseline-invariant``, ``self-inclusive-baseline-scales``
and ``reinforce-raises-above-average`` (statements and proofs: :mod:`spec.claims.estimators`).
Every check here is exact: :func:`impl.exact_expectation` sums the estimator over all
``n**k`` sample groups and compares with the claimed value (:func:`_exact_mismatch`);
"any differentiable parameterisation" is checked with complex-step gradients; a
noisy overseer is checked by calibrated z-tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

import impl as _impl
from impl import (
    NoisyOverseer,
    Problem,
    constant_baseline,
    exact_expectation,
    group_gradient,
    group_mean_baseline,
    policy_gradient,
    reinforce,
    rloo,
    sample_groups,
    softmax,
)
from impl.types import Estimator, FloatArray, Gradient, Logits, Rewards, Samples
from properties import stats
from properties.claims._common import (
    EXACT_RTOL,
    FAMILY_ALPHA,
    ClaimSpec,
    Planted,
    Property,
    StatOutcome,
    StatProperty,
    _estimator_problems,
    _exact_mismatch,
    _max_abs,
    _moderate_problems,
)
from properties.claims._violations import Violation
from properties.strategies import PolicyProblem, logits, policy_problems, score_tables

# ---------------------------------------------------------------------------------------------
# baselines computed from the *other* samples (vectorised), for baseline-invariant


def _other_max_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    """b_j = max of the other samples' rewards (a function of x_{-j} only)."""
    k = rewards.shape[1]
    others = np.where(np.eye(k, dtype=bool)[None], -np.inf, rewards[:, None, :])
    return group_gradient(logits, samples, rewards - others.max(axis=2))


def _other_median_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    """b_j = median of the other samples' rewards."""
    k = rewards.shape[1]
    idx = np.array([[i for i in range(k) if i != j] for j in range(k)], dtype=np.int64)
    return group_gradient(logits, samples, rewards - np.median(rewards[:, idx], axis=2))


# ---------------------------------------------------------------------------------------------
# parameterisations for "any differentiable parameterisation" (complex-step gradients of J)


@dataclass(frozen=True)
class _Param:
    kind: str
    weights: FloatArray
    features: FloatArray
    scores: FloatArray

    def probs(self, w: Any) -> Any:
        if self.kind == "linear-softmax":
            z = self.features @ w
            z = z - z.real.max()
            e = np.exp(z)
            return e / e.sum()
        sq = w * w  # "squared": p_i = w_i^2 / sum_j w_j^2
        return sq / sq.sum()

    def score(self) -> FloatArray:
        """grad_w log p(x) for every x, analytically: shape (n, d)."""
        w = self.weights
        if self.kind == "linear-softmax":
            p = self.probs(w).real
            out: FloatArray = self.features - p @ self.features
            return out
        norm = float(w @ w)
        out = 2.0 * np.diag(1.0 / w) - 2.0 * w[None, :] / norm
        return out

    def grad_j_complex_step(self) -> FloatArray:
        h = 1e-30
        d = self.weights.size
        grad = np.empty(d)
        for j in range(d):
            w = self.weights.astype(np.complex128)
            w[j] += 1j * h
            grad[j] = (self.probs(w) @ self.scores).imag / h
        return grad


@st.composite
def _parameterisations(draw: st.DrawFn) -> _Param:
    n = draw(st.integers(2, 5))
    kind = draw(st.sampled_from(["linear-softmax", "squared"]))
    scores = draw(score_tables(n, max_magnitude=10.0))
    if kind == "linear-softmax":
        d = draw(st.integers(1, 4))
        feats = np.array(
            draw(st.lists(st.floats(-2, 2, allow_nan=False), min_size=n * d, max_size=n * d))
        ).reshape(n, d)
        w = draw(logits(d, max_abs=3.0))
        return _Param(kind, w, feats, scores)
    w = np.array(
        draw(st.lists(st.floats(0.1, 3.0) | st.floats(-3.0, -0.1), min_size=n, max_size=n))
    )
    return _Param(kind, w, np.eye(n), scores)


def _check_any_parameterisation(par: _Param) -> Violation | None:
    p = par.probs(par.weights).real
    expectation = (p * par.scores) @ par.score()
    grad = par.grad_j_complex_step()
    err = _max_abs(expectation - grad)
    tol = EXACT_RTOL * (1.0 + _max_abs(par.scores)) * (1.0 + _max_abs(par.score()))
    if err <= tol:
        return None
    return Violation(
        f"{par.kind}: sum_x p(x) s(x) grad log p(x) != grad J (complex step) by {err:.3g}",
        {
            "parameterisation": par.kind,
            "weights": par.weights,
            "scores": par.scores,
            "E[g]": expectation,
            "grad J": grad,
        },
    )


# ---------------------------------------------------------------------------------------------
# checks (exact expectations over all n**k groups)


_group_problems = policy_problems(max_n=5, min_k=2, max_k=4)


def _check_reinforce(pb: PolicyProblem) -> Violation | None:
    return _exact_mismatch(reinforce, pb, policy_gradient(pb.logits, pb.scores), "REINFORCE")


def _check_baselines(pb: PolicyProblem) -> Violation | None:
    grad = policy_gradient(pb.logits, pb.scores)
    baselines: list[tuple[str, Estimator]] = [
        (
            "constant baseline b=0.37*max|s|+1.5",
            constant_baseline(0.37 * _max_abs(pb.scores) + 1.5),
        ),
        ("leave-one-out mean", rloo),
        ("max of the other samples", _other_max_baseline),
        ("median of the other samples", _other_median_baseline),
    ]
    for label, est in baselines:
        v = _exact_mismatch(est, pb, grad, label)
        if v is not None:
            return v
    return None


def _check_constant_baseline_k1(pb: PolicyProblem) -> Violation | None:
    return _exact_mismatch(
        constant_baseline(-2.5), pb, policy_gradient(pb.logits, pb.scores), "constant"
    )


def _check_self_inclusive(pb: PolicyProblem) -> Violation | None:
    claimed = (pb.k - 1) / pb.k * policy_gradient(pb.logits, pb.scores)
    return _exact_mismatch(group_mean_baseline, pb, claimed, "self-inclusive group mean")


def _check_raises_above_average(pb: PolicyProblem) -> Violation | None:
    e = exact_expectation(reinforce, pb.logits, pb.scores, pb.k)
    p = softmax(pb.logits)
    j = float(p @ pb.scores)
    tol = EXACT_RTOL * (1.0 + _max_abs(e.magnitude))
    for i in range(pb.n):
        gap = float(pb.scores[i] - j)
        # the sign of s_i - J is only meaningful beyond round-off of J itself
        if abs(gap) * p[i] <= tol or abs(gap) <= 1e-12 * (1 + abs(j)):
            if abs(gap) <= 1e-12 * (1 + abs(j)) and abs(e.mean[i]) > tol:
                return Violation(
                    f"answer {i} scores J but its logit moves by {e.mean[i]:.3g}",
                    {"logits": pb.logits, "scores": pb.scores, "k": pb.k, "E[g]": e.mean},
                )
            continue
        if np.sign(e.mean[i]) != np.sign(gap):
            return Violation(
                f"answer {i}: s_i - J = {gap:.3g} but the expected update of its logit is {e.mean[i]:.3g}",
                {"logits": pb.logits, "scores": pb.scores, "k": pb.k, "E[g]": e.mean, "J": j},
            )
    return None


# ---------------------------------------------------------------------------------------------
# statistical property: a noisy overseer (stated false-alarm rate and power)


NOISY_PROBLEMS: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...] = (
    ((0.3, -1.0, 0.5), (1.0, 0.0, 2.0)),
    ((0.0, 0.0, 0.0, 0.0), (0.2, 1.0, 0.5, 0.9)),
    ((2.0, -2.0), (-1.0, 3.0)),
)
NOISY_GROUPS = 20_000
NOISY_K = 3
NOISY_STD = 1.0
NOISY_EFFECT = 0.05
"""Sampled REINFORCE (groups of 3) with rewards s(x) + N(0, 1) noise, 20,000 groups per problem."""


def _sampled_noisy_reinforce(seed: int, estimator: Estimator = reinforce) -> StatOutcome:
    """Per-coordinate z-tests of the sample mean against grad J, with the exact variance.

    Var[g_i] = Var_clean[g_i] + sigma^2 p_i (1 - p_i) / k: the clean part from the exact
    engine, the noise part because the noise is independent, zero-mean and enters
    linearly.  The z statistic is normal to within the CLT error at 20,000 groups.
    """
    from scipy import stats as sps

    tests = sum(len(t) for t, _ in NOISY_PROBLEMS)
    alpha = stats.bonferroni(FAMILY_ALPHA, tests)
    z_crit = float(sps.norm.isf(alpha / 2))
    rejections, worst = 0, 0.0
    ce: dict[str, Any] | None = None
    powers = []
    for i, (t_tuple, s_tuple) in enumerate(NOISY_PROBLEMS):
        theta, s = np.array(t_tuple), np.array(s_tuple)
        overseer = NoisyOverseer(Problem(s), noise_std=NOISY_STD)
        rng = np.random.default_rng([seed, i])
        x = sample_groups(theta, NOISY_GROUPS, NOISY_K, rng)
        g = estimator(theta, x, overseer.reward(x, rng))
        p = softmax(theta)
        var = (
            exact_expectation(reinforce, theta, s, NOISY_K).variance
            + NOISY_STD**2 * p * (1 - p) / NOISY_K
        )
        se = np.sqrt(var / NOISY_GROUPS)
        z = (g.mean(axis=0) - policy_gradient(theta, s)) / se
        worst = max(worst, float(np.abs(z).max()))
        powers.append(float(sps.norm.sf(z_crit - NOISY_EFFECT / se.max())))
        bad = np.abs(z) > z_crit
        if np.any(bad):
            rejections += int(bad.sum())
            ce = {
                "logits": theta,
                "scores": s,
                "mean": g.mean(axis=0),
                "grad J": policy_gradient(theta, s),
                "z": z,
            }
    return StatOutcome(
        tests,
        rejections,
        FAMILY_ALPHA,
        f"at least {min(powers):.3f} per coordinate against a bias of {NOISY_EFFECT}",
        f"largest |z| = {worst:.2f} (critical {z_crit:.2f})",
        ce,
    )


# ---------------------------------------------------------------------------------------------
# planted violations: each property must catch its own, through its registered check


_PLANTED_PROBLEM = PolicyProblem(logits=np.array([0.0, 1.0]), scores=np.array([0.0, 2.0]), k=2)
"""Two answers, unequal logits and scores, groups of two: every claim of the family is
non-trivial here (grad J != 0, no coordinate at J)."""


def _scaled_reinforce(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    """REINFORCE with rewards scaled by 1 + 1e-9: biased by one part in a billion."""
    return _impl.reinforce(logits, samples, rewards * (1 + 1e-9))


def _negated_reinforce(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    """Gradient descent: REINFORCE with the sign of the update flipped."""
    return -_impl.reinforce(logits, samples, rewards)


def _group_mean_for_any_constant(_: float) -> Estimator:
    """The self-inclusive group mean where a constant baseline was asked for."""
    return _impl.group_mean_baseline


def _shifted_gradient(logits: Logits, scores: FloatArray) -> Gradient:
    """A claimed value grad J + 0.1 (twice the bias the z-tests are powered against)."""
    return _impl.policy_gradient(logits, scores) + 2 * NOISY_EFFECT


class _ScoreWithoutNormalisation(_Param):
    """The squared parameterisation with its score missing the normalisation term."""

    def score(self) -> FloatArray:
        out: FloatArray = 2.0 * np.diag(1.0 / self.weights)
        return out


_SQUARED = _Param("squared", np.array([1.0, 2.0]), np.eye(2), np.array([0.0, 1.0]))


# ---------------------------------------------------------------------------------------------
# the claims of the family


CHECKS: tuple[ClaimSpec, ...] = (
    ClaimSpec(
        "reinforce-unbiased",
        "proved",
        (
            Property(
                "E[REINFORCE] = grad J, softmax, exact over all n^k groups",
                _estimator_problems,
                _check_reinforce,
                planted=Planted(
                    "REINFORCE with rewards scaled by 1 + 1e-9",
                    {"reinforce": _scaled_reinforce},
                    _PLANTED_PROBLEM,
                ),
            ),
            Property(
                "sum_x p s grad log p = grad J for linear-softmax and squared parameterisations "
                "(complex-step gradients)",
                _parameterisations(),
                _check_any_parameterisation,
                planted=Planted(
                    "a squared-parameterisation score without its normalisation term",
                    {},
                    _SQUARED,
                    wrong_case=_ScoreWithoutNormalisation(*vars(_SQUARED).values()),
                ),
            ),
        ),
        (
            StatProperty(
                "noisy overseer: the mean of sampled REINFORCE estimates matches grad J (z-test)",
                _sampled_noisy_reinforce,
                planted=Planted(
                    "claimed value grad J + 0.1 (first problem)",
                    {
                        "policy_gradient": _shifted_gradient,
                        "NOISY_PROBLEMS": NOISY_PROBLEMS[:1],
                        "NOISY_GROUPS": NOISY_GROUPS // 10,
                    },
                ),
            ),
        ),
        implementation=(reinforce, policy_gradient, exact_expectation, NoisyOverseer),
    ),
    ClaimSpec(
        "baseline-invariant",
        "proved",
        (
            Property(
                "constant, leave-one-out, max-of-others and median-of-others baselines: E[g] = grad J",
                _group_problems,
                _check_baselines,
                planted=Planted(
                    "the self-inclusive group mean in place of leave-one-out",
                    {"rloo": _impl.group_mean_baseline},
                    _PLANTED_PROBLEM,
                ),
            ),
            Property(
                "constant baseline with k = 1",
                policy_problems(max_n=5, max_k=1),
                _check_constant_baseline_k1,
                planted=Planted(
                    "a baseline equal to the sample's own reward (the group mean at k = 1)",
                    {"constant_baseline": _group_mean_for_any_constant},
                    PolicyProblem(_PLANTED_PROBLEM.logits, _PLANTED_PROBLEM.scores, 1),
                ),
            ),
        ),
        implementation=(constant_baseline, rloo, group_gradient, exact_expectation),
    ),
    ClaimSpec(
        "self-inclusive-baseline-scales",
        "proved",
        (
            Property(
                "group mean including x_j: E[g] = (k-1)/k grad J",
                _estimator_problems,
                _check_self_inclusive,
                planted=Planted(
                    "leave-one-out (unscaled) where the claim says (k-1)/k grad J",
                    {"group_mean_baseline": _impl.rloo},
                    _PLANTED_PROBLEM,
                ),
            ),
        ),
        implementation=(group_mean_baseline, exact_expectation),
    ),
    ClaimSpec(
        "reinforce-raises-above-average",
        "proved",
        (
            Property(
                "sign of the expected logit update = sign(s_i - J)",
                _moderate_problems(),
                _check_raises_above_average,
                planted=Planted(
                    "the update with its sign flipped (descent)",
                    {"reinforce": _negated_reinforce},
                    _PLANTED_PROBLEM,
                ),
            ),
        ),
        implementation=(reinforce, softmax, exact_expectation),
    ),
)
"""How each claim of the family is checked, in ledger order."""


__all__ = ["CHECKS"]
