"""ROLL's estimator code, re-expressed for the corpus (behaviour kept, text not copied).

Source: https://github.com/alibaba/ROLL (Apache-2.0).  Read at stored commit
090ac94658ad14006ef7665aa922bf2668f5517c of ``roll/utils/functionals.py``: ``reward_norm``
(``norm_mean_type``/``norm_std_type`` in ``batch``/``group``, ``std + 1e-6``),
``compute_reinforce_return``, ``agg_loss`` (``seq-mean-token-sum`` divides by
``global_valid_samples + 1e-8``; ``token-mean`` divides the *unmasked* sum by the masked
count, which ROLL PR #444 reports), ``masked_mean``, ``masked_sum``, ``compute_approx_kl``.
The policy-loss lines of the actor worker's ``loss_func`` (ratio, clipped surrogate,
``agg_loss``) are in :func:`actor_pg_loss`, as quoted in ROLL's documentation and workers.
"""

from __future__ import annotations

from typing import Any

import torch


def masked_mean(tensor: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Masked mean with ``+ 1e-8`` in the denominator (0 for empty rows when ``dim`` is set)."""
    if dim is not None:
        mask_sum = mask.sum(axis=dim)
        return torch.where(mask_sum > 0, (tensor * mask).sum(axis=dim) / (mask_sum + 1e-8),
                           torch.zeros_like(mask_sum))
    return (tensor * mask).sum() / (mask.sum() + 1e-8)


def masked_sum(tensor: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Masked sum (0 for empty rows when ``dim`` is set)."""
    if dim is not None:
        mask_sum = mask.sum(axis=dim)
        return torch.where(mask_sum > 0, (tensor * mask).sum(axis=dim), torch.zeros_like(mask_sum))
    return (tensor * mask).sum()


def reward_norm(response_level_rewards: torch.Tensor, n_sample: int = -1,
                norm_mean_type: str | None = None, norm_std_type: str | None = None
                ) -> torch.Tensor:
    """Subtract a batch or group mean, optionally divide by a batch or group std (+ 1e-6)."""
    group_mode = norm_mean_type == "group" or norm_std_type == "group"
    reshaped = (response_level_rewards.reshape(*response_level_rewards.size()[:-1], -1, n_sample)
                if group_mode and n_sample > 0 else response_level_rewards)
    mean: Any
    if norm_mean_type == "batch":
        mean = response_level_rewards.mean()
    elif norm_mean_type == "group":
        mean = reshaped.mean(dim=-1, keepdim=True)
    else:
        mean = 0.0
    std: Any = None
    if norm_std_type == "batch":
        std = response_level_rewards.std()
    elif norm_std_type == "group":
        std = torch.std(reshaped, dim=-1, keepdim=True)
    rewards = reshaped if norm_mean_type == "group" else response_level_rewards
    normalized = (rewards - mean) / (std + 1e-6) if norm_std_type is not None else rewards - mean
    if norm_mean_type == "group":
        normalized = normalized.reshape(*response_level_rewards.size())
    return normalized


def compute_reinforce_return(token_level_rewards: torch.Tensor, gamma: float, lambd: float
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Discounted return-to-go; advantages and returns are the same tensor."""
    with torch.no_grad():
        reversed_returns = []
        cumulative: Any = 0
        for t in reversed(range(token_level_rewards.shape[-1])):
            cumulative = token_level_rewards[:, t] + gamma * cumulative
            reversed_returns.append(cumulative)
        advantages = torch.stack(reversed_returns[::-1], dim=1)
    return advantages, advantages


def agg_loss(loss_mat: torch.Tensor, loss_mask: torch.Tensor, loss_agg_mode: str,
             batch_num_tokens: Any = None, global_valid_samples: Any = None,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """ROLL's aggregation (a verl descendant with per-sample weights and epsilon guards)."""
    if batch_num_tokens is None:
        batch_num_tokens = loss_mask.sum()
    if global_valid_samples is None:
        global_valid_samples = loss_mat.size(0)
    if weights is None:
        weights = torch.ones(loss_mask.shape[0])
    if loss_agg_mode == "token-mean":
        return (loss_mat * weights.unsqueeze(-1)).sum() / batch_num_tokens
    valid = torch.any(loss_mask > 0, dim=-1).float()
    if loss_agg_mode == "seq-mean-token-sum":
        seq = masked_sum(loss_mat, loss_mask, dim=-1)
        return (seq * weights * valid).sum() / (global_valid_samples + 1e-8)
    if loss_agg_mode == "seq-mean-token-mean":
        seq = masked_mean(loss_mat, loss_mask, dim=-1)
        return (seq * weights * valid).sum() / (global_valid_samples + 1e-8)
    if loss_agg_mode == "seq-mean-token-sum-norm":
        seq = masked_sum(loss_mat, loss_mask, dim=-1)
        return (seq * weights * valid).sum() / loss_mask.shape[-1]
    raise ValueError(f"Invalid loss_agg_mode: {loss_agg_mode}")


def actor_pg_loss(log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
                  response_mask: torch.Tensor, *, pg_clip: float = 0.2, dual_clip_loss: bool = False,
                  loss_agg_mode: str = "seq-mean-token-sum") -> torch.Tensor:
    """The policy-gradient lines of the actor worker's ``loss_func``."""
    ratio = (log_probs - old_log_probs).exp()
    surr1 = ratio * advantages
    surr2 = ratio.clamp(1 - pg_clip, 1 + pg_clip) * advantages
    pg_loss = -torch.min(surr1, surr2)
    if dual_clip_loss:
        dual = -torch.max(-pg_loss, (1 + pg_clip * 2) * advantages)
        pg_loss = torch.where(advantages < 0, dual, pg_loss)
    return agg_loss(loss_mat=pg_loss, loss_mask=response_mask, loss_agg_mode=loss_agg_mode)
