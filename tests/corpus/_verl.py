"""verl's estimator functions, re-expressed for the corpus (behaviour kept, text not copied).

Source: https://github.com/volcengine/verl (Apache-2.0, Copyright 2024 Bytedance Ltd. and/or
its affiliates).  Read at these stored commits:

* ``verl/trainer/ppo/core_algos.py`` @ 012be9d9dcb7c38499f23616142870d2682757fc:
  ``compute_grpo_outcome_advantage``, ``compute_rloo_outcome_advantage``,
  ``compute_reinforce_plus_plus_baseline_outcome_advantage``,
  ``compute_reinforce_plus_plus_outcome_advantage``, ``compute_remax_outcome_advantage``,
  ``compute_opo_outcome_advantage``, ``compute_gpg_outcome_advantage``, ``agg_loss``,
  ``compute_policy_loss`` (the explicit-argument form, dual-clip included),
  ``compute_policy_loss_gspo``, ``compute_policy_loss_geo_mean``, ``compute_entropy_loss``,
  ``kl_penalty``;
* ``verl/utils/torch_functional.py`` @ 03c8cca18c827405ad726f7f90b2e0c3823b7830:
  ``masked_mean``, ``masked_var``, ``masked_whiten``, ``entropy_from_logits``;
* ``verl/trainer/ppo/ray_trainer.py`` (``apply_kl_penalty``, the KL-in-reward path) and
  ``verl/workers/actor/dp_actor.py`` @ 0081137bacc08e1fe91b4d5632dccf0d7ad2b41b
  (``update_policy``: how the policy, entropy and KL losses are added up).

Names, signatures, defaults, dtypes, epsilon guards and the order of operations are kept, so
that each function can be replaced by the upstream one verbatim; configuration objects are
small stand-ins (:class:`ActorConfig`, :class:`AlgoConfig`).  Logging-only outputs (clip
fractions, ``ppo_kl``) are computed as upstream where cheap and otherwise returned as 0.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch

# --- verl/utils/torch_functional.py -------------------------------------------------------


def masked_mean(values: torch.Tensor, mask: torch.Tensor, axis: Any = None) -> torch.Tensor:
    """Masked sum over the masked count (no guard against an empty mask, as upstream)."""
    return (values * mask).sum(axis=axis) / mask.sum(axis=axis)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked values, Bessel-corrected over the masked count."""
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        count = mask.sum()
        if count == 0:
            raise ValueError("At least one element in the mask has to be 1.")
        if count == 1:
            raise ValueError("The sum of the mask is one, which can cause a division by zero.")
        variance = variance * (count / (count - 1))
    return variance


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """``(values - mean) * rsqrt(var + 1e-8)`` over the masked entries of the whole tensor."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened += mean
    return whitened


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Categorical entropy ``logsumexp(z) - sum softmax(z) z`` per position."""
    pd = torch.nn.functional.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - torch.sum(pd * logits, dim=-1)


# --- configuration stand-ins ---------------------------------------------------------------


@dataclass
class AlgoConfig:
    """Stand-in for ``verl.trainer.config.AlgoConfig`` (the fields these functions read)."""

    gamma: float = 1.0
    norm_adv_by_std_in_grpo: bool = True

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)


@dataclass
class ActorConfig:
    """Stand-in for ``verl.workers.config.ActorConfig`` (the fields the policy losses read)."""

    clip_ratio: float = 0.2
    clip_ratio_low: float | None = None
    clip_ratio_high: float | None = None
    clip_ratio_c: float = 3.0

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)


# --- verl/trainer/ppo/core_algos.py: advantage estimators ------------------------------------


def _group_rows(index: Any, n: int) -> dict[Any, list[int]]:
    rows: dict[Any, list[int]] = defaultdict(list)
    for i in range(n):
        rows[index[i]].append(i)
    return rows


def compute_grpo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool = True,
    config: AlgoConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO: per-uid ``(score - mean) / (std + epsilon)``, or ``score - mean`` (Dr. GRPO).

    A singleton group gets mean 0 and std 1 (``torch.tensor`` defaults, float32), as upstream;
    ``torch.std`` is Bessel-corrected.
    """
    scores = token_level_rewards.sum(dim=-1)
    with torch.no_grad():
        groups = _group_rows(index, scores.shape[0])
        mean: dict[Any, torch.Tensor] = {}
        std: dict[Any, torch.Tensor] = {}
        for uid, rows in groups.items():
            if len(rows) == 1:
                mean[uid], std[uid] = torch.tensor(0.0), torch.tensor(1.0)
            else:
                members = torch.stack([scores[i] for i in rows])
                mean[uid], std[uid] = torch.mean(members), torch.std(members)
        for i in range(scores.shape[0]):
            if norm_adv_by_std_in_grpo:
                scores[i] = (scores[i] - mean[index[i]]) / (std[index[i]] + epsilon)
            else:
                scores[i] = scores[i] - mean[index[i]]
        scores = scores.unsqueeze(-1) * response_mask
    return scores, scores


def compute_rloo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    epsilon: float = 1e-6,
    config: AlgoConfig | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RLOO written as ``score * n/(n-1) - mean * n/(n-1)`` (= score - mean of the others)."""
    scores = token_level_rewards.sum(dim=-1)
    with torch.no_grad():
        groups = _group_rows(index, scores.shape[0])
        mean = {uid: (torch.tensor(0.0) if len(rows) == 1
                      else torch.mean(torch.stack([scores[i] for i in rows])))
                for uid, rows in groups.items()}
        for i in range(scores.shape[0]):
            n = len(groups[index[i]])
            if n > 1:
                scores[i] = scores[i] * n / (n - 1) - mean[index[i]] * n / (n - 1)
        scores = scores.unsqueeze(-1) * response_mask
    return scores, scores


def compute_reinforce_plus_plus_baseline_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    epsilon: float = 1e-6,
    config: AlgoConfig | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++-baseline: group mean subtracted, then whitened over every token of the batch."""
    response_length = token_level_rewards.shape[-1]
    scores = token_level_rewards.sum(dim=-1)
    with torch.no_grad():
        groups = _group_rows(index, scores.shape[0])
        mean = {uid: (torch.tensor(0.0) if len(rows) == 1
                      else torch.mean(torch.stack([scores[i] for i in rows])))
                for uid, rows in groups.items()}
        for i in range(scores.shape[0]):
            scores[i] = scores[i] - mean[index[i]]
        scores = scores.unsqueeze(-1).tile([1, response_length]) * response_mask
        scores = masked_whiten(scores, response_mask) * response_mask
    return scores, scores


def compute_reinforce_plus_plus_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    config: AlgoConfig | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++: discounted return-to-go (reset after EOS), whitened over the batch."""
    assert config is not None
    gamma = config.gamma
    with torch.no_grad():
        returns = torch.zeros_like(token_level_rewards)
        running: Any = 0
        for t in reversed(range(token_level_rewards.shape[1])):
            running = token_level_rewards[:, t] + gamma * running
            returns[:, t] = running
            running = running * response_mask[:, t]
        advantages = masked_whiten(returns, response_mask) * response_mask
    return advantages, returns


def compute_remax_outcome_advantage(
    token_level_rewards: torch.Tensor,
    reward_baselines: torch.Tensor,
    response_mask: torch.Tensor,
    config: AlgoConfig | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ReMax: return-to-go minus the reward of the greedy response."""
    with torch.no_grad():
        returns = (token_level_rewards * response_mask).flip(dims=[-1]).cumsum(dim=-1).flip(dims=[-1])
        advantages = returns - reward_baselines.unsqueeze(-1) * response_mask
    return advantages, returns


def compute_opo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    epsilon: float = 1e-6,
    config: AlgoConfig | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """OPO: baseline = length-weighted mean score of the group (own response included)."""
    response_length = response_mask.sum(dim=-1)
    scores = token_level_rewards.sum(dim=-1)
    with torch.no_grad():
        groups = _group_rows(index, scores.shape[0])
        baseline: dict[Any, torch.Tensor] = {}
        for uid, rows in groups.items():
            if len(rows) == 1:
                baseline[uid] = torch.tensor(0.0)
            else:
                s = torch.stack([scores[i] for i in rows])
                lengths = torch.stack([response_length[i] for i in rows])
                baseline[uid] = (lengths * s).sum() / lengths.sum()
        for i in range(scores.shape[0]):
            scores[i] = scores[i] - baseline[index[i]]
        scores = scores.unsqueeze(-1) * response_mask
    return scores, scores


def compute_gpg_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    epsilon: float = 1e-6,
    f_norm: float = 1.0,
    alpha: float = 1.0,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GPG: ``alpha * (score - group mean) / f_norm`` with ``alpha = bsz / count_nonzero(scores)``."""
    scores = token_level_rewards.sum(dim=-1)
    with torch.no_grad():
        bsz = scores.shape[0]
        alpha_t = bsz / torch.count_nonzero(scores).clamp(min=1)
        groups = _group_rows(index, bsz)
        mean = {uid: (torch.tensor(0.0) if len(rows) == 1
                      else torch.mean(torch.stack([scores[i] for i in rows])))
                for uid, rows in groups.items()}
        for i in range(bsz):
            scores[i] = alpha_t * (scores[i] - mean[index[i]]) / f_norm
        scores = scores.unsqueeze(-1) * response_mask
    return scores, scores


def compute_rewards(token_level_scores: torch.Tensor, old_log_prob: torch.Tensor,
                    ref_log_prob: torch.Tensor, kl_ratio: float) -> torch.Tensor:
    """Token-level rewards minus ``kl_ratio * (old_log_prob - ref_log_prob)``."""
    return token_level_scores - (old_log_prob - ref_log_prob) * kl_ratio


# --- verl/trainer/ppo/core_algos.py: losses ----------------------------------------------------


def agg_loss(loss_mat: torch.Tensor, loss_mask: torch.Tensor, loss_agg_mode: str) -> torch.Tensor:
    """The four aggregations (``token-mean`` is the default of verl's actor config)."""
    if loss_agg_mode == "token-mean":
        return masked_mean(loss_mat, loss_mask)
    if loss_agg_mode == "seq-mean-token-sum":
        return torch.mean(torch.sum(loss_mat * loss_mask, dim=-1))
    if loss_agg_mode == "seq-mean-token-mean":
        return torch.mean(torch.sum(loss_mat * loss_mask, dim=-1) / torch.sum(loss_mask, dim=-1))
    if loss_agg_mode == "seq-mean-token-sum-norm":
        # the constant normaliser is the padded width (max response length)
        return torch.sum(torch.sum(loss_mat * loss_mask, dim=-1)) / loss_mask.shape[-1]
    raise ValueError(f"Invalid loss_agg_mode: {loss_agg_mode}")


def compute_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    cliprange: float | None = None,
    cliprange_low: float | None = None,
    cliprange_high: float | None = None,
    clip_ratio_c: float = 3.0,
    loss_agg_mode: str = "token-mean",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate with dual-clip for negative advantages (clip_ratio_c > 1)."""
    assert clip_ratio_c > 1.0, f"clip_ratio_c must exceed 1, got {clip_ratio_c}"
    negative_approx_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    ppo_kl = masked_mean(-negative_approx_kl, response_mask)
    low = cliprange if cliprange_low is None else cliprange_low
    high = cliprange if cliprange_high is None else cliprange_high
    assert low is not None and high is not None
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1 - low, 1 + high)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_clipfrac = masked_mean(torch.gt(pg_losses2, pg_losses1).float(), response_mask)
    pg_losses3 = -advantages * clip_ratio_c
    clip_pg_losses2 = torch.min(pg_losses3, clip_pg_losses1)
    pg_clipfrac_lower = masked_mean(
        torch.gt(clip_pg_losses1, pg_losses3) * (advantages < 0).float(), response_mask)
    pg_losses = torch.where(advantages < 0, clip_pg_losses2, clip_pg_losses1)
    pg_loss = agg_loss(loss_mat=pg_losses, loss_mask=response_mask, loss_agg_mode=loss_agg_mode)
    return pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower


def compute_policy_loss_gspo(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "seq-mean-token-mean",
    config: ActorConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """GSPO: a sequence-level ratio (geometric mean) applied per token; always seq-mean-token-mean."""
    assert config is not None and isinstance(config, ActorConfig)
    low = config.clip_ratio_low if config.clip_ratio_low is not None else config.clip_ratio
    high = config.clip_ratio_high if config.clip_ratio_high is not None else config.clip_ratio
    negative_approx_kl = log_prob - old_log_prob
    seq_lengths = torch.sum(response_mask, dim=-1).clamp(min=1)
    seq_kl = torch.sum(negative_approx_kl * response_mask, dim=-1) / seq_lengths
    log_ratio = log_prob - log_prob.detach() + seq_kl.detach().unsqueeze(-1)
    ratio = torch.exp(torch.clamp(log_ratio, max=10.0))
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1 - low, 1 + high)
    pg_losses = torch.maximum(pg_losses1, pg_losses2)
    pg_loss = agg_loss(loss_mat=pg_losses, loss_mask=response_mask,
                       loss_agg_mode="seq-mean-token-mean")
    pg_clipfrac = masked_mean(torch.gt(pg_losses2, pg_losses1).float(), response_mask)
    ppo_kl = masked_mean(-negative_approx_kl, response_mask)
    return pg_loss, pg_clipfrac, ppo_kl, torch.tensor(0.0)


def compute_policy_loss_geo_mean(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: ActorConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """GMPO: clipped token log-ratios averaged per sequence, exponentiated; mean over sequences."""
    assert config is not None
    low = config.clip_ratio_low if config.clip_ratio_low is not None else config.clip_ratio
    high = config.clip_ratio_high if config.clip_ratio_high is not None else config.clip_ratio
    negative_approx_kl = log_prob - old_log_prob
    ppo_kl = masked_mean(-negative_approx_kl, response_mask)
    sgn = torch.sign(advantages)
    clamped = torch.clamp(negative_approx_kl, -low, high)
    kl_min = sgn * torch.min(sgn * negative_approx_kl, sgn * clamped)
    lengths = response_mask.sum(dim=-1)
    ratio = torch.exp((kl_min * response_mask).sum(dim=-1) / (lengths + 1e-8))
    advantage = (advantages * response_mask).sum(dim=-1) / (lengths + 1e-8)
    pg_loss = torch.mean(-advantage * ratio)
    return pg_loss, torch.tensor(0.0), ppo_kl, torch.tensor(0.0)


def compute_entropy_loss(logits: torch.Tensor, response_mask: torch.Tensor,
                         loss_agg_mode: str = "token-mean") -> torch.Tensor:
    """Entropy of every position, aggregated like the policy loss."""
    return agg_loss(loss_mat=entropy_from_logits(logits), loss_mask=response_mask,
                    loss_agg_mode=loss_agg_mode)


def kl_penalty(logprob: torch.Tensor, ref_logprob: torch.Tensor, kl_penalty: str) -> torch.Tensor:
    """Per-token KL estimators: ``kl``/k1, ``abs``, ``mse``/k2, ``low_var_kl``/k3 (clamped)."""
    if kl_penalty in ("kl", "k1"):
        return logprob - ref_logprob
    if kl_penalty == "abs":
        return (logprob - ref_logprob).abs()
    if kl_penalty in ("mse", "k2"):
        return 0.5 * (logprob - ref_logprob).square()
    if kl_penalty in ("low_var_kl", "k3"):
        kl = torch.clamp(ref_logprob - logprob, min=-20, max=20)
        kld = (torch.exp(kl) - kl - 1).contiguous()
        return torch.clamp(kld, min=-10, max=10)
    raise NotImplementedError(kl_penalty)


# --- verl/trainer/ppo/ray_trainer.py -------------------------------------------------------


class FixedKLController:
    """``core_algos.FixedKLController``: a constant coefficient."""

    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op for the fixed controller."""


@dataclass
class DataProto:
    """Stand-in for ``verl.DataProto``: only the tensor dictionary ``batch`` is used."""

    batch: dict[str, torch.Tensor]


def apply_kl_penalty(data: DataProto, kl_ctrl: FixedKLController,
                     kl_penalty_type: str = "kl") -> tuple[DataProto, dict[str, float]]:
    """Token-level rewards = scores - beta * kl(old_log_probs, ref_log_prob) * response_mask.

    (Upstream names the last argument ``kl_penalty``; renamed here because this module also
    defines the ``kl_penalty`` function.)
    """
    response_mask = data.batch["response_mask"]
    kld = kl_penalty(data.batch["old_log_probs"], data.batch["ref_log_prob"],
                     kl_penalty=kl_penalty_type) * response_mask
    beta = kl_ctrl.value
    data.batch["token_level_rewards"] = data.batch["token_level_scores"] - beta * kld
    current_kl = torch.mean(masked_mean(kld, mask=response_mask, axis=-1), dim=0).item()
    return data, {"actor/reward_kl_penalty": current_kl, "actor/reward_kl_penalty_coeff": beta}
