"""OpenRLHF's estimator code, re-expressed for the corpus (behaviour kept, text not copied).

Source: https://github.com/OpenRLHF/OpenRLHF (Apache-2.0).  Read at these stored commits:

* ``openrlhf/models/utils.py`` @ 02a260574f3edbc8b4888c3d9a98fae20398d945:
  ``compute_approx_kl`` (k1/k2/k3, every estimator computed after ``.float()``),
  ``compute_reward`` (reward scattered onto the last action, ``-kl_coef * kl`` on every
  action), ``masked_mean``;
* ``openrlhf/models/loss.py`` @ 09f5acefb8968169b5f6013433b95b98f0db985c: ``PolicyLoss``
  (``token_level_loss=True``: one masked mean over all tokens of the batch; ``False``: a
  per-sequence masked mean, then the mean);
* ``openrlhf/trainer/ppo_utils/experience_maker.py`` @ 01359b469bab646981001011e4b58109aeb789d5:
  ``NaiveExperienceMaker.process_experiences`` (reward shaping for ``rloo``,
  ``reinforce_baseline``, ``group_norm`` with ``std + 1e-9``) and ``get_cumulative_returns``;
* ``openrlhf/trainer/ppo_utils/replay_buffer.py`` @ 02fe837d811c1a7ba3a6691a52468f6f6486608e:
  ``NaiveReplayBuffer.normalize`` (global advantage whitening over every action of the
  buffer, in float32, ``rsqrt(clamp(var, 1e-8))``).  The PPO trainer calls it for every
  estimator but ``group_norm`` (and ``dr_grpo`` in later versions).
"""

from __future__ import annotations

import torch


def compute_approx_kl(log_probs: torch.Tensor, log_probs_base: torch.Tensor,
                      kl_estimator: str = "k1") -> torch.Tensor:
    """Per-token KL estimate; note the ``.float()`` casts (float32 even on float64 inputs)."""
    log_ratio = log_probs.float() - log_probs_base.float()
    if kl_estimator == "k1":
        return log_ratio
    if kl_estimator == "k2":
        return log_ratio**2 / 2.0
    if kl_estimator == "k3":
        neg = -log_ratio
        return neg.exp() - 1 - neg
    raise ValueError(kl_estimator)


def masked_mean(tensor: torch.Tensor, mask: torch.Tensor | None, dim: int | None = None
                ) -> torch.Tensor:
    """``(tensor * mask).sum(dim) / mask.sum(dim)``."""
    if mask is None:
        return tensor.mean(dim=dim)
    return (tensor * mask).sum(dim=dim) / mask.sum(dim=dim)


def compute_reward(r: torch.Tensor, kl_coef: float, kl: torch.Tensor,
                   action_mask: torch.Tensor) -> torch.Tensor:
    """Per-action reward: ``r`` on the last action (found from the mask) plus ``-kl_coef * kl``."""
    if kl_coef <= 0.0:
        kl_coef = 0.0
    kl_reward = -kl_coef * kl
    eos_indices = action_mask.size(1) - 1 - action_mask.long().fliplr().argmax(dim=1, keepdim=True)
    last_reward = torch.zeros_like(kl).scatter_(dim=1, index=eos_indices,
                                                src=r.unsqueeze(1).to(kl.dtype))
    return last_reward + kl_reward


def get_cumulative_returns(rewards: torch.Tensor, action_mask: torch.Tensor,
                           gamma: float) -> torch.Tensor:
    """Discounted return-to-go of the masked per-action rewards."""
    response_length = rewards.size(1)
    returns = torch.zeros_like(rewards)
    cumulative: torch.Tensor = torch.zeros(rewards.size(0))
    rewards = action_mask * rewards
    for t in reversed(range(response_length)):
        cumulative = rewards[:, t] + gamma * cumulative
        returns[:, t] = cumulative
    return returns


def process_experience_rewards(rewards: torch.Tensor, n_samples_per_prompt: int,
                               advantage_estimator: str) -> torch.Tensor:
    """Reward shaping of ``process_experiences`` on the flat reward vector (prompt-major)."""
    grouped = rewards.reshape(-1, n_samples_per_prompt)
    if advantage_estimator == "rloo":
        baseline = (grouped.sum(-1, keepdim=True) - grouped) / (n_samples_per_prompt - 1)
        return (grouped - baseline).flatten()
    if advantage_estimator == "reinforce_baseline":
        return (grouped - grouped.mean(-1, keepdim=True)).reshape(-1)
    if advantage_estimator == "group_norm":
        return ((grouped - grouped.mean(-1, keepdim=True))
                / (grouped.std(-1, keepdim=True) + 1e-9)).reshape(-1)
    return rewards


def normalize_advantages(advantages: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """``NaiveReplayBuffer.normalize`` on one process: ``(adv - mean) * rsqrt(clamp(var, 1e-8))``.

    Mean and (population) variance run over every action of every item, after ``.float()``.
    """
    items = advantages.float().flatten()
    masks = action_mask.to(torch.bool).flatten()  # OpenRLHF's action_mask is a BoolTensor
    sum_and_count = torch.tensor([items.sum(), masks.sum()])  # float32, as upstream
    all_sum, all_count = sum_and_count[0], sum_and_count[1]  # all_reduce on one process
    mean = all_sum / all_count
    std = ((items - mean).pow(2) * masks).sum()
    rstd = (std / all_count).clamp(min=1e-8).rsqrt()
    return (advantages - mean) * rstd


class PolicyLoss(torch.nn.Module):
    """PPO policy loss with ``token_level_loss`` aggregation."""

    def __init__(self, clip_eps_low: float = 0.2, clip_eps_high: float = 0.2,
                 token_level_loss: bool = True) -> None:
        super().__init__()
        self.clip_eps_low = clip_eps_low
        self.clip_eps_high = clip_eps_high
        self.token_level_loss = token_level_loss

    def forward(self, log_probs: torch.Tensor, old_log_probs: torch.Tensor,
                advantages: torch.Tensor, action_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        ratio = (log_probs - old_log_probs).exp()
        surr1 = ratio * advantages
        surr2 = ratio.clamp(1 - self.clip_eps_low, 1 + self.clip_eps_high) * advantages
        loss = -torch.min(surr1, surr2)
        loss = (masked_mean(loss, action_mask, dim=None) if self.token_level_loss
                else masked_mean(loss, action_mask, dim=-1).mean())
        clip_ratio = masked_mean(torch.lt(surr2, surr1).float(), action_mask, dim=None)
        return loss, clip_ratio
