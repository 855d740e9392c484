"""Sequence losses: importance ratios (PPO clipping, GSPO, token and sequence IS)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from impl.sequence_catalogue.entry import PPO_CLIP, TIS_CAP
from impl.sequence_catalogue.torch_helpers import (
    _agg_loss,
    _pg_loss,
    _ppo_loss_mat,
    _rloo_view,
    _sequence_log_ratio,
)

if TYPE_CHECKING:  # the protocol object lives in properties; impl never imports it at run time
    from properties.sequence.batch import SequenceBatch


# --------------------------------------------------------------------------- importance


def _ppo_clip(batch: SequenceBatch) -> Any:
    r"""verl's PPO clipped surrogate with RLOO advantages, ``seq-mean-token-sum``.

    On-policy ``old_log_probs == log_probs`` in value, so ``ratio = 1`` with
    :math:`\nabla\,\mathrm{ratio} = s_{jt}`, both arms of the ``max`` equal (the clamp is
    inactive and lets the gradient through), and the loss's gradient is RLOO's: unbiased at
    ``P = 1`` (Schulman et al. 2017; the first minibatch of a PPO step is vanilla PG).
    Off-policy see ``ppo-clip-off-policy``.
    """
    advantages = _rloo_view(batch.rewards, batch.group_size)
    loss_mat = _ppo_loss_mat(batch.log_probs, batch.old_log_probs, advantages)
    return _agg_loss(loss_mat, batch.mask, "seq-mean-token-sum")


def _ppo_clip_off_policy(batch: SequenceBatch) -> Any:
    r"""The same PPO loss, checked with responses from a different behaviour policy.

    Unclipped, the gradient is :math:`\sum_t \rho_{jt} A_j s_{jt}` with the *per-token* ratio
    :math:`\rho_{jt} = \pi(y_{jt}\mid h)/\pi_{\mathrm{old}}(y_{jt}\mid h)`.  Its expectation under
    :math:`\pi_{\mathrm{old}}` reweights token ``t``'s own choice but leaves the prefix
    distribution and the continuation (hence :math:`E[R\mid h, y_t]`) at
    :math:`\pi_{\mathrm{old}}`'s: it is not :math:`\nabla J(\theta)` even before clipping, and the
    clip (zero gradient where :math:`A\rho` leaves the trust region) adds a second,
    problem-dependent bias.  Biased (derived; confirmed by enumeration, which also found
    problems, e.g. ``V = 2, T = 3`` with a random behaviour policy, where
    :math:`E[g]\cdot\nabla J < 0`: the expected PPO step points away from the ascent direction;
    the unclipped per-token ratio alone is already biased, relative residual ~0.5).
    """
    return _ppo_clip(batch)


def _ppo_ratio_old_not_detached(batch: SequenceBatch) -> Any:
    r"""PPO with "old" log-probs recomputed in the same graph without ``.detach()``.

    ``old = log_softmax(logits).gather(tokens)`` *is* ``log_probs``, so ``ratio =
    exp(log_probs - old) == 1`` identically and its gradient is 0: :math:`g = 0` for every
    batch, while :math:`\nabla J \ne 0` (``c = 0``).  Biased.
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    old_log_probs = torch.log_softmax(batch.logits, dim=-1).gather(-1, batch.tokens[..., None]).squeeze(-1)
    advantages = _rloo_view(batch.rewards, batch.group_size)
    loss_mat = _ppo_loss_mat(batch.log_probs, old_log_probs, advantages)
    return _agg_loss(loss_mat, batch.mask, "seq-mean-token-sum")


def _gspo_on_policy(batch: SequenceBatch) -> Any:
    r"""GSPO's sequence ratio :math:`s_j = \exp(\frac{1}{L_j}\sum_t(\log\pi - \log\pi_{\mathrm{old}}))`, clipped.

    On-policy :math:`s_j = 1` and :math:`\nabla s_j = S_j/L_j`, so the loss's gradient is
    :math:`\frac1B\sum_j A_j S_j/L_j`: exactly the ``seq-mean-token-mean`` length weighting,
    hence biased for ``T >= 2`` even on-policy (derived; confirmed by enumeration).  Zheng et
    al. 2025 use the length normalisation to keep the ratio's range comparable across lengths.
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    lengths = batch.mask.sum(dim=-1)
    log_ratio = _sequence_log_ratio(batch.log_probs, batch.old_log_probs, batch.mask) / lengths
    ratio = torch.exp(log_ratio)
    advantages = _rloo_view(batch.rewards, batch.group_size)
    losses = torch.maximum(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - PPO_CLIP, 1 + PPO_CLIP))
    return losses.mean()


def _tis_token(batch: SequenceBatch) -> Any:
    r"""Truncated importance sampling per token: ``min(ratio, C).detach() * A * log pi``.

    On-policy ``ratio = 1 <= C`` and the weight is 1: RLOO, unbiased at ``P = 1``.
    Off-policy (entry ``tis-token-off-policy``) the per-token ratio has the same problem as
    PPO's (it does not correct the prefix or the continuation), and the truncation at
    ``C = 2`` removes mass where the ratio is large: biased (derived; confirmed by
    enumeration).
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    ratio = torch.exp(batch.log_probs - batch.old_log_probs)
    tis_weight = torch.clamp(ratio, max=TIS_CAP).detach()
    advantages = _rloo_view(batch.rewards, batch.group_size)
    loss_mat = -tis_weight * advantages[:, None] * batch.log_probs
    return _agg_loss(loss_mat, batch.mask, "seq-mean-token-sum")


def _sequence_is(batch: SequenceBatch) -> Any:
    r"""Sequence-level importance weight :math:`w_j = \pi(y_j)/\pi_{\mathrm{old}}(y_j)` (detached), RLOO.

    :math:`E_{\mathrm{old}}[w_j A_j S_j] = E_\pi[R S] - E[\bar R_{-j}]\,E_\pi[S] = \nabla J_p`:
    the full-sequence ratio turns the behaviour expectation into the current policy's, and
    the leave-one-out baseline is still independent of :math:`y_j`.  Unbiased off-policy at
    ``P = 1`` (plain importance sampling).
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    weight = torch.exp(_sequence_log_ratio(batch.log_probs, batch.old_log_probs, batch.mask)).detach()
    advantages = _rloo_view(batch.rewards, batch.group_size)
    return _pg_loss(batch, weight * advantages, "seq-mean-token-sum")


def _sequence_is_truncated(batch: SequenceBatch) -> Any:
    r"""Sequence-level importance weight truncated at ``C = 2``: ``min(w_j, C)``.

    :math:`E[g] = \nabla J - E_{\mathrm{old}}[(w - C)^+ A S]`: the truncation removes the part
    of the correction where :math:`\pi(y) > C\pi_{\mathrm{old}}(y)`, which depends on the
    problem.  Biased whenever some response has ratio above ``C`` (typical for a random
    behaviour policy; derived, confirmed by enumeration).
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    weight = torch.exp(_sequence_log_ratio(batch.log_probs, batch.old_log_probs, batch.mask))
    weight = torch.clamp(weight, max=TIS_CAP).detach()
    advantages = _rloo_view(batch.rewards, batch.group_size)
    return _pg_loss(batch, weight * advantages, "seq-mean-token-sum")
