"""PyTorch helpers of the sequence losses, written as the libraries write them (verl's
``agg_loss`` / ``masked_mean``, TRL's group view)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from impl.errors import InvalidArgument, describe
from impl.sequence_catalogue.entry import PPO_CLIP

if TYPE_CHECKING:  # the protocol object lives in properties; impl never imports it at run time
    from properties.sequence.batch import SequenceBatch


# --------------------------------------------------------------------------- torch helpers
# Written as the libraries write them (verl's agg_loss / masked_mean, TRL's group view).


def _masked_mean(values: Any, mask: Any, dim: int | None = None) -> Any:
    """``sum(values * mask) / sum(mask)`` over ``dim`` (all elements when ``None``)."""
    if dim is None:
        return (values * mask).sum() / mask.sum()
    return (values * mask).sum(dim) / mask.sum(dim)


def _agg_loss(loss_mat: Any, loss_mask: Any, mode: str) -> Any:
    """verl's ``agg_loss``: the four loss aggregations in common use."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    if mode == "token-mean":
        return _masked_mean(loss_mat, loss_mask)
    if mode == "seq-mean-token-sum":
        return torch.sum(loss_mat * loss_mask, dim=-1).mean()
    if mode == "seq-mean-token-mean":
        return (torch.sum(loss_mat * loss_mask, dim=-1) / torch.sum(loss_mask, dim=-1)).mean()
    if mode == "seq-mean-token-sum-norm":
        return torch.sum(loss_mat * loss_mask) / loss_mask.shape[-1]
    raise InvalidArgument(f"Unknown {describe('loss_agg_mode', mode)}")


def _pg_loss(batch: SequenceBatch, advantages: Any, mode: str) -> Any:
    """Vanilla policy-gradient loss ``-A * log pi`` per token, aggregated by ``mode``."""
    loss_mat = -advantages.detach()[:, None] * batch.log_probs
    return _agg_loss(loss_mat, batch.mask, mode)


def _group_mean_view(scores: Any, k: int) -> Any:
    """TRL style: ``scores.view(-1, k).mean(1)`` repeated back to one value per row."""
    return scores.view(-1, k).mean(dim=1).repeat_interleave(k, dim=0)


def _group_std_view(scores: Any, k: int) -> Any:
    """TRL style: ``scores.view(-1, k).std(1)`` (Bessel-corrected) repeated per row."""
    return scores.view(-1, k).std(dim=1).repeat_interleave(k, dim=0)


def _rloo_view(scores: Any, k: int) -> Any:
    """Leave-one-out advantage ``r_j - mean_{i != j} r_i`` within each group of ``k`` rows."""
    grouped = scores.view(-1, k)
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).reshape(-1)


def _sequence_log_ratio(log_probs: Any, other: Any, mask: Any) -> Any:
    """``sum_t (log_probs - other) * mask``: the log of a sequence-level probability ratio."""
    return ((log_probs - other) * mask).sum(dim=-1)


def _terminal_token_rewards(rewards: Any, mask: Any) -> Any:
    """``(B, T)`` token rewards: the sequence reward on the last response token, 0 elsewhere."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    lengths = mask.sum(dim=-1).long()
    positions = torch.arange(mask.shape[-1])
    last = (positions[None, :] == (lengths - 1)[:, None]).to(rewards.dtype)
    return last * rewards[:, None]


def _reverse_cumsum(x: Any) -> Any:
    """``out[t] = sum_{s >= t} x[s]`` (verl's flip-cumsum-flip)."""
    return x.flip(dims=[-1]).cumsum(dim=-1).flip(dims=[-1])


def _ppo_loss_mat(log_probs: Any, old_log_probs: Any, advantages: Any) -> Any:
    """verl's clipped surrogate per token: ``max(-A r, -A clip(r, 1-eps, 1+eps))``."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    ratio = torch.exp(log_probs - old_log_probs)
    adv = advantages[:, None]
    pg_losses1 = -adv * ratio
    pg_losses2 = -adv * torch.clamp(ratio, 1.0 - PPO_CLIP, 1.0 + PPO_CLIP)
    return torch.maximum(pg_losses1, pg_losses2)
