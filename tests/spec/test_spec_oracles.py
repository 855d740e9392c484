"""Cross-check :mod:`impl` against the NumPy oracles lambdified from the spec (Hypothesis).

A mismatch here is a bug in one of the two; the assertion message shows both sides, the
difference, the tolerance and the literal inputs to reproduce it.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from impl.estimators import (
    constant_baseline,
    group_mean_baseline,
    imitation_gradient,
    indicator_reward,
    reinforce,
    rloo,
)
from impl.exact import exact_expectation
from impl.policy import policy_gradient
from spec import (
    SpecError,
    amplification_map_oracle,
    best_of_k_exact,
    best_of_k_oracle,
    confirm_limited_search_counterexample,
    imitation_gradient_oracle,
    indicator_gradient_oracle,
    self_inclusive_gradient_oracle,
    softmax_gradient_oracle,
    stochastic_indicator_gradient_oracle,
)

ROUNDOFF_ATOL = 1e-12
"""Closed-form float64 gradients: O(n) terms of size <= max|s| <= 1, each with ~1e-16 error."""

EXACT_ENGINE_ATOL = 1e-11
"""The exact engine sums n^k <= 625 weighted terms; round-off grows with the term count."""

MAX_LOGIT = 6.0
"""Logits in [-6, 6]: probabilities down to ~1e-6, well inside float64 range."""

finite = st.floats(-MAX_LOGIT, MAX_LOGIT, allow_nan=False, allow_subnormal=False)
score_values = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])  # a small set: ties are common


@st.composite
def problems(draw: st.DrawFn, *, max_n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(2, max_n))
    theta = np.array(draw(st.lists(finite, min_size=n, max_size=n)))
    scores = np.array(draw(st.lists(score_values, min_size=n, max_size=n)))
    return theta, scores


@st.composite
def distributions(draw: st.DrawFn, n: int) -> list[Fraction]:
    w = draw(st.lists(st.integers(0, 8), min_size=n, max_size=n).filter(lambda v: sum(v) > 0))
    return [Fraction(x, sum(w)) for x in w]


def assert_close(observed: Any, expected: Any, *, atol: float, where: str) -> None:
    obs, exp = np.asarray(observed, dtype=float), np.asarray(expected, dtype=float)
    assert obs.shape == exp.shape, f"{where}: shape {obs.shape} vs oracle {exp.shape}"
    diff = np.abs(obs - exp)
    if np.any(diff > atol):
        c = int(np.argmax(diff))
        raise AssertionError(
            f"{where}: mismatch at coordinate {c}: impl {obs[c]!r} vs spec oracle {exp[c]!r} "
            f"(difference {diff[c]:.3g} > atol={atol}); impl={obs!r}, oracle={exp!r}"
        )


@given(problems())
def test_policy_gradient_matches_the_spec(case: tuple[np.ndarray, np.ndarray]) -> None:
    theta, s = case
    assert_close(policy_gradient(theta, s), softmax_gradient_oracle(theta, s),
                 atol=ROUNDOFF_ATOL, where=f"policy_gradient(logits={theta!r}, scores={s!r})")


@given(problems(), st.data())
def test_imitation_gradient_matches_the_spec(case: tuple[np.ndarray, np.ndarray], data: st.DataObject) -> None:
    theta, _ = case
    q = np.array([float(x) for x in data.draw(distributions(theta.size))])
    assert_close(imitation_gradient(theta, q), imitation_gradient_oracle(theta, q),
                 atol=ROUNDOFF_ATOL, where=f"imitation_gradient(logits={theta!r}, demonstrator={q!r})")


@given(problems(max_n=4), st.integers(1, 4))
def test_exact_reinforce_and_baselines_match_the_spec(case: tuple[np.ndarray, np.ndarray], k: int) -> None:
    theta, s = case
    grad = softmax_gradient_oracle(theta, s)
    where = f"logits={theta!r}, scores={s!r}, k={k}"
    assert_close(exact_expectation(reinforce, theta, s, k).mean, grad,
                 atol=EXACT_ENGINE_ATOL, where=f"reinforce, {where}")
    assert_close(exact_expectation(constant_baseline(0.5), theta, s, k).mean, grad,
                 atol=EXACT_ENGINE_ATOL, where=f"constant_baseline(0.5), {where}")
    assert_close(exact_expectation(group_mean_baseline, theta, s, k).mean,
                 self_inclusive_gradient_oracle(theta, s, k),
                 atol=EXACT_ENGINE_ATOL, where=f"group_mean_baseline, {where}")
    if k >= 2:
        assert_close(exact_expectation(rloo, theta, s, k).mean, grad,
                     atol=EXACT_ENGINE_ATOL, where=f"rloo, {where}")


@given(problems(max_n=4), st.integers(1, 3), st.data())
def test_exact_indicator_reward_matches_the_spec(
    case: tuple[np.ndarray, np.ndarray], k: int, data: st.DataObject
) -> None:
    theta, s = case
    demo = data.draw(st.integers(0, theta.size - 1))
    est = exact_expectation(indicator_reward(demo), theta, s, k).mean
    assert_close(est, indicator_gradient_oracle(theta, demo), atol=EXACT_ENGINE_ATOL,
                 where=f"indicator_reward({demo}), logits={theta!r}, k={k}")


def test_stochastic_indicator_is_grad_q_dot_p() -> None:
    theta = np.array([0.3, -0.2, 1.0])
    q = np.array([0.5, 0.25, 0.25])
    mixed = sum(qd * indicator_gradient_oracle(theta, d) for d, qd in enumerate(q))
    assert_close(stochastic_indicator_gradient_oracle(theta, q), mixed, atol=ROUNDOFF_ATOL,
                 where="E_d[grad p(d)] vs grad(q.p)")


@st.composite
def search_cases(draw: st.DrawFn) -> tuple[np.ndarray, list[Fraction], int]:
    n = draw(st.integers(2, 6))
    s = np.array(draw(st.lists(score_values, min_size=n, max_size=n)))
    return s, draw(distributions(n)), draw(st.integers(1, 6))


@given(search_cases())
def test_best_of_k_matches_the_spec(case: tuple[np.ndarray, list[Fraction], int]) -> None:
    from impl.search import best_of_k_distribution, best_of_k_mass_on_maximisers, unbounded_search

    s, q, k = case
    qf = np.array([float(x) for x in q])
    where = f"scores={s!r}, proposal={q!r}, k={k}"
    exact = np.array([float(x) for x in best_of_k_exact(s.tolist(), q, k)])
    assert_close(best_of_k_oracle(s, qf, k), exact, atol=ROUNDOFF_ATOL, where=f"oracle vs exact, {where}")
    assert_close(best_of_k_distribution(s, qf, k), exact, atol=ROUNDOFF_ATOL,
                 where=f"best_of_k_distribution, {where}")
    ce = confirm_limited_search_counterexample(s.tolist(), q, k)
    assert_close([best_of_k_mass_on_maximisers(s, qf, k)], [float(ce.imitation_astar_mass)],
                 atol=ROUNDOFF_ATOL, where=f"best_of_k_mass_on_maximisers, {where}")
    qa = float(sum(q[x] for x in ce.maximisers))
    assert_close([best_of_k_mass_on_maximisers(s, qf, k)], [amplification_map_oracle(qa, k)],
                 atol=ROUNDOFF_ATOL, where=f"A* mass vs 1-(1-q(A*))^k, {where}")
    assert unbounded_search(s) == ce.maximisers[0], f"unbounded_search vs X*, {where}"


@given(search_cases(), st.integers(1, 5))
def test_amplification_trajectory_follows_the_spec_map(
    case: tuple[np.ndarray, list[Fraction], int], steps: int
) -> None:
    from impl.dynamics import amplification_trajectory

    s, q, k = case
    qf = np.array([float(x) for x in q])
    traj = amplification_trajectory(qf, s, k, steps=steps)
    astar = s == s.max()
    a = float(qf[astar].sum())
    expected = [a]
    for _ in range(steps):
        a = float(amplification_map_oracle(a, k))
        expected.append(a)
    assert_close(traj[:, astar].sum(axis=1), expected, atol=1e-10,  # steps compound round-off
                 where=f"amplification_trajectory A* mass, scores={s!r}, q={q!r}, k={k}")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: softmax_gradient_oracle([0.0, 1.0], [1.0]), "same length"),
        (lambda: softmax_gradient_oracle([[0.0]], [1.0]), "1-D"),
        (lambda: indicator_gradient_oracle([0.0, 1.0], 2), "answer in 0..1"),
        (lambda: best_of_k_oracle([0.0, 1.0], [0.5, 0.5], 0), "k >= 1"),
        (lambda: self_inclusive_gradient_oracle([0.0, 1.0], [0.0, 1.0], True), "k >= 1"),
    ],
)
def test_oracles_validate_arguments(call: Any, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        call()


def test_softmax_oracle_survives_extreme_logits() -> None:
    g = softmax_gradient_oracle([1000.0, 0.0, -1000.0], [0.0, 1.0, 2.0])
    assert np.all(np.isfinite(g))
