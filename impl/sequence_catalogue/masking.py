"""Sequence losses: response masks, training-inference mismatch, GAE critics and tool tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from impl.sequence_catalogue.entry import GAE_LAMBDA, MISMATCH_TIS_CAP
from impl.sequence_catalogue.torch_helpers import (
    _agg_loss,
    _pg_loss,
    _rloo_view,
    _sequence_log_ratio,
    _terminal_token_rewards,
)

if TYPE_CHECKING:  # the protocol object lives in properties; impl never imports it at run time
    from properties.sequence.batch import SequenceBatch


# --------------------------------------------------------------------------- masking


def _mask_from_first_eos(batch: SequenceBatch) -> Any:
    r"""The response mask rebuilt from the tokens: positions up to and including the first EOS.

    As TRL builds its ``completion_mask`` (``sequence_indices <= eos_idx``, ``eos_idx = T`` when
    there is no EOS).  For a response ending in EOS at :math:`L-1` that is exactly
    :math:`t \le L-1`; for a truncated one every position.  Equal to ``batch.mask``, so the
    loss is ``reinforce-seq-mean-token-sum``: unbiased.
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    is_eos = batch.tokens == batch.eos_token_id
    first = is_eos.int().argmax(dim=1)
    eos_idx = torch.where(is_eos.any(dim=1), first, torch.full_like(first, batch.max_len))
    sequence_indices = torch.arange(batch.max_len)[None, :]
    completion_mask = (sequence_indices <= eos_idx[:, None]).to(batch.log_probs.dtype)
    return _agg_loss(-batch.rewards[:, None] * batch.log_probs, completion_mask, "seq-mean-token-sum")


def _mismatch_log_ratio(batch: SequenceBatch) -> Any:
    """``sum_t (old_log_probs - sampling_log_probs) * mask``: log pi_old(y)/pi_sampler(y), per row."""
    return _sequence_log_ratio(batch.old_log_probs, batch.sampling_log_probs, batch.mask)


def _mismatch_sequence_is(batch: SequenceBatch) -> Any:
    r"""RLOO corrected for the training-inference mismatch by the full sequence ratio.

    The responses come from the inference engine's :math:`\pi_s`, the trainer's
    :math:`\pi_{\mathrm{old}}` (here the current policy, on-policy) scores them;
    :math:`w_j = \pi_{\mathrm{old}}(y_j)/\pi_s(y_j)` (detached) gives
    :math:`E_s[w_j A_j S_j] = E_{\pi}[A_j S_j] = \nabla J` with the leave-one-out baseline
    (F2, which stays independent of row ``j`` under any sampler): unbiased at ``P = 1``.
    """
    weight = _exp_detached(_mismatch_log_ratio(batch))
    advantages = _rloo_view(batch.rewards, batch.group_size)
    return _pg_loss(batch, weight * advantages, "seq-mean-token-sum")


def _mismatch_sequence_tis(batch: SequenceBatch) -> Any:
    r"""The same with the ratio truncated, :math:`\min(w_j, C)` (``C = MISMATCH_TIS_CAP``).

    :math:`E_s[\min(w, C) A S] = E_\pi[\min(1, C/w) A S]`: the responses the sampler
    under-weights (:math:`w > C`) lose the part of their weight above ``C``, a down-weighting
    that depends on the response's own tokens, so it is not a baseline: biased whenever the
    cap binds (TIS trades this bias for bounded variance).
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    weight = torch.clamp(_exp_detached(_mismatch_log_ratio(batch)), max=MISMATCH_TIS_CAP)
    advantages = _rloo_view(batch.rewards, batch.group_size)
    return _pg_loss(batch, weight * advantages, "seq-mean-token-sum")


def _mismatch_uncorrected(batch: SequenceBatch) -> Any:
    r"""RLOO on the sampler's responses with no correction (``sampling_log_probs`` ignored).

    :math:`E_s[A S] = \sum_y \pi_s(y) A(y) \nabla\log\pi(y)`, the score weighted by the
    sampler's probabilities instead of the policy's: biased as soon as they differ.
    """
    advantages = _rloo_view(batch.rewards, batch.group_size)
    return _pg_loss(batch, advantages, "seq-mean-token-sum")


def _gae_advantages(batch: SequenceBatch, lam: float) -> Any:
    r"""GAE with :math:`\gamma = 1`, as verl's ``compute_gae_advantage_return`` (terminal reward)."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    token_rewards = _terminal_token_rewards(batch.rewards, batch.mask)
    values = batch.values * batch.mask
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=-1)
    deltas = token_rewards + next_values - values
    last = torch.zeros_like(deltas[:, 0])
    out = []
    for t in reversed(range(batch.max_len)):
        last = deltas[:, t] + lam * last
        out.append(last)
    return torch.stack(out[::-1], dim=-1).detach()


def _gae_lambda_one(batch: SequenceBatch) -> Any:
    r"""PPO's advantage from a critic: GAE with :math:`\gamma = \lambda = 1`, token-sum, batch mean.

    With :math:`\lambda = 1` the deltas telescope: :math:`A_t = \sum_{l \ge t}\delta_l =
    R - V(y_{<t})` (the value after the last token is 0).  :math:`V(y_{<t})` depends only on the
    prefix, so :math:`E[V(y_{<t}) s_t] = 0` (F3): unbiased for *any* value table.
    """
    advantages = _gae_advantages(batch, 1.0)
    return _agg_loss(-advantages * batch.log_probs, batch.mask, "seq-mean-token-sum")


def _gae_lambda_095(batch: SequenceBatch) -> Any:
    r"""GAE with :math:`\lambda = 0.95` (``GAE_LAMBDA``) and the same critic.

    :math:`A_t = \sum_l \lambda^l \delta_{t+l}`, :math:`\delta_u = r_u + V(y_{\le u}) - V(y_{<u})`.
    With the exact values :math:`V^\pi`, :math:`E[\delta_u \mid y_{<u}] = 0`, so every
    :math:`\delta_{t+l}` with ``l >= 1`` has zero mean given :math:`y_{\le t}`, and
    :math:`E[\delta_t \mid y_{\le t}] = Q(y_{<t}, y_t) - V(y_{<t})`: :math:`E[A_t s_t] =
    E[(Q - V) s_t]`, unbiased (entry ``gae-lambda-0.95-exact-values``).  With the checker's
    random table :math:`E[\delta_{t+l} \mid y_{\le t}]` is not 0 and depends on
    :math:`y_t` (through the later prefixes' values): biased, the bias of an inexact critic
    that :math:`\lambda = 1` avoids.
    """
    advantages = _gae_advantages(batch, GAE_LAMBDA)
    return _agg_loss(-advantages * batch.log_probs, batch.mask, "seq-mean-token-sum")


def _tool_tokens_masked(batch: SequenceBatch) -> Any:
    r"""RLOO over a multi-turn rollout whose odd positions are a tool's output, masked out.

    The tool's tokens are drawn by the environment, not by :math:`\pi`, so
    :math:`\log\pi(y) = \sum_{t \notin H} \log\pi(y_t\mid y_{<t})` (``H`` the tool's
    positions, the holes of ``batch.mask``) and the environment's factors of the response's
    probability do not depend on :math:`\theta`: the score of a response is
    :math:`S_j = \sum_{t\notin H} s_{jt}`, which is what ``log_probs * mask`` sums.  With the
    leave-one-out baseline (F2) :math:`E[A_j S_j] = \nabla J`: unbiased at ``P = 1``.
    """
    advantages = _rloo_view(batch.rewards, batch.group_size)
    return _pg_loss(batch, advantages, "seq-mean-token-sum")


def _tool_tokens_sequence_is_kl(batch: SequenceBatch) -> Any:
    r"""Off-policy with tool tokens and a KL penalty in the reward: masked sequence IS and KL.

    Both the importance weight :math:`w_j = \exp\sum_{t\notin H}(\log\pi - \log\pi_{\mathrm{old}})`
    and the penalty :math:`D_j = \sum_{t\notin H}(\log\pi - \log\pi_{\mathrm{ref}})` sum the
    policy's tokens only: the environment's factors are the same under :math:`\pi`,
    :math:`\pi_{\mathrm{old}}` and :math:`\pi_{\mathrm{ref}}` and cancel from both ratios.  So
    :math:`E_{\mathrm{old}}[w_j (R_j - \beta D_j - b_{-j}) S_j] = E_\pi[(R - \beta D) S] = \nabla J`
    (F1, F2): unbiased at ``P = 1``.
    """
    weight = _exp_detached(_sequence_log_ratio(batch.log_probs, batch.old_log_probs, batch.mask))
    penalty = _sequence_log_ratio(batch.log_probs, batch.ref_log_probs, batch.mask).detach()
    advantages = _rloo_view(batch.rewards - batch.kl_coef * penalty, batch.group_size)
    return _pg_loss(batch, weight * advantages, "seq-mean-token-sum")


def _exp_detached(x: Any) -> Any:
    """``exp(x).detach()`` (a helper of the tool-token entries)."""
    return x.exp().detach()


def _tool_tokens_trained_on(batch: SequenceBatch) -> Any:
    r"""The same RLOO loss on the attention mask (every token up to the first EOS), tool output included.

    A rollout that keeps only the attention mask trains on the environment's tokens too:
    the estimate adds :math:`\sum_{t\in H} A_j s_{jt}`, the score of the tool's choices under
    the policy's own logits at those prefixes.  Its expectation,
    :math:`E[A_j \sum_{t\in H} s_{jt}]`, is the gradient the objective would have if the policy
    chose the tool's tokens: nonzero on the tool's nodes, where :math:`\nabla J = 0` (and, by
    changing the distribution it differentiates, not :math:`\nabla J` elsewhere either):
    biased.
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    is_eos = (batch.tokens == batch.eos_token_id).to(batch.log_probs.dtype)
    ended_before = torch.cumsum(is_eos, dim=-1) - is_eos
    attention_mask = (ended_before == 0).to(batch.log_probs.dtype)
    advantages = _rloo_view(batch.rewards, batch.group_size)
    loss_mat = -advantages[:, None] * batch.log_probs
    return _agg_loss(loss_mat, attention_mask, "seq-mean-token-sum")


def _mask_tokens_ne_pad(batch: SequenceBatch) -> Any:
    r"""``mask = tokens != pad_token_id`` with ``pad == eos``: the EOS token falls out of the loss.

    :math:`g = \frac1B\sum_j R_j \sum_{t<L_j,\,y_{jt}\ne\mathrm{EOS}} s_{jt}`: the decision to
    stop is never reinforced.  Already at ``T = 1``, ``V = 2``, :math:`E[g] \propto -R(a)`
    while :math:`\nabla J \propto R(\mathrm{eos}) - R(a)` (both along the root's only
    direction): the ratio depends on the rewards.  Biased.
    """
    mask = (batch.tokens != batch.pad_token_id).to(batch.log_probs.dtype)
    return _agg_loss(-batch.rewards[:, None] * batch.log_probs, mask, "seq-mean-token-sum")


def _mask_counts_padding(batch: SequenceBatch) -> Any:
    r"""No mask: the token sum runs over all ``T`` positions, padding included.

    Response positions give REINFORCE; the :math:`T - L_j` padding positions add
    :math:`R_j(e_{\mathrm{EOS}} - \pi_{\mathrm{end}})` each to the after-the-end node, where
    :math:`\nabla J = 0`.  Its expectation :math:`\frac1B E[\sum_j R_j (T - L_j)]
    (e_{\mathrm{EOS}} - \pi_{\mathrm{end}})` is nonzero in general for ``T >= 2``: biased.
    """
    per_token = -batch.rewards[:, None] * batch.log_probs
    return per_token.sum(dim=-1).mean()


def _logprobs_shifted_by_one(batch: SequenceBatch) -> Any:
    r"""Hugging Face's shift (``logits[:, :-1]`` against ``tokens[:, 1:]``) applied to aligned logits.

    ``batch.logits[:, t]`` already predicts ``tokens[:, t]``; shifting again scores token
    ``t+1`` under node ``t``'s distribution and drops the first token.  At ``T = 1`` the loss
    is empty (:math:`g = 0`); for ``T >= 2`` the gradient is that of a different objective.
    Biased.
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    logp = torch.log_softmax(batch.logits[:, :-1], dim=-1)
    per_token_logps = logp.gather(-1, batch.tokens[:, 1:, None]).squeeze(-1)
    mask = batch.mask[:, 1:]
    return _agg_loss(-batch.rewards[:, None] * per_token_logps, mask, "seq-mean-token-sum")
