"""impl.estimators against their definitions, sample by sample (not only in expectation).

An unbiasedness check cannot tell a baseline from another baseline (any function of the
other samples is unbiased), nor a baseline's sign; these tests pin each estimator's
per-sample weights, its float64 arithmetic and its argument errors.  Time budget: < 2 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from impl import (
    InvalidArgument,
    constant_baseline,
    group_mean_baseline,
    imitation,
    imitation_gradient,
    indicator_reward,
    reinforce,
    rloo,
    score_function,
    softmax,
)

ROUNDOFF = 1e-12
"""Absolute tolerance for float64 identities on O(1) quantities (a few ulps per term)."""


def _batch(n: int = 4, b: int = 6, k: int = 3, seed: int = 0) -> tuple[Any, Any, Any]:
    """A batch with repeated answers inside groups (so a constant shift of the weights shows)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=n), rng.integers(0, n, size=(b, k)), rng.normal(size=(b, k)) * 3.0


def _by_definition(theta: Any, x: Any, w: Any) -> Any:
    """g_b = (1/k) sum_j w_bj (e_{x_bj} - p), by a loop over the samples."""
    return (w[..., None] * score_function(theta, x)).mean(axis=1)


def _loo_weights(r: Any) -> Any:
    b, k = r.shape
    return np.array([[r[i, j] - np.mean(np.delete(r[i], j)) for j in range(k)] for i in range(b)])


@pytest.mark.parametrize("k", [2, 3, 5])
def test_rloo_weights_are_reward_minus_mean_of_the_others(k: int) -> None:
    """k = 2 alone cannot tell 1/(k-1) from (k-1); k = 3 and 5 can."""
    theta, x, r = _batch(k=k)
    expected = _by_definition(theta, x, _loo_weights(r))
    np.testing.assert_allclose(rloo(theta, x, r), expected, rtol=0, atol=ROUNDOFF)


def test_group_mean_baseline_weights() -> None:
    theta, x, r = _batch()
    w = r - r.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(group_mean_baseline(theta, x, r), _by_definition(theta, x, w), rtol=0, atol=ROUNDOFF)


@pytest.mark.parametrize("b", [-2.5, 0.0, 4.0])
def test_constant_baseline_subtracts_the_baseline(b: float) -> None:
    theta, x, r = _batch()
    got = constant_baseline(b)(theta, x, r)
    np.testing.assert_allclose(got, _by_definition(theta, x, r - b), rtol=0, atol=ROUNDOFF)
    np.testing.assert_allclose(got, reinforce(theta, x, r - b), rtol=0, atol=ROUNDOFF)


def test_indicator_reward_weights_and_imitation_rows() -> None:
    theta, x, _ = _batch()
    got = indicator_reward(2)(theta, x, np.zeros(x.shape))
    np.testing.assert_allclose(got, _by_definition(theta, x, (x == 2).astype(float)), rtol=0, atol=ROUNDOFF)
    rows = imitation(3)(theta, x, np.zeros(x.shape))
    assert rows.shape == (x.shape[0], theta.size)
    np.testing.assert_allclose(rows, np.broadcast_to(np.eye(4)[3] - softmax(theta), rows.shape), rtol=0, atol=0)
    np.testing.assert_allclose(imitation_gradient(theta, np.eye(4)[1]), np.eye(4)[1] - softmax(theta), atol=0)


ESTIMATORS: list[tuple[str, Callable[..., Any]]] = [
    ("reinforce", reinforce),
    ("rloo", rloo),
    ("group_mean_baseline", group_mean_baseline),
    ("constant_baseline", constant_baseline(0.1)),
]


@pytest.mark.parametrize(("name", "fn"), ESTIMATORS)
def test_rewards_are_converted_to_float64_before_any_arithmetic(name: str, fn: Callable[..., Any]) -> None:
    """float32 rewards give exactly the float64 result of the same values (no float32 baseline)."""
    theta, x, r = _batch(k=5, b=20, seed=3)
    r32 = (r * 1.1).astype(np.float32)
    np.testing.assert_array_equal(fn(theta, x, r32), fn(theta, x, r32.astype(np.float64)))


@pytest.mark.parametrize(("name", "fn"), ESTIMATORS)
def test_one_group_without_a_batch_axis_is_an_invalid_argument(name: str, fn: Callable[..., Any]) -> None:
    """Estimators here are batched: samples (k,) must be refused by name, not crash."""
    with pytest.raises(InvalidArgument, match=r"shape \(B, k\)"):
        fn(np.zeros(3), np.array([0, 1, 2]), np.array([1.0, 2.0, 3.0]))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: reinforce(np.zeros(2), np.array([[0, 1]]), np.ones((1, 3))),
         r"rewards of shape \(1, 2\) but got rewards=array\(\[\[1\., 1\., 1\.\]\]\) \(type=ndarray"),
        (lambda: constant_baseline(float("nan")), r"finite baseline but got baseline=nan \(type=float\)"),
        (lambda: rloo(np.zeros(2), np.array([[1]]), np.array([[1.0]])),
         r"k >= 2 samples but got samples=array\(\[\[1\]\]\) \(type=ndarray"),
        (lambda: imitation(-1), r"demonstration=-1 \(type=int\)"),
        (lambda: imitation(2)(np.zeros(2), np.array([[0]]), np.array([[0.0]])),
         r"demonstration=2 is not an answer of n=2"),
        (lambda: imitation(0)(np.zeros(2), np.array([0]), np.array([0.0])), r"samples=array\(\[0\]\)"),
        (lambda: indicator_reward(-1), r"demonstration=-1 \(type=int\)"),
        (lambda: imitation_gradient([0.0, 0.0], "ab"), r"demonstrator='ab' \(type=str\)"),
        (lambda: imitation_gradient([0.0, 0.0], [1.0]),
         r"demonstrator over 2 answers but got demonstrator=\[1\.0\] \(type=list\)"),
    ],
)
def test_bad_arguments_name_themselves(call: Callable[[], Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        call()
