"""Sequence losses whose expected verdict is ``error`` (they raise, return the wrong thing,
mutate their inputs or are nondeterministic)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from impl.sequence_catalogue.entry import DROPOUT_KEEP
from impl.sequence_catalogue.torch_helpers import (
    _agg_loss,
    _group_mean_view,
    _group_std_view,
    _pg_loss,
)

if TYPE_CHECKING:  # the protocol object lives in properties; impl never imports it at run time
    from properties.sequence.batch import SequenceBatch


# --------------------------------------------------------------------------- errors (loss)


def _raises_not_implemented(batch: SequenceBatch) -> Any:
    """Raises ``NotImplementedError`` on every call: error."""
    raise NotImplementedError("sequence loss not implemented yet")


def _returns_per_sequence_vector(batch: SequenceBatch) -> Any:
    """Forgets the final ``.mean()``: returns the ``(B,)`` per-sequence losses, not a scalar: error."""
    per_token = -batch.rewards[:, None] * batch.log_probs * batch.mask
    return per_token.sum(dim=-1)


def _returns_python_float(batch: SequenceBatch) -> Any:
    """Returns ``loss.item()`` (for logging) instead of the tensor: no graph, error."""
    return _pg_loss(batch, batch.rewards, "seq-mean-token-sum").item()


def _grpo_std_no_eps(batch: SequenceBatch) -> Any:
    """GRPO advantage ``(R - mean) / std`` without ``eps``: 0/0 = NaN whenever a group's rewards
    are all equal (e.g. the same response sampled ``k`` times, which has positive probability):
    non-finite, error."""
    k = batch.group_size
    scores = batch.rewards
    advantages = (scores - _group_mean_view(scores, k)) / _group_std_view(scores, k)
    return _pg_loss(batch, advantages, "seq-mean-token-sum")


def _mutates_rewards_in_place(batch: SequenceBatch) -> Any:
    """Centres the rewards with ``rewards -= rewards.mean()`` on ``batch.rewards`` itself: the
    values are those of the batch-mean baseline, but the caller's tensor changes: error."""
    rewards = batch.rewards
    rewards -= rewards.mean()
    return _pg_loss(batch, rewards, "seq-mean-token-sum")


def _nondeterministic_dropout(batch: SequenceBatch) -> Any:
    """Keeps a random 90% of the tokens (``torch.rand_like(mask) < 0.9``, unseeded): not
    reproducible for a fixed batch: error."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    keep = (torch.rand_like(batch.mask) < DROPOUT_KEEP).to(batch.mask.dtype)
    return _agg_loss(-batch.rewards[:, None] * batch.log_probs, batch.mask * keep, "seq-mean-token-sum")
