"""TRL's GRPO and RLOO estimator code, re-expressed for the corpus (behaviour kept, text not copied).

Source: https://github.com/huggingface/trl (Apache-2.0, Copyright 2020-2025 The HuggingFace
Team).  In TRL these computations live inside trainer methods; each function below is the
slice of one method that maps rewards and log-probabilities to advantages or to the loss,
named after its origin.  Read at these stored commits:

* ``trl/trainer/grpo_trainer.py`` @ d2b69d769dab6f77acbfd33252bcd7d22765571b:
  ``GRPOTrainer._generate_and_score_completions`` (EOS completion mask; group mean / std
  advantages, ``scale_rewards``, ``+ 1e-4``) and ``GRPOTrainer._compute_loss`` (token or
  sequence importance sampling, two-sided clip ``delta``, ``beta * per_token_kl`` (k3), loss
  types ``grpo``, ``bnpo``, ``dr_grpo``).  The trainer holds rewards in a float32
  ``rewards_per_func`` tensor (``torch.zeros(len(prompts), len(self.reward_funcs))``; read in
  the stored version 000bb3dbb6e3bd0288068c5ad73bb11e4f69dca1 of the same file, where the
  advantage and loss code is the same).
* ``trl/trainer/rloo_trainer.py`` @ 00313f21920d37c3876c4021b51430224c06c936:
  ``RLOOTrainer._generate_and_score_completions`` (sequence-level k1 KL subtracted from the
  reward, leave-one-out baseline, optional ``normalize_advantages`` over the whole batch with
  ``+ 1e-4``) and ``RLOOTrainer._compute_loss`` (sequence-level ratio, clipped, mean over
  sequences).
"""

from __future__ import annotations

import torch


def grpo_completion_mask(completion_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1 up to and including the first EOS, 0 after; all ones when there is no EOS (truncated).

    >>> grpo_completion_mask(torch.tensor([[1, 0, 0], [2, 1, 1], [0, 0, 0]]), 0).tolist()
    [[1, 1, 0], [1, 1, 1], [1, 0, 0]]
    """
    is_eos = completion_ids == eos_token_id
    eos_idx = torch.full((is_eos.size(0),), is_eos.size(1), dtype=torch.long)
    eos_idx[is_eos.any(dim=1)] = is_eos.int().argmax(dim=1)[is_eos.any(dim=1)]
    positions = torch.arange(is_eos.size(1)).expand(is_eos.size(0), -1)
    return (positions <= eos_idx.unsqueeze(1)).int()


def grpo_rewards_per_func(rewards: torch.Tensor) -> torch.Tensor:
    """The trainer's reward holder: ``torch.zeros(B, num_funcs)`` (float32), weights 1, nansum."""
    rewards_per_func = torch.zeros(rewards.shape[0], 1)
    rewards_per_func[:, 0] = rewards
    reward_weights = torch.ones(1, dtype=torch.float32)
    return (rewards_per_func * reward_weights.unsqueeze(0)).nansum(dim=1)


def grpo_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: bool) -> torch.Tensor:
    """``rewards - group mean``, divided by ``group std + 1e-4`` when ``scale_rewards``."""
    grouped = rewards.view(-1, num_generations)
    mean = grouped.mean(dim=1).repeat_interleave(num_generations, dim=0)
    std = grouped.std(dim=1).repeat_interleave(num_generations, dim=0)
    advantages = rewards - mean
    if scale_rewards:
        advantages = advantages / (std + 1e-4)
    return advantages


def grpo_compute_loss(
    per_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    old_per_token_logps: torch.Tensor | None = None,
    ref_per_token_logps: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    delta: float | None = None,
    importance_sampling_level: str = "token",
    loss_type: str = "grpo",
    max_completion_length: int = 256,
) -> torch.Tensor:
    """The loss of ``GRPOTrainer._compute_loss`` (metrics left out)."""
    if beta != 0.0:
        assert ref_per_token_logps is not None
        per_token_kl = (torch.exp(ref_per_token_logps - per_token_logps)
                        - (ref_per_token_logps - per_token_logps) - 1)
    old = per_token_logps.detach() if old_per_token_logps is None else old_per_token_logps
    log_ratio = per_token_logps - old
    if importance_sampling_level == "token":
        log_importance_weights = log_ratio
    elif importance_sampling_level == "sequence":
        log_importance_weights = ((log_ratio * completion_mask).sum(-1)
                                  / completion_mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    else:
        raise ValueError(f"Unknown importance sampling level: {importance_sampling_level}")
    coef_1 = torch.exp(log_importance_weights)
    coef_2 = torch.clamp(coef_1, 1 - epsilon_low, 1 + epsilon_high)
    if delta is not None:
        coef_1 = torch.clamp(coef_1, max=delta)
    per_token_loss1 = coef_1 * advantages.unsqueeze(1)
    per_token_loss2 = coef_2 * advantages.unsqueeze(1)
    per_token_loss = -torch.min(per_token_loss1, per_token_loss2)
    if beta != 0.0:
        per_token_loss = per_token_loss + beta * per_token_kl
    if loss_type == "grpo":
        return ((per_token_loss * completion_mask).sum(-1)
                / completion_mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return (per_token_loss * completion_mask).sum() / completion_mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        return (per_token_loss * completion_mask).sum() / (per_token_loss.size(0)
                                                            * max_completion_length)
    raise ValueError(f"Unknown loss type: {loss_type}")


def rloo_advantages(
    rewards: torch.Tensor,
    old_per_token_logps: torch.Tensor,
    ref_per_token_logps: torch.Tensor | None,
    completion_mask: torch.Tensor,
    *,
    num_generations: int,
    beta: float,
    normalize_advantages: bool,
) -> torch.Tensor:
    """RLOO advantages of ``RLOOTrainer._generate_and_score_completions`` (k1 KL in the reward)."""
    if beta != 0.0:
        assert ref_per_token_logps is not None
        per_token_kl = old_per_token_logps - ref_per_token_logps
        kl = (per_token_kl * completion_mask).sum(-1)
        rewards = rewards - beta * kl
    grouped = rewards.view(-1, num_generations)
    if num_generations > 1:
        baselines = (grouped.sum(dim=1, keepdim=True) - grouped) / (num_generations - 1)
        advantages = rewards - baselines.view(-1)
    else:
        advantages = torch.zeros_like(rewards)
    if normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-4)
    return advantages


def rloo_compute_loss(
    per_token_logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> torch.Tensor:
    """Sequence-level clipped surrogate of ``RLOOTrainer._compute_loss``, mean over sequences."""
    logps = (per_token_logps * completion_mask).sum(1)
    coef_1 = torch.exp(logps - old_logps)
    coef_2 = torch.clamp(coef_1, 1 - epsilon_low, 1 + epsilon_high)
    per_sequence_loss = -torch.min(coef_1 * advantages, coef_2 * advantages)
    return per_sequence_loss.mean()
