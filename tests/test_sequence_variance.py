r"""The sequence engine's exact variance against closed forms.

With one token per response (``T = 1``) a sequence problem over ``V`` tokens is the
one-step problem over ``V`` answers at the root node (the after-the-end node gets no
gradient), so REINFORCE and RLOO token weights must have the one-step closed-form
variances of ``tests/test_variance.py``.  At any ``T`` the self-inclusive group-mean
weights are :math:`\frac{k-1}{k}` times the leave-one-out weights, batch by batch, so their
variance is :math:`(\frac{k-1}{k})^2` times RLOO's.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_variance import TWO_ANSWERS, reinforce_variance, rloo_variance

from impl.policy import softmax
from properties.onestep.variance import comparison_problems
from properties.sequence.variance import sequence_moments

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

RTOL = 1e-11
"""Two float64 enumerations of the same finite sum."""


def reinforce_weights(rewards, mask, log_probs):  # type: ignore[no-untyped-def]
    return rewards[:, None] * mask / rewards.shape[0]


def rloo_weights(rewards, mask, log_probs):  # type: ignore[no-untyped-def]
    k = rewards.shape[0]
    loo = (rewards.sum() - rewards) / (k - 1)
    return (rewards - loo)[:, None] * mask / k


def group_mean_weights(rewards, mask, log_probs):  # type: ignore[no-untyped-def]
    return (rewards - rewards.mean())[:, None] * mask / rewards.shape[0]


def _root(logits: np.ndarray) -> np.ndarray:
    """``theta`` ``(1, 2, V)`` of a ``T = 1`` problem with these root logits."""
    return np.stack([logits, np.zeros_like(logits)])[None]


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("problem", range(len(TWO_ANSWERS)))
def test_reinforce_weights_at_t1_have_the_two_answer_closed_form(problem: int, k: int) -> None:
    logits, s = TWO_ANSWERS[problem]
    m = sequence_moments(reinforce_weights, theta=_root(logits), rewards=[s], k=k,
                         protocol="token-weights")
    q = float(softmax(logits)[1])
    want = 2 * q * (1 - q) * (q * s[0] + (1 - q) * s[1]) ** 2 / k
    assert m.variance == pytest.approx(want, rel=RTOL)
    assert m.bias_squared < 1e-28 * max(m.second_moment, 1.0)


@pytest.mark.parametrize("k", [2, 3])
def test_rloo_and_reinforce_weights_at_t1_match_the_one_step_formulas(k: int) -> None:
    for p in comparison_problems(6, seed=7):
        if p.n > 3:
            continue
        theta = _root(p.logits)
        rl = sequence_moments(rloo_weights, theta=theta, rewards=[p.scores], k=k,
                              protocol="token-weights")
        rf = sequence_moments(reinforce_weights, theta=theta, rewards=[p.scores], k=k,
                              protocol="token-weights")
        assert rl.variance == pytest.approx(rloo_variance(p.logits, p.scores, k), rel=RTOL)
        assert rf.variance == pytest.approx(reinforce_variance(p.logits, p.scores, k), rel=RTOL)


@pytest.mark.parametrize("k", [2, 3])
def test_group_mean_weights_have_rloo_variance_times_k_minus_1_over_k_squared_at_t2(k: int) -> None:
    rng = np.random.default_rng(0)
    theta = np.round(rng.normal(size=(1, 4, 3)), 3)  # V = 3, T = 2: N = 1 + 2 nodes, + 1
    rewards = np.round(rng.uniform(size=(1, 7)), 3)  # R = 1 + 2 + 4 responses
    kwargs = {"theta": theta, "rewards": rewards, "k": k, "protocol": "token-weights"}
    gm = sequence_moments(group_mean_weights, **kwargs)
    rl = sequence_moments(rloo_weights, **kwargs)
    assert rl.variance > 0.0
    assert gm.variance == pytest.approx(((k - 1) / k) ** 2 * rl.variance, rel=RTOL)


def test_a_torch_loss_gets_the_same_variance_as_its_token_weights() -> None:
    """The loss protocol (per-batch gradients by vmap over autograd) against the weights one."""

    def loss(batch):  # type: ignore[no-untyped-def]
        k = batch.rewards.shape[0]
        loo = (batch.rewards.sum() - batch.rewards) / (k - 1)
        return -((batch.rewards - loo)[:, None] * batch.log_probs * batch.mask).sum() / k

    rng = np.random.default_rng(1)
    theta = np.round(rng.normal(size=(1, 4, 3)), 3)
    rewards = np.round(rng.uniform(size=(1, 7)), 3)
    from_loss = sequence_moments(loss, theta=theta, rewards=rewards, k=2)
    from_weights = sequence_moments(rloo_weights, theta=theta, rewards=rewards, k=2,
                                    protocol="token-weights")
    assert from_loss.variance == pytest.approx(from_weights.variance, rel=1e-10)
    assert from_loss.bias_squared < 1e-26 * from_loss.second_moment
