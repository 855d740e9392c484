"""Unit and property tests for impl.policy, including the classic mistakes they must catch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from impl import InvalidArgument, log_softmax, objective, policy_gradient, score_function, softmax
from impl.policy import group_gradient
from properties.strategies import logits, score_tables

ROUNDOFF = 1e-12
"""Absolute tolerance for float64 identities on O(1) quantities."""

FD_STEP = 1e-6
FD_TOL = 1e-6
"""Central differences with step 1e-6 on O(1) functions are accurate to about 1e-9."""


@st.composite
def logits_and_scores(draw: st.DrawFn, max_abs: float = 27.7) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(2, 6))
    return draw(logits(n, max_abs=max_abs)), draw(score_tables(n, max_magnitude=10.0))


@given(logits_and_scores())
def test_softmax_is_a_distribution_and_matches_log_softmax(case: tuple[np.ndarray, np.ndarray]) -> None:
    theta, _ = case
    p = softmax(theta)
    assert np.all(p >= 0)
    assert abs(p.sum() - 1.0) <= ROUNDOFF
    np.testing.assert_allclose(np.exp(log_softmax(theta)), p, rtol=1e-12, atol=1e-300)


@given(logits_and_scores(max_abs=5.0))
def test_policy_gradient_matches_central_differences(case: tuple[np.ndarray, np.ndarray]) -> None:
    theta, s = case
    s = s / max(1.0, float(np.abs(s).max()))
    grad = policy_gradient(theta, s)
    eye = np.eye(theta.size)
    fd = np.array(
        [(objective(theta + FD_STEP * e, s) - objective(theta - FD_STEP * e, s)) / (2 * FD_STEP) for e in eye]
    )
    np.testing.assert_allclose(grad, fd, rtol=0, atol=FD_TOL)


@given(logits_and_scores())
def test_policy_gradient_is_expected_score_times_reward(case: tuple[np.ndarray, np.ndarray]) -> None:
    """grad J = sum_x p(x) s(x) (e_x - p): the REINFORCE identity, summed exactly over D."""
    theta, s = case
    p = softmax(theta)
    lhs = policy_gradient(theta, s)
    rhs = (p * s) @ score_function(theta, np.arange(theta.size))
    scale = float(np.abs(s).max()) + 1.0
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=ROUNDOFF * scale)


def test_score_function_has_the_minus_p_term() -> None:
    """A score without -p (just e_x) would fail: rows of e_x - p sum to zero."""
    sc = score_function([0.3, -0.2, 1.0], [0, 1, 2, 2])
    np.testing.assert_allclose(sc.sum(axis=-1), 0.0, atol=ROUNDOFF)
    assert sc[0, 0] == pytest.approx(1 - softmax([0.3, -0.2, 1.0])[0])


def test_policy_gradient_sign_is_ascent() -> None:
    g = policy_gradient([0.0, 0.0, 0.0], [0.0, 1.0, 2.0])
    assert g[2] > 0 > g[0]
    assert g[1] == pytest.approx(0.0, abs=ROUNDOFF)


@pytest.mark.parametrize(
    ("theta", "expected_p"),
    [
        ([1e3, -1e3], [1.0, 0.0]),
        ([-1e3, -1e3], [0.5, 0.5]),
        ([700.0, 0.0], [1.0, np.exp(-700.0)]),
        ([1e3, 1e3 - 700.0, 1e3], [0.5, 0.5 * np.exp(-700.0), 0.5]),
    ],
)
def test_extreme_logits_are_finite_and_correct(theta: list[float], expected_p: list[float]) -> None:
    p = softmax(theta)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, expected_p, rtol=1e-12, atol=0)
    assert np.all(np.isfinite(log_softmax(theta)))
    g = policy_gradient(theta, [1.0, 2.0, 3.0][: len(theta)])
    assert np.all(np.isfinite(g))
    assert np.all(np.isfinite(score_function(theta, [0, 1])))


def test_gradient_keeps_relative_precision_when_one_answer_dominates() -> None:
    """p0 ~ 1: s0 - J must not cancel to zero (it is -sum_j p_j (s_j - s0))."""
    g = policy_gradient([1e3, -1e3, 300.0], [1.0, 2.0, 3.0])
    tiny = np.exp(-700.0)
    np.testing.assert_allclose(g, [-2 * tiny, 0.0, 2 * tiny], rtol=1e-10, atol=0)


def test_group_gradient_matches_a_loop_over_samples() -> None:
    rng = np.random.default_rng(1)
    theta = rng.normal(size=4)
    x = rng.integers(0, 4, size=(5, 3))
    w = rng.normal(size=(5, 3))
    sc = score_function(theta, x)
    expected = (w[..., None] * sc).mean(axis=1)
    np.testing.assert_allclose(group_gradient(theta, x, w), expected, rtol=0, atol=ROUNDOFF)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: softmax([[0.0, 1.0]]), "1-D float array"),
        (lambda: softmax([]), "at least 1"),
        (lambda: softmax([0.0, np.nan]), "finite"),
        (lambda: softmax("abc"), "float array"),
        (lambda: policy_gradient([0.0, 0.0], [1.0, 2.0, 3.0]), "same length"),
        (lambda: score_function([0.0, 0.0], [2]), "answers in 0..1"),
        (lambda: score_function([0.0, 0.0], [0.5]), "integer answers"),
        (lambda: group_gradient([0.0, 0.0], np.array([[0, 1]]), np.ones((1, 3))), "weights of shape"),
    ],
)
def test_bad_arguments_say_what_was_wrong(call: object, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        call()  # type: ignore[operator]


def test_gradient_keeps_relative_precision_whichever_answer_dominates() -> None:
    """The shift is by the score of the most probable answer, wherever it sits (here index 1)."""
    g = policy_gradient([-1e3, 1e3, 300.0], [2.0, 1.0, 3.0])
    tiny = np.exp(-700.0)
    np.testing.assert_allclose(g, [0.0, -2 * tiny, 2 * tiny], rtol=1e-10, atol=0)


def test_group_gradient_converts_weights_to_float64_first() -> None:
    """float32 weights give exactly the result for the same values in float64."""
    rng = np.random.default_rng(5)
    theta, x = rng.normal(size=3), rng.integers(0, 3, size=(50, 7))
    w32 = rng.normal(size=(50, 7)).astype(np.float32)
    np.testing.assert_array_equal(group_gradient(theta, x, w32), group_gradient(theta, x, w32.astype(np.float64)))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: softmax("abc"), r"logits='abc' \(type=str\)"),
        (lambda: log_softmax([[0.0]]), r"logits=\[\[0\.0\]\] \(type=list\)"),
        (lambda: objective([0.0, 0.0], "s"), r"scores='s' \(type=str\)"),
        (lambda: objective([0.0, 0.0], [1.0]), r"n=2 and scores=array\(\[1\.\]\) \(type=ndarray"),
        (lambda: policy_gradient([0.0, 0.0], "s"), r"scores='s' \(type=str\)"),
        (lambda: score_function([0.0, 0.0], [2]), r"0\.\.1 but got samples=\[2\] \(type=list\)"),
        (lambda: group_gradient([0.0, 0.0], [0, 1], np.ones(2)), r"samples=\[0, 1\] \(type=list\)"),
        (lambda: group_gradient([0.0, 0.0], np.array([[0, 1]]), [[1.0]]),
         r"weights of shape \(1, 2\) but got weights=\[\[1\.0\]\] \(type=list\)"),
    ],
)
def test_bad_arguments_name_themselves(call: object, match: str) -> None:
    """STYLE 2: the message repeats the argument as name=value!r with its type."""
    with pytest.raises(InvalidArgument, match=match):
        call()  # type: ignore[operator]
