"""torchtune's GRPO losses, re-expressed for the corpus (behaviour kept, text not copied).

Source: https://github.com/pytorch/torchtune (BSD-3-Clause, Copyright (c) Meta Platforms,
Inc. and affiliates).  Read at these stored commits:

* ``torchtune/dev/grpo/loss.py`` @ b59a4807caffcbe03c48060ef9dc4f510f371d82 (same text at
  0a08c2f5f25de42404948a66ae7806f0f0a2c485): ``GRPOCompletionLoss``, ``GRPOSimpleLoss``,
  ``GRPOWithChunkedOutputLoss``;
* ``torchtune/rlhf/rewards.py`` @ 26ffccfbd4b742d7e582592446db95e2ddbe357c: ``masked_mean``
  (``+ 1e-8``) and ``masked_sum`` (``dim=None`` by default: a sum over the whole tensor);
* the advantage of torchtune's GRPO recipes (``recipes/dev/grpo_full_finetune_distributed.py``
  and the async recipe): ``(r - group mean) / (group std + 1e-4)``.

The stored ``GRPOCompletionLoss`` calls ``masked_sum(logprobs, padding_masks)`` without
``dim`` although its comments say the result is ``[B x G]``; the mirror keeps the call as it is.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``(x * mask).sum(dim) / (mask.sum(dim) + 1e-8)``."""
    return (x * mask).sum(dim=dim) / (mask.sum(dim=dim) + 1e-8)


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``(x * mask).sum(dim)``; with the default ``dim=None`` a sum over every element."""
    return (x * mask).sum(dim=dim)


def grpo_group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """The recipes' advantage: ``(r - mean) / (std + 1e-4)`` per group, flattened."""
    grouped = rewards.reshape(-1, group_size)
    adv = (grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)
    return adv.reshape(-1)


class GRPOCompletionLoss(torch.nn.Module):
    """Clipped ratio of whole-completion log-probabilities, plus ``kl_coeff`` times k3."""

    def __init__(self, epsilon: float = 0.1, kl_coeff: float = 0.1) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.kl_coeff = kl_coeff

    def forward(self, pi_old_logprobs: torch.Tensor, pi_logprobs: torch.Tensor,
                ref_logprobs: torch.Tensor, advantages: torch.Tensor,
                padding_masks: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pi_old_logprobs = masked_sum(pi_old_logprobs, padding_masks)
        pi_logprobs = masked_sum(pi_logprobs, padding_masks)
        ref_logprobs = masked_sum(ref_logprobs, padding_masks)
        ratios = torch.exp(pi_logprobs - pi_old_logprobs)
        clipped = torch.clamp(ratios, 1.0 - self.epsilon, 1.0 + self.epsilon)
        policy_loss = torch.minimum(advantages * clipped, advantages * ratios).mean()
        kl_loss = torch.exp(ref_logprobs - pi_logprobs) - (ref_logprobs - pi_logprobs) - 1
        kl_loss = masked_mean(kl_loss, padding_masks)
        loss = -(policy_loss - self.kl_coeff * kl_loss)
        return loss, policy_loss.detach(), kl_loss.detach()


class GRPOSimpleLoss(torch.nn.Module):
    """``exp(logp - logp.detach()) * A`` per token minus ``kl_coeff`` k3; per-sequence masked mean."""

    def __init__(self, epsilon: float = 0.1, kl_coeff: float = 0.1) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.kl_coeff = kl_coeff

    def forward(self, pi_old_logprobs: torch.Tensor, pi_logprobs: torch.Tensor,
                ref_logprobs: torch.Tensor, advantages: torch.Tensor,
                padding_masks: torch.Tensor) -> tuple[torch.Tensor, ...]:
        per_token_kl = (torch.exp(ref_logprobs.detach() - pi_logprobs)
                        - (ref_logprobs.detach() - pi_logprobs) - 1)
        per_token_policy_loss = torch.exp(pi_logprobs - pi_logprobs.detach()) * advantages[:, None]
        per_token_loss = -(per_token_policy_loss - self.kl_coeff * per_token_kl)
        loss = masked_mean(per_token_loss, padding_masks, dim=1).mean()
        return (loss,)


class GRPOWithChunkedOutputLoss(torch.nn.Module):
    """GRPOSimpleLoss from logits, chunk by chunk: log-probs via ``cross_entropy(logits.float())``,
    per-sequence sums accumulated into float32 ``torch.zeros(batch_size)`` tensors."""

    def __init__(self, num_output_chunks: int = 8, epsilon: float = 0.1,
                 kl_coeff: float = 0.1) -> None:
        super().__init__()
        self.num_output_chunks = num_output_chunks
        self.epsilon = epsilon
        self.kl_coeff = kl_coeff

    def forward(self, pi_logits: torch.Tensor | list[torch.Tensor], targets: torch.Tensor,
                ref_logprobs: torch.Tensor, advantages: torch.Tensor,
                padding_masks: torch.Tensor) -> tuple[torch.Tensor, ...]:
        chunks = [pi_logits] if isinstance(pi_logits, torch.Tensor) else list(pi_logits)
        n = len(chunks)
        targets_chunks = targets.chunk(n, dim=1)
        ref_chunks = ref_logprobs.chunk(n, dim=1)
        mask_chunks = padding_masks.chunk(n, dim=1)
        batch_size = advantages.numel()
        total_loss_sum = torch.zeros(batch_size)
        total_token_count = torch.zeros(batch_size)
        for logits_c, targets_c, ref_c, mask_c in zip(chunks, targets_chunks, ref_chunks,
                                                      mask_chunks, strict=True):
            logps = -torch.nn.functional.cross_entropy(
                logits_c.reshape(-1, logits_c.size(-1)).float(), targets_c.reshape(-1),
                reduction="none").view_as(targets_c)
            detached, ref_d = logps.detach(), ref_c.detach()
            per_token_kl = torch.exp(ref_d - logps) - (ref_d - logps) - 1
            per_token_policy = torch.exp(logps - detached) * advantages[:, None]
            per_token_loss = -(per_token_policy - self.kl_coeff * per_token_kl)
            total_loss_sum += (per_token_loss * mask_c).sum(dim=1)
            total_token_count += mask_c.sum(dim=1)
        total_token_count = total_token_count.clamp(min=1e-9)
        loss = (total_loss_sum / total_token_count).mean()
        return (loss,)
