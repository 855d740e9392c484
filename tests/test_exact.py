"""The exact expectation engine against known identities, and the mistakes it must expose."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from impl import (
    InvalidArgument,
    constant_baseline,
    enumerate_groups,
    exact_expectation,
    group_mean_baseline,
    indicator_reward,
    policy_gradient,
    reinforce,
    rloo,
    softmax,
)
from impl.exact import MAX_GROUPS, group_probs, iter_groups
from impl.types import Gradient, Logits, Rewards, Samples
from properties.strategies import PolicyProblem, policy_problems

ENGINE_TOL = 1e-12
"""Issue 2: the engine reproduces grad J to ~1e-12 (relative to the size of the summed terms)."""


def _tol(magnitude: np.ndarray) -> float:
    return ENGINE_TOL * (1.0 + float(np.abs(magnitude).max()))


@given(policy_problems(min_k=1, max_k=4, max_n=5))
def test_reinforce_is_exactly_unbiased(pb: PolicyProblem) -> None:
    e = exact_expectation(reinforce, pb.logits, pb.scores, pb.k)
    np.testing.assert_allclose(e.mean, policy_gradient(pb.logits, pb.scores), rtol=0, atol=_tol(e.magnitude))


@given(policy_problems(min_k=2, max_k=4, max_n=5))
def test_rloo_is_exactly_unbiased(pb: PolicyProblem) -> None:
    e = exact_expectation(rloo, pb.logits, pb.scores, pb.k)
    np.testing.assert_allclose(e.mean, policy_gradient(pb.logits, pb.scores), rtol=0, atol=_tol(e.magnitude))


@given(policy_problems(min_k=1, max_k=4, max_n=5))
def test_self_inclusive_mean_scales_by_k_minus_1_over_k(pb: PolicyProblem) -> None:
    e = exact_expectation(group_mean_baseline, pb.logits, pb.scores, pb.k)
    expected = (pb.k - 1) / pb.k * policy_gradient(pb.logits, pb.scores)
    np.testing.assert_allclose(e.mean, expected, rtol=0, atol=_tol(e.magnitude))


@given(policy_problems(min_k=1, max_k=3, max_n=4))
def test_constant_baseline_is_unbiased(pb: PolicyProblem) -> None:
    e = exact_expectation(constant_baseline(3.5), pb.logits, pb.scores, pb.k)
    np.testing.assert_allclose(e.mean, policy_gradient(pb.logits, pb.scores), rtol=0, atol=_tol(e.magnitude))


def test_indicator_reward_expectation_is_grad_p_of_demo() -> None:
    theta = np.array([0.4, -1.1, 0.9])
    p = softmax(theta)
    e = exact_expectation(indicator_reward(2), theta, np.zeros(3), 3)
    np.testing.assert_allclose(e.mean, p[2] * (np.eye(3)[2] - p), rtol=0, atol=ENGINE_TOL)


def test_engine_exposes_a_planted_bias() -> None:
    """The missing -p term: E[s(x) e_x] = p*s, not grad J, on a problem away from theta = 0."""

    def missing_minus_p(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
        onehot = (samples[..., None] == np.arange(logits.size)).astype(np.float64)
        out: Gradient = (rewards[..., None] * onehot).mean(axis=1)
        return out

    theta, s = np.array([0.3, -0.5, 1.0]), np.array([3.0, 2.0, -1.0])
    e = exact_expectation(missing_minus_p, theta, s, 2)
    np.testing.assert_allclose(e.mean, softmax(theta) * s, rtol=0, atol=ENGINE_TOL)
    assert np.abs(e.mean - policy_gradient(theta, s)).max() > 0.1


def test_moments_and_magnitude() -> None:
    theta, s = np.zeros(2), np.array([0.0, 1.0])
    e = exact_expectation(reinforce, theta, s, 1)
    # groups: x=0 -> g=0; x=1 -> g=e_1-p=(-.5,.5); each with probability 1/2
    np.testing.assert_allclose(e.mean, [-0.25, 0.25], atol=ENGINE_TOL)
    np.testing.assert_allclose(e.second_moment, [0.125, 0.125], atol=ENGINE_TOL)
    np.testing.assert_allclose(e.variance, [0.0625, 0.0625], atol=ENGINE_TOL)
    np.testing.assert_allclose(e.magnitude, [0.25, 0.25], atol=ENGINE_TOL)
    assert e.max_abs == 0.5 and e.groups == 2


def test_chunking_does_not_change_the_result() -> None:
    theta, s = np.array([0.2, -0.3, 0.0, 1.5]), np.array([3.0, -1.0, 0.0, 2.0])
    a = exact_expectation(rloo, theta, s, 4)
    b = exact_expectation(rloo, theta, s, 4, chunk_size=7)
    np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=ENGINE_TOL)
    assert a.groups == b.groups == 256


def test_probabilities_sum_to_one_at_extreme_logits() -> None:
    total = sum(float(w.sum()) for _, _, w in iter_groups([30.0, -30.0, 0.0], [0.0, 1.0, 2.0], 3))
    assert total == pytest.approx(1.0, abs=ENGINE_TOL)


def test_enumeration_order_and_refusal() -> None:
    g = enumerate_groups(3, 2)
    assert g.shape == (9, 2) and g[5].tolist() == [1, 2]
    with pytest.raises(InvalidArgument, match="MAX_GROUPS"):
        enumerate_groups(MAX_GROUPS, 2)


def test_wrong_shape_from_estimator_is_an_invalid_argument() -> None:
    def wrong(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
        return np.zeros((samples.shape[0], logits.size + 1))

    with pytest.raises(InvalidArgument, match="shape"):
        exact_expectation(wrong, np.zeros(2), np.zeros(2), 2)


def test_engine_passes_fresh_copies() -> None:
    """An estimator that scribbles on its inputs cannot corrupt later chunks."""

    def scribbler(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
        out = reinforce(logits, samples, rewards)
        logits[:] = 99.0
        samples[:] = 0
        rewards[:] = -5.0
        return out

    theta, s = np.array([0.1, 0.7, -0.4]), np.array([1.0, 0.0, 2.0])
    e = exact_expectation(scribbler, theta, s, 3, chunk_size=5)
    np.testing.assert_allclose(e.mean, policy_gradient(theta, s), rtol=0, atol=ENGINE_TOL)


def test_chunking_keeps_every_moment_and_calls_per_chunk() -> None:
    """27 groups in chunks of 7: four calls of 7, 7, 7, 6 groups, and the same moments."""
    theta, s = np.array([0.2, -0.3, 1.5]), np.array([3.0, -1.0, 2.0])
    sizes: list[int] = []

    def recording(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
        sizes.append(samples.shape[0])
        return rloo(logits, samples, rewards)

    a = exact_expectation(rloo, theta, s, 3)
    b = exact_expectation(recording, theta, s, 3, chunk_size=7)
    assert sizes == [7, 7, 7, 6]
    for field in ("mean", "second_moment", "magnitude"):
        np.testing.assert_allclose(getattr(b, field), getattr(a, field), rtol=0, atol=ENGINE_TOL)
    assert a.max_abs == b.max_abs and a.groups == b.groups == 27


def test_moments_are_float64_whatever_the_estimator_returns() -> None:
    """A float32 estimator's values are squared in float64 (no float32 round-off in E[g^2])."""
    theta, s = np.array([0.3, -0.1]), np.array([0.1, 0.7])

    def float32_reinforce(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
        return reinforce(logits, samples, rewards).astype(np.float32)  # type: ignore[return-value]

    e = exact_expectation(float32_reinforce, theta, s, 3)
    x = enumerate_groups(2, 3)
    g = float32_reinforce(theta, x, s[x]).astype(np.float64)
    w = group_probs(softmax(theta), 3)
    np.testing.assert_array_equal(e.second_moment, w @ (g * g))
    np.testing.assert_array_equal(e.mean, w @ g)


def test_wrong_shape_message_names_the_expected_shape() -> None:
    def wrong(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
        return np.zeros((samples.shape[0], logits.size + 1))

    with pytest.raises(InvalidArgument, match=r"return shape \(8, 2\) but got shape \(8, 3\)"):
        exact_expectation(wrong, np.zeros(2), np.zeros(2), 3)


def test_max_groups_is_the_largest_enumeration_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """n**k == MAX_GROUPS is enumerated, n**k > MAX_GROUPS refused (tested on a small limit)."""
    import impl.exact

    monkeypatch.setattr(impl.exact, "MAX_GROUPS", 9)
    assert enumerate_groups(3, 2).shape == (9, 2)
    with pytest.raises(InvalidArgument, match=r"n\*\*k=16 groups exceeds MAX_GROUPS=9 \(n=4, k=2\)"):
        enumerate_groups(4, 2)
    with pytest.raises(InvalidArgument, match=r"n\*\*k=16 groups"):
        enumerate_groups(2, 4)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: enumerate_groups(0, 2), r"n=0 \(type=int\)"),
        (lambda: enumerate_groups(2, 0), r"k=0 \(type=int\)"),
        (lambda: next(iter_groups("t", [0.0], 1)), r"logits='t' \(type=str\)"),
        (lambda: next(iter_groups([0.0], "s", 1)), r"scores='s' \(type=str\)"),
        (lambda: next(iter_groups([0.0, 0.0], [1.0], 1)), r"n=2 and scores=\[1\.0\] \(type=list\)"),
        (lambda: next(iter_groups([0.0], [0.0], 1, chunk_size=0)), r"chunk_size=0 \(type=int\)"),
        (lambda: exact_expectation(reinforce, "t", [0.0], 1), r"logits='t' \(type=str\)"),
    ],
)
def test_bad_arguments_name_themselves(call: object, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        call()  # type: ignore[operator]
