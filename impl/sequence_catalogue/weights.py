"""NumPy token-weight functions of the sequence catalogue (the ``weights`` protocol)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from impl.sequence_catalogue.entry import DROPOUT_KEEP, GRPO_STD_EPS, KL_COEF, TIS_CAP
from impl.types import FloatArray, IntArray

# --------------------------------------------------------------------------- NumPy weights


def _rloo_np(rewards: FloatArray, group: IntArray) -> FloatArray:
    """Leave-one-out advantages through the group index (any leading axes)."""
    g = np.asarray(group)
    onehot = (g[..., None] == np.arange(int(g.max()) + 1)).astype(np.float64)
    group_sum = (onehot * (onehot * rewards[..., None]).sum(axis=-2)[..., None, :]).sum(axis=-1)
    group_count = (onehot * onehot.sum(axis=-2)[..., None, :]).sum(axis=-1)
    out: FloatArray = rewards - (group_sum - rewards) / (group_count - 1)
    return out


def _group_mean_std_np(rewards: FloatArray, group: IntArray) -> tuple[FloatArray, FloatArray]:
    """Per-row group mean and Bessel-corrected group std, verl's ``id2score`` loop style."""
    id2score: dict[int, list[float]] = defaultdict(list)
    for r, g in zip(rewards.tolist(), np.asarray(group).tolist(), strict=True):
        id2score[int(g)].append(r)
    mean = np.array([np.mean(id2score[int(g)]) for g in np.asarray(group).tolist()])
    std = np.array([np.std(id2score[int(g)], ddof=1) for g in np.asarray(group).tolist()])
    return mean, std


def _w_reinforce(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray) -> FloatArray:
    r"""``advantages[:, None] * mask / B`` with advantage = reward: the weights of ``seq-mean-token-sum``.

    :math:`g = \frac1B\sum_j R_j S_j`: unbiased at ``P = 1`` (F1).
    """
    out: FloatArray = rewards[:, None] * mask / rewards.shape[0]
    return out


def _w_rloo(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, group: IntArray) -> FloatArray:
    r"""RLOO advantages from the ``group`` index, broadcast over tokens, divided by ``B``.

    Unbiased per row (F2), and so is the mean over the batch (F4): unbiased, checked with
    ``P in (1, 2)``.  The same code runs on a leading ``G`` axis
    (entry ``w-rloo-batched``).
    """
    advantages = _rloo_np(rewards, group)
    out: FloatArray = advantages[..., None] * mask / rewards.shape[-1]
    return out


def _w_reward_to_go_terminal(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray) -> FloatArray:
    r"""Undiscounted reward-to-go of a terminal reward (reverse cumsum), masked, divided by ``B``.

    Every response token's reward-to-go is :math:`R_j`: REINFORCE, unbiased at ``P = 1``.
    """
    lengths = mask.sum(axis=-1).astype(np.int64)
    token_rewards = np.zeros_like(mask)
    token_rewards[np.arange(rewards.shape[0]), lengths - 1] = rewards
    returns = np.flip(np.cumsum(np.flip(token_rewards, axis=-1), axis=-1), axis=-1)
    out: FloatArray = returns * mask / rewards.shape[0]
    return out


def _w_grpo_std(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, group: IntArray) -> FloatArray:
    r"""GRPO ``(R - mean) / (std + 1e-4)`` by group, seq-mean-token-sum weights: biased (see ``grpo-std``)."""
    mean, std = _group_mean_std_np(rewards, group)
    advantages = (rewards - mean) / (std + GRPO_STD_EPS)
    out: FloatArray = advantages[:, None] * mask / rewards.shape[0]
    return out


def _w_token_mean(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, group: IntArray) -> FloatArray:
    r"""RLOO advantages with token-mean weights ``A_j mask / mask.sum()``: biased (see ``token-mean``)."""
    advantages = _rloo_np(rewards, group)
    out: FloatArray = advantages[:, None] * mask / mask.sum()
    return out


def _w_dr_grpo(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, group: IntArray) -> FloatArray:
    r"""Group-mean advantage, weights ``A_j mask / T`` (verl's seq-mean-token-sum-norm).

    As ``dr-grpo-verl``: :math:`c = (k-1)P/T`.
    """
    mean, _ = _group_mean_std_np(rewards, group)
    out: FloatArray = (rewards - mean)[:, None] * mask / mask.shape[-1]
    return out


def _w_mask_tokens_ne_pad(
    rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, tokens: IntArray
) -> FloatArray:
    r"""Weights masked by ``tokens != 0`` (pad == EOS) instead of ``mask``: EOS dropped, biased."""
    out: FloatArray = rewards[:, None] * (tokens != 0) / rewards.shape[0]
    return out


def _w_counts_padding(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray) -> FloatArray:
    r"""The advantage on every position, padding included (mask ignored).

    Padding weights move the after-the-end node, where :math:`\nabla J = 0`: biased for
    ``T >= 2`` (see ``mask-counts-padding``).
    """
    out: FloatArray = np.broadcast_to(rewards[:, None], mask.shape) / rewards.shape[0]
    return out


def _w_kl_k1_in_reward(
    rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, ref_log_probs: FloatArray
) -> FloatArray:
    r"""REINFORCE on :math:`R - \beta D` with :math:`\beta` = :data:`KL_COEF` hard-coded.

    Unbiased against the ``kl_coef = KL_COEF`` objective (see ``kl-k1-in-reward``).
    """
    kl = ((log_probs - ref_log_probs) * mask).sum(axis=-1)
    out: FloatArray = (rewards - KL_COEF * kl)[:, None] * mask / rewards.shape[0]
    return out


def _w_kl_k3_in_loss(
    rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, ref_log_probs: FloatArray
) -> FloatArray:
    r"""REINFORCE weights plus the k3-loss term's ``-beta (1 - exp(ref - logp))`` per token.

    ``d/d logp`` of :math:`\beta(e^{-\delta} + \delta - 1)` is :math:`\beta(1 - e^{-\delta})`;
    as an ascent weight it enters with a minus sign.  Biased (see ``kl-k3-in-loss``).
    """
    kl_grad = 1.0 - np.exp(ref_log_probs - log_probs)
    out: FloatArray = (rewards[:, None] - KL_COEF * kl_grad) * mask / rewards.shape[0]
    return out


def _w_sequence_is(
    rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, group: IntArray, old_log_probs: FloatArray
) -> FloatArray:
    r"""Sequence importance weight times RLOO advantage, broadcast over tokens: unbiased off-policy."""
    weight = np.exp(((log_probs - old_log_probs) * mask).sum(axis=-1))
    out: FloatArray = (weight * _rloo_np(rewards, group))[:, None] * mask / rewards.shape[0]
    return out


def _w_tis_token(
    rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, group: IntArray, old_log_probs: FloatArray
) -> FloatArray:
    r"""``min(exp(logp - old), 2)`` per token times the RLOO advantage: biased off-policy (see ``tis-token``)."""
    weight = np.minimum(np.exp(log_probs - old_log_probs), TIS_CAP)
    out: FloatArray = weight * _rloo_np(rewards, group)[:, None] * mask / rewards.shape[0]
    return out


def _w_raises(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray) -> FloatArray:
    """Raises ``ValueError``: error."""
    raise ValueError("expected rewards of shape (B, T)")


def _w_returns_vector(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray) -> FloatArray:
    """Returns the per-response advantages ``(B,)`` instead of ``(B, T)`` weights: error."""
    out: FloatArray = rewards / rewards.shape[0]
    return out


def _w_nan_std_no_eps(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, group: IntArray) -> FloatArray:
    """``(R - mean) / std`` by group with no ``eps``: NaN when a group's rewards are all equal: error."""
    mean, std = _group_mean_std_np(rewards, group)
    with np.errstate(invalid="ignore", divide="ignore"):
        advantages = (rewards - mean) / std
    out: FloatArray = advantages[:, None] * mask / rewards.shape[0]
    return out


def _w_mutates_rewards(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray) -> FloatArray:
    """``rewards -= rewards.mean()`` in place on the caller's array: error."""
    rewards -= rewards.mean()
    out: FloatArray = rewards[:, None] * mask / rewards.shape[0]
    return out


def _w_nondeterministic(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray) -> FloatArray:
    """REINFORCE weights times a fresh, unseeded random keep-mask: not reproducible, error."""
    rng = np.random.default_rng()  # the bug: a new unseeded generator per call
    keep = rng.random(mask.shape) < DROPOUT_KEEP
    out: FloatArray = rewards[:, None] * mask * keep / rewards.shape[0]
    return out
