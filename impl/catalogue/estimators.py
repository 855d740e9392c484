"""The one-step catalogue's shared helpers and its unbiased, scaled and biased estimators."""

from __future__ import annotations

from typing import Any

import numpy as np

from impl import estimators as _ref
from impl.catalogue.entry import (
    ENTROPY_COEF,
    GRPO_STD_EPS,
    KL_COEF,
    LOG_EPS,
    LOGP_FLOOR,
    PPO_EPSILON,
    PROB_FLOOR,
    REWARD_SCALE,
    REWARD_SHIFT,
    SELF_BASELINE_FRACTION,
    STALE_BASELINE,
    TEMPERATURE,
)
from impl.errors import InvalidArgument, describe
from impl.policy import group_gradient, log_softmax, softmax
from impl.types import FloatArray, Gradient, IntArray, Logits, Rewards, Samples

# --------------------------------------------------------------------------- helpers


def _rw(samples: Samples, rewards: Rewards) -> FloatArray:
    """``rewards`` as float64 ``(B, k)`` matching ``samples`` (no copy when already so)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2 or r.shape != np.shape(samples):
        raise InvalidArgument(
            f"Expected rewards of shape {np.shape(samples)} (B, k) but got "
            f"{describe('rewards', rewards)}"
        )
    return r


def _need_k2(samples: Samples, who: str) -> int:
    k = int(np.shape(samples)[-1])
    if k < 2:
        raise InvalidArgument(
            f"{who} needs groups of k >= 2 samples but got {describe('samples', samples)}"
        )
    return k


def _onehot(samples: Samples, n: int) -> FloatArray:
    """``e_{x_bj}`` as a ``(B, k, n)`` float64 array."""
    out: FloatArray = (np.asarray(samples)[..., None] == np.arange(n)).astype(np.float64)
    return out


def _without_self(r: FloatArray, fill: float) -> FloatArray:
    """``(B, k, k)``: row ``j`` holds the group's rewards with entry ``j`` replaced by ``fill``."""
    k = r.shape[-1]
    out: FloatArray = np.where(np.eye(k, dtype=bool), fill, r[:, None, :])
    return out


def _entropy_gradient(logits: Logits) -> FloatArray:
    r""":math:`\nabla H = -p\odot(\log p - p\cdot\log p)` for :math:`H = -\sum p\log p`."""
    p, logp = softmax(logits), log_softmax(logits)
    out: FloatArray = -p * (logp - p @ logp)
    return out


# --------------------------------------------------------------------------- unbiased


def _stale_batch_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    return group_gradient(logits, samples, _rw(samples, rewards) - STALE_BASELINE)


def _rloo_wrong_denominator(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    k = r.shape[-1]
    others = (r.sum(axis=-1, keepdims=True) - r) / k  # should be / (k - 1)
    return group_gradient(logits, samples, r - others)


def _group_mean_bessel(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    k = _need_k2(samples, "group-mean-bessel-corrected")
    return group_gradient(logits, samples, k / (k - 1) * (r - r.mean(axis=-1, keepdims=True)))


def _loo_max_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    _need_k2(samples, "loo-max-baseline")
    b = _without_self(r, -np.inf).max(axis=-1)
    return group_gradient(logits, samples, r - b)


def _loo_median_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    _need_k2(samples, "loo-median-baseline")
    b = np.nanmedian(_without_self(r, np.nan), axis=-1)
    return group_gradient(logits, samples, r - b)


def _ppo_weights(logits: Logits, samples: Samples, advantages: FloatArray) -> FloatArray:
    """Gradient coefficient of ``min(ratio A, clip(ratio) A)`` w.r.t. ``log p(x)``."""
    logp = log_softmax(logits)[np.asarray(samples)]
    logp_old = logp.copy()  # the behaviour policy is the current policy (detached)
    ratio = np.exp(logp - logp_old)
    clipped = ((advantages > 0) & (ratio > 1 + PPO_EPSILON)) | (
        (advantages < 0) & (ratio < 1 - PPO_EPSILON)
    )
    out: FloatArray = np.where(clipped, 0.0, ratio * advantages)
    return out


def _ppo_clip_on_policy(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    return group_gradient(logits, samples, _ppo_weights(logits, samples, r))


def _reinforce_float32(logits: Logits, samples: Samples, rewards: Rewards) -> Any:
    p = softmax(logits).astype(np.float32)
    r = _rw(samples, rewards).astype(np.float32)
    onehot = (np.asarray(samples)[..., None] == np.arange(p.size)).astype(np.float32)
    k = np.float32(r.shape[-1])
    return (np.einsum("bk,bkn->bn", r, onehot) - r.sum(axis=-1, keepdims=True) * p) / k


def _reinforce_returns_list(logits: Logits, samples: Samples, rewards: Rewards) -> Any:
    return _ref.reinforce(logits, samples, rewards).tolist()


# --------------------------------------------------------------------------- scaled


def _dr_grpo(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    k = _need_k2(samples, "dr-grpo")
    p = softmax(logits)
    advantage = r - r.mean(axis=-1, keepdims=True)  # no std division, no length normaliser
    out: Gradient = np.einsum("bk,bkn->bn", advantage, _onehot(samples, p.size) - p) / k
    return out


def _sum_instead_of_mean(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    out: Gradient = r.shape[-1] * group_gradient(logits, samples, r)
    return out


def _self_proportional_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    return group_gradient(logits, samples, r - SELF_BASELINE_FRACTION * r)


def _fixed_reward_normalisation(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    return group_gradient(logits, samples, (r - REWARD_SHIFT) / REWARD_SCALE)


def _temperature_gradient_scale(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    out: Gradient = group_gradient(logits, samples, _rw(samples, rewards)) / TEMPERATURE
    return out


def _ppo_clip_group_mean(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    _need_k2(samples, "ppo-clip-group-mean-advantage")
    advantage = r - r.mean(axis=-1, keepdims=True)
    return group_gradient(logits, samples, _ppo_weights(logits, samples, advantage))


# --------------------------------------------------------------------------- biased


def _negated_reinforce(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    out: Gradient = -group_gradient(logits, samples, _rw(samples, rewards))
    return out


def _zero_gradient(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    n = softmax(logits).size
    return np.zeros((np.shape(samples)[0], n))


def _divide_by_n_not_k(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    n = softmax(logits).size
    out: Gradient = group_gradient(logits, samples, r) * (r.shape[-1] / n)
    return out


def _missing_p_term(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    n = softmax(logits).size
    out: Gradient = np.einsum("bk,bkn->bn", r, _onehot(samples, n)) / r.shape[-1]
    return out


def _grad_p(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    p = softmax(logits)
    return group_gradient(logits, samples, r * p[np.asarray(samples)])


def _uniform_p_in_score(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    n = softmax(logits).size
    out: Gradient = np.einsum("bk,bkn->bn", r, _onehot(samples, n) - 1.0 / n) / r.shape[-1]
    return out


def _index_shift(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    n = softmax(logits).size
    return group_gradient(logits, (np.asarray(samples) + 1) % n, r)


def _rewards_rolled(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    _need_k2(samples, "rewards-rolled")
    return group_gradient(logits, samples, np.roll(r, 1, axis=-1))


def _grpo_std(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    _need_k2(samples, "grpo-std-normalised")
    advantage = (r - r.mean(axis=-1, keepdims=True)) / (r.std(axis=-1, keepdims=True) + GRPO_STD_EPS)
    return group_gradient(logits, samples, advantage)


def _median_including_self(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    _need_k2(samples, "median-baseline-including-self")
    return group_gradient(logits, samples, r - np.median(r, axis=-1, keepdims=True))


def _rank_reward(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    k = _need_k2(samples, "rank-reward")
    rank = (r[:, None, :] < r[:, :, None]).sum(axis=-1) / (k - 1)
    return group_gradient(logits, samples, rank.astype(np.float64))


def _imitate_group_best(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    best = np.arange(r.shape[-1]) == r.argmax(axis=-1)[:, None]
    return group_gradient(logits, samples, best.astype(np.float64))


def _clip_rewards(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    return group_gradient(logits, samples, np.clip(_rw(samples, rewards), 0.0, 1.0))


def _prob_floor_in_score(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    p = softmax(logits)
    floored = np.maximum(p, PROB_FLOOR)
    onehot = _onehot(samples, p.size)
    out: Gradient = np.einsum("bk,bkn->bn", r, onehot - floored) / r.shape[-1]
    return out


def _clamped_log_prob(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    alive = log_softmax(logits)[np.asarray(samples)] >= LOGP_FLOOR  # clamp kills the gradient
    return group_gradient(logits, samples, np.where(alive, r, 0.0))


def _epsilon_inside_log(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    px = softmax(logits)[np.asarray(samples)]
    return group_gradient(logits, samples, r * px / (px + LOG_EPS))


def _entropy_bonus(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    g = group_gradient(logits, samples, _rw(samples, rewards))
    out: Gradient = g + ENTROPY_COEF * _entropy_gradient(logits)
    return out


def _kl_to_uniform(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    logp = log_softmax(logits)
    log_ratio = logp[np.asarray(samples)] + np.log(logp.size)  # log p(x) - log(1/n)
    return group_gradient(logits, samples, r - KL_COEF * log_ratio)


def _temperature_mismatch(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    p_t = softmax(np.asarray(logits, dtype=np.float64) / TEMPERATURE)
    score = (_onehot(samples, p_t.size) - p_t) / TEMPERATURE
    out: Gradient = np.einsum("bk,bkn->bn", r, score) / r.shape[-1]
    return out


def _rloo_k1_fallback_self(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    k = r.shape[-1]
    if k == 1:  # "no other samples: use the group mean", which is the sample itself
        baseline = r.mean(axis=-1, keepdims=True)
    else:
        baseline = (r.sum(axis=-1, keepdims=True) - r) / (k - 1)
    return group_gradient(logits, samples, r - baseline)


def _dedupe_by_reward(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    x = np.asarray(samples)
    n = softmax(logits).size
    same = r[:, :, None] == r[:, None, :]
    representative: IntArray = np.where(same, x[:, None, :], n).min(axis=-1).astype(np.int64)
    return group_gradient(logits, representative, r)


def _binary_softmax(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    theta = np.asarray(logits, dtype=np.float64)
    p1 = 1.0 / (1.0 + np.exp(theta[0] - theta[1]))  # sigmoid(theta_1 - theta_0)
    p_binary = np.zeros(theta.size)
    p_binary[:2] = (1.0 - p1, p1)
    score = _onehot(samples, theta.size) - p_binary
    out: Gradient = np.einsum("bk,bkn->bn", r, score) / r.shape[-1]
    return out
