"""Sequence losses: KL penalties (in the reward and in the loss) and the entropy bonus."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from impl.sequence_catalogue.entry import ENTROPY_COEF
from impl.sequence_catalogue.torch_helpers import (
    _agg_loss,
    _group_mean_view,
    _pg_loss,
    _reverse_cumsum,
    _rloo_view,
    _terminal_token_rewards,
)

if TYPE_CHECKING:  # the protocol object lives in properties; impl never imports it at run time
    from properties.sequence.batch import SequenceBatch


# --------------------------------------------------------------------------- KL


def _kl_k1_in_reward(batch: SequenceBatch) -> Any:
    r"""k1 in the reward: :math:`R'_j = R_j - \beta\sum_t(\log\pi_{\mathrm{old}} - \log\pi_{\mathrm{ref}})`, RLOO.

    verl's ``compute_rewards`` (``kl = old_log_prob - ref_log_prob``) summed over the response:
    on-policy :math:`R'_j = R_j - \beta D_j` and by (F1) :math:`E[R' S] = \nabla E[R] -
    \beta E[D S] = \nabla J` (the remaining :math:`-\beta E[\nabla D] = -\beta E[S] = 0`).  The
    leave-one-out baseline of :math:`R'` is free of :math:`y_j` (F2).  Unbiased (Ziegler et al.
    2019; the standard RLHF placement).
    """
    kl = ((batch.old_log_probs - batch.ref_log_probs) * batch.mask).sum(dim=-1)
    scores = batch.rewards - batch.kl_coef * kl
    return _pg_loss(batch, _rloo_view(scores, batch.group_size), "seq-mean-token-sum")


def _kl_k1_in_reward_token_level(batch: SequenceBatch) -> Any:
    r"""k1 as a per-token reward :math:`-\beta\delta_{jt}`, terminal reward, undiscounted reward-to-go.

    :math:`G_{jt} = R_j - \beta\sum_{s\ge t}\delta_{js}` (no baseline).  Missing relative to the
    sequence form are only the past terms :math:`-\beta\sum_{s<t}\delta_{js}` of token ``t``,
    whose products with :math:`s_{jt}` have mean 0 by causality (F3).  Unbiased at ``P = 1``
    (derived; confirmed by enumeration).
    """
    kl = (batch.old_log_probs - batch.ref_log_probs) * batch.mask
    token_rewards = _terminal_token_rewards(batch.rewards, batch.mask) - batch.kl_coef * kl
    returns = _reverse_cumsum(token_rewards)
    return _agg_loss(-returns.detach() * batch.log_probs, batch.mask, "seq-mean-token-sum")


def _kl_k1_in_reward_group_mean(batch: SequenceBatch) -> Any:
    r"""k1 in the reward with a group-mean (GRPO without std) advantage.

    The self-inclusive mean of :math:`R'` scales :math:`E[R' S]` by :math:`(k-1)/k` as for
    plain rewards: :math:`E[g] = \frac{k-1}{k}\nabla J` with the KL term included.  Scaled
    (derived; confirmed by enumeration).
    """
    kl = ((batch.old_log_probs - batch.ref_log_probs) * batch.mask).sum(dim=-1)
    scores = batch.rewards - batch.kl_coef * kl
    advantages = scores - _group_mean_view(scores, batch.group_size)
    return _pg_loss(batch, advantages, "seq-mean-token-sum")


def _kl_k2_in_reward(batch: SequenceBatch) -> Any:
    r"""k2 in the reward: :math:`R'_j = R_j - \beta\sum_t \delta_{jt}^2/2` (detached), RLOO.

    :math:`E[R' S] = \nabla E[R] - \frac\beta2 E[(\sum_t\delta_t^2) S]`, the score-function
    gradient of :math:`E[\sum_t\delta_t^2/2]` *without* its pathwise part
    :math:`E[\sum_t\delta_t\nabla\delta_t]`: neither :math:`\nabla\mathrm{KL}` nor any multiple.
    Biased (derived; confirmed by enumeration).
    """
    kl = (0.5 * (batch.old_log_probs - batch.ref_log_probs) ** 2 * batch.mask).sum(dim=-1)
    scores = batch.rewards - batch.kl_coef * kl
    return _pg_loss(batch, _rloo_view(scores, batch.group_size), "seq-mean-token-sum")


def _kl_k3_in_reward(batch: SequenceBatch) -> Any:
    r"""k3 in the reward: :math:`R'_j = R_j - \beta\sum_t(e^{-\delta_{jt}} - 1 + \delta_{jt})`, RLOO.

    k3 is an unbiased *value* estimate of the per-token KL, but the score-function gradient of
    its sum is :math:`E[(\sum_t k_3)\,S]`, not :math:`E[D\,S] = \nabla\mathrm{KL}`.  Biased
    (derived; confirmed by enumeration).
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    log_ratio = batch.ref_log_probs - batch.old_log_probs
    kl = ((torch.exp(log_ratio) - 1 - log_ratio) * batch.mask).sum(dim=-1)
    scores = batch.rewards - batch.kl_coef * kl
    return _pg_loss(batch, _rloo_view(scores, batch.group_size), "seq-mean-token-sum")


def _kl_in_loss(batch: SequenceBatch, estimator: str) -> Any:
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    delta = batch.log_probs - batch.ref_log_probs
    if estimator == "k1":
        kld = delta
    elif estimator == "k2":
        kld = 0.5 * delta**2
    else:  # k3, as GRPO/TRL write it: exp(ref - logp) - (ref - logp) - 1
        kld = torch.exp(-delta) + delta - 1
    pg_loss = _pg_loss(batch, _rloo_view(batch.rewards, batch.group_size), "seq-mean-token-sum")
    return pg_loss + batch.kl_coef * _agg_loss(kld, batch.mask, "seq-mean-token-sum")


def _kl_k1_in_loss(batch: SequenceBatch) -> Any:
    r"""k1 in the loss: ``pg_loss + beta * agg(log pi - log pi_ref)`` (differentiable).

    The KL term's gradient is :math:`\beta\frac1B\sum_j S_j`, of mean 0 (F1): on average the
    penalty does nothing and :math:`E[g] = \nabla E[R] \ne \nabla J` for ``beta > 0``.  Biased
    (known: the k1 loss has zero expected gradient on-policy; the enumeration confirms
    :math:`E[g] = \nabla E[R]` to round-off).
    """
    return _kl_in_loss(batch, "k1")


def _kl_k2_in_loss(batch: SequenceBatch) -> Any:
    r"""k2 in the loss: ``pg_loss + beta * agg((log pi - log pi_ref)^2 / 2)``.

    The term's gradient is :math:`\beta\sum_t\delta_{jt}s_{jt}` per row, with mean
    :math:`\sum_t E_{h_t}[\nabla_{\mathrm{node}}\mathrm{KL}(\pi(\cdot\mid h_t)\|\pi_{\mathrm{ref}}
    (\cdot\mid h_t))]`: the per-token KL gradients with the *state distribution held fixed*.
    The sequence KL's gradient is :math:`E[\sum_t(\sum_{s\ge t}\delta_s)s_t]` (F3): the k2 loss
    misses the future terms :math:`s>t`, i.e. the effect of a token on the KL still to come.
    Exact at ``T = 1``, biased for ``T >= 2`` (derived; the enumeration confirms the identity
    :math:`E[g] = \nabla E[R] - \beta\nabla_\theta\sum_n d(n)\,\mathrm{KL}_n` with the reach
    probabilities :math:`d(n)` held fixed, to round-off; the "k2-loss equals k1-in-reward"
    equivalence holds only without the future terms).
    """
    return _kl_in_loss(batch, "k2")


def _kl_k3_in_loss(batch: SequenceBatch) -> Any:
    r"""k3 in the loss, as GRPO (DeepSeekMath, TRL) writes it: ``exp(ref - logp) - (ref - logp) - 1``.

    Per token the gradient is :math:`\beta(1 - \pi_{\mathrm{ref}}/\pi)\,s_t` with mean
    :math:`\beta\sum_y(\pi - \pi_{\mathrm{ref}})(y)\nabla\log\pi(y) = -\beta\sum_y\pi_{\mathrm{ref}}
    \nabla\log\pi = \beta\nabla\mathrm{KL}(\pi_{\mathrm{ref}}\|\pi)` at each node: the *forward*
    KL's gradient, state distribution held fixed.  Not the reverse KL's gradient even at
    ``T = 1``: biased (derived; the enumeration confirms
    :math:`E[g] = \nabla E[R] - \beta\nabla_\theta\sum_n d(n)\,\mathrm{KL}(\pi_{\mathrm{ref}}(\cdot|n)\|
    \pi(\cdot|n))` with :math:`d(n)` held fixed, to round-off; cf. Tang and Munos 2025).
    """
    return _kl_in_loss(batch, "k3")


def _entropy_bonus(batch: SequenceBatch) -> Any:
    r"""RLOO loss minus ``0.01 *`` the token-summed entropy of the policy at each response position.

    The bonus is the gradient of :math:`0.01\,E[\sum_t H(\pi(\cdot\mid h_t))]` (pathwise part
    only), a different objective: biased for any nonzero coefficient.
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    pd = torch.softmax(batch.logits, dim=-1)
    entropy = torch.logsumexp(batch.logits, dim=-1) - (pd * batch.logits).sum(dim=-1)
    pg_loss = _pg_loss(batch, _rloo_view(batch.rewards, batch.group_size), "seq-mean-token-sum")
    return pg_loss - ENTROPY_COEF * _agg_loss(entropy, batch.mask, "seq-mean-token-sum")
