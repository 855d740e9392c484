"""Sequence losses: baselines, group normalisation, loss aggregation and returns."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from impl.sequence_catalogue.entry import GAMMA, GRPO_STD_EPS, WHITEN_EPS
from impl.sequence_catalogue.torch_helpers import (
    _agg_loss,
    _group_mean_view,
    _group_std_view,
    _pg_loss,
    _reverse_cumsum,
    _rloo_view,
    _terminal_token_rewards,
)

if TYPE_CHECKING:  # the protocol object lives in properties; impl never imports it at run time
    from properties.sequence.batch import SequenceBatch


# --------------------------------------------------------------------------- baselines


def _reinforce_seq_mean_token_sum(batch: SequenceBatch) -> Any:
    r"""REINFORCE: advantage = reward, token sum per response, mean over the batch.

    :math:`g = \frac1B\sum_j R_j S_j`.  By (F1) each row has expectation
    :math:`P\,\nabla J_{p(j)}` (the target's component on prompt ``p(j)`` is
    :math:`\nabla J_{p(j)}/P`) and by (F4) the batch mean gives :math:`\nabla J`: unbiased for
    every ``P`` (the entry ``reinforce-batch-mean-multi-prompt`` checks this same function with
    ``P in (1, 2)``).
    """
    return _pg_loss(batch, batch.rewards, "seq-mean-token-sum")


def _reinforce_sum_over_prompts(batch: SequenceBatch) -> Any:
    r"""REINFORCE summed over the batch and divided by the group size ``k``.

    :math:`g = \frac1k\sum_j R_j S_j`, so :math:`E[g] = \sum_p \nabla J_p = P\,\nabla J` (F1):
    scaled, :math:`c = P`; it sums the prompts where the objective averages them.
    """
    loss_mat = -batch.rewards[:, None] * batch.log_probs
    return (loss_mat * batch.mask).sum() / batch.group_size


def _rloo(batch: SequenceBatch) -> Any:
    r"""RLOO: :math:`A_j = R_j - \frac{1}{k-1}\sum_{i\ne j} R_i` within the group, seq-mean-token-sum.

    The baseline depends only on the other rows of the group (F2), so
    :math:`E[A_j S_j] = \nabla J_{p(j)}`; unbiased at ``P = 1`` (Kool et al. 2019; Ahmadian et
    al. 2024).
    """
    advantages = _rloo_view(batch.rewards, batch.group_size)
    return _pg_loss(batch, advantages, "seq-mean-token-sum")


def _rloo_group_index(batch: SequenceBatch) -> Any:
    r"""RLOO through the ``group`` index (one-hot group sums), mean over the batch.

    Same advantages as ``rloo`` computed from ``batch.group`` instead of a reshape, so it does
    not rely on prompt-major rows.  Unbiased per row (F2) and the batch mean keeps it so
    (F4): unbiased, checked with ``P in (1, 2)``.
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    scores = batch.rewards
    onehot = (batch.group[:, None] == torch.arange(batch.num_prompts)).to(scores.dtype)
    group_sum = onehot @ (onehot.T @ scores)
    group_count = onehot @ onehot.sum(dim=0)
    advantages = scores - (group_sum - scores) / (group_count - 1)
    return _pg_loss(batch, advantages, "seq-mean-token-sum")


def _rloo_verl_dict_loop(batch: SequenceBatch) -> Any:
    r"""RLOO as verl's ``compute_rloo_outcome_advantage`` writes it: a Python dict per group id.

    ``scores[i] = scores[i] * n/(n-1) - mean_i * n/(n-1)`` with the self-inclusive group mean,
    i.e. :math:`R_j - \frac{1}{n-1}\sum_{i\ne j}R_i`: RLOO, unbiased at ``P = 1`` (F2).  It reads
    ``int(group[i])`` and loops in Python, so a ``vmap`` over batches cannot trace it: it is the
    catalogue's test of the checker's documented per-batch fallback.
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    scores = batch.rewards.clone()
    id2score: dict[int, list[Any]] = defaultdict(list)
    for i in range(scores.shape[0]):
        id2score[int(batch.group[i])].append(scores[i])
    id2mean = {idx: torch.stack(vals).mean() for idx, vals in id2score.items()}
    for i in range(scores.shape[0]):
        idx = int(batch.group[i])
        n = len(id2score[idx])
        if n > 1:
            scores[i] = scores[i] * n / (n - 1) - id2mean[idx] * n / (n - 1)
    return _pg_loss(batch, scores, "seq-mean-token-sum")


def _remax_greedy_baseline(batch: SequenceBatch) -> Any:
    r"""ReMax: the baseline is the reward of the prompt's greedy response.

    :math:`b_j = R(\text{greedy}_{p(j)})` depends on :math:`\theta` and the prompt but not on
    any sampled response, so :math:`E[b_j S_j] = b_j E[S_j] = 0` (F1): unbiased at ``P = 1``
    (Li et al. 2023).
    """
    baseline = batch.reward_fn(batch.greedy_tokens[batch.group], batch.group)
    return _pg_loss(batch, batch.rewards - baseline, "seq-mean-token-sum")


def _remax_teacher_forced_argmax(batch: SequenceBatch) -> Any:
    r"""ReMax done wrong: the "greedy" response is ``logits.argmax(-1)`` of the *sampled* rows.

    Position ``t`` of row ``j`` reads the node of :math:`y_{j,<t}`, so the argmax sequence is
    the greedy choice *along the sampled prefix* (teacher forcing), cut at its first EOS.  For
    ``T >= 2`` the baseline depends on :math:`y_j` itself (its positions ``t >= 1``), so
    :math:`E[b_j S_j] \ne 0` in general and the bias is not a fixed multiple: biased (at
    ``T = 1`` it reads only the root and would be exact).
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    greedy = batch.logits.argmax(dim=-1)
    is_eos = (greedy == batch.eos_token_id).long()
    after_first_eos = (is_eos.cumsum(dim=-1) - is_eos) > 0
    greedy = torch.where(after_first_eos, torch.full_like(greedy, batch.pad_token_id), greedy)
    baseline = batch.reward_fn(greedy, batch.group)
    return _pg_loss(batch, batch.rewards - baseline, "seq-mean-token-sum")


def _batch_mean_baseline(batch: SequenceBatch) -> Any:
    r"""Baseline = mean reward of the whole batch (all prompts pooled), seq-mean-token-sum.

    :math:`A_j = R_j - \frac1B\sum_i R_i`.  The :math:`i = j` term is
    :math:`-\frac1B R_j S_j`; every other term has mean 0 (F2), so
    :math:`E[A_j S_j] = (1 - \frac1B)\nabla J_{p(j)}` and with the batch mean (F4)
    :math:`E[g] = (1 - \frac{1}{Pk})\nabla J`: scaled, :math:`c = (Pk-1)/(Pk)`.
    """
    return _pg_loss(batch, batch.rewards - batch.rewards.mean(), "seq-mean-token-sum")


def _batch_whitening(batch: SequenceBatch) -> Any:
    r"""REINFORCE++-style whitening over the whole batch: ``(R - mean) / (std + eps)``.

    The batch standard deviation depends on :math:`y_j`'s own reward, so the weight of
    :math:`S_j` is a nonlinear function of :math:`R_j` and of the other rewards: no fixed
    constant (as for the GRPO std below).  Biased for every ``P``.
    """
    scores = batch.rewards
    advantages = (scores - scores.mean()) / (scores.std() + WHITEN_EPS)
    return _pg_loss(batch, advantages, "seq-mean-token-sum")


def _dapo_filter_no_refill(batch: SequenceBatch) -> Any:
    r"""DAPO's dynamic-sampling filter without refilling the batch, RLOO advantages.

    Prompts whose ``k`` rewards are all equal are dropped, and the loss is the token-sum
    per response averaged over the *kept* rows.  At ``P = 1`` a dropped prompt's
    leave-one-out advantages are all 0 anyway, so :math:`g = rac1k\sum_j A_j S_j`:
    unbiased (F2).  At ``P = 2`` prompt ``p``'s rows are divided by
    :math:`k(1 + [	ext{the other prompt is kept}])`, which is independent of ``p``'s
    samples, so :math:`E[g_p] = (1 + q_{p'})
abla J_p / P` with :math:`q_{p'}` the chance
    that the other prompt is dropped: a constant that differs between the prompts of one
    problem, so biased (derived; confirmed by enumeration; Yu et al. 2025 refill the batch
    with new prompts instead).
    """
    k = batch.group_size
    r = batch.rewards.view(-1, k)
    advantages = r - (r.sum(-1, keepdim=True) - r) / (k - 1)
    keep = (r.amax(-1, keepdim=True) > r.amin(-1, keepdim=True)).to(r.dtype).expand_as(r)
    per_response = (batch.log_probs * batch.mask).sum(-1)
    kept = keep.reshape(-1)
    return -(advantages.reshape(-1) * kept * per_response).sum() / kept.sum().clamp(min=1.0)


# --------------------------------------------------------------------------- normalisation


def _grpo_mean_only(batch: SequenceBatch) -> Any:
    r"""GRPO advantage without the std division (group mean baseline), seq-mean-token-sum.

    :math:`A_j = R_j - \bar R = \frac{k-1}{k}(R_j - \bar R_{-j})`, so by (F2)
    :math:`E[g] = \frac{k-1}{k}\nabla J` at ``P = 1``: scaled (the one-step catalogue's
    ``group-mean-baseline``; Liu et al. 2025, Dr. GRPO).
    """
    k = batch.group_size
    return _pg_loss(batch, batch.rewards - _group_mean_view(batch.rewards, k), "seq-mean-token-sum")


def _grpo_std(batch: SequenceBatch) -> Any:
    r"""TRL's GRPO advantage ``(R - mean) / (std + 1e-4)`` (Bessel std), seq-mean-token-sum.

    The group std depends on :math:`R_j`, so the advantage is a nonlinear function of the
    row's own reward: biased (Liu et al. 2025).  (Curiosity: with *binary* rewards and
    ``k <= 3`` the std is the same for every non-constant group, which would make it
    scaled; with general rewards it is not.)
    """
    k = batch.group_size
    scores = batch.rewards
    advantages = (scores - _group_mean_view(scores, k)) / (_group_std_view(scores, k) + GRPO_STD_EPS)
    return _pg_loss(batch, advantages, "seq-mean-token-sum")


def _grpo_original(batch: SequenceBatch) -> Any:
    r"""DeepSeekMath GRPO: std-normalised advantage and seq-mean-token-mean aggregation.

    Two biases: the std (see ``grpo-std``) and the :math:`1/L_j` per-response weight (see
    ``seq-mean-token-mean``).  Biased (Liu et al. 2025, Dr. GRPO).
    """
    k = batch.group_size
    scores = batch.rewards
    advantages = (scores - _group_mean_view(scores, k)) / (_group_std_view(scores, k) + GRPO_STD_EPS)
    return _pg_loss(batch, advantages, "seq-mean-token-mean")


# --------------------------------------------------------------------------- aggregation


def _token_mean(batch: SequenceBatch) -> Any:
    r"""RLOO advantages, ``token-mean`` aggregation (mean over all response tokens of the batch).

    :math:`g = \sum_j A_j S_j / \sum_i L_i`: the weight of every row depends on the lengths of
    all sampled responses, so :math:`E[g]` is a length-weighted average that is not a multiple
    of :math:`\nabla J` for ``T >= 2`` (at ``T = 1`` all lengths are 1 and it is exact).  Biased
    (the length bias discussed by Liu et al. 2025 and Yu et al. 2025, DAPO, which adopts it).
    With ``P`` prompts pooled the token count concentrates and the bias shrinks, but it does
    not vanish at any finite ``P``: the enumeration with one prompt duplicated (``P = 2``)
    roughly halves the relative residual (0.06 -> 0.03) without removing it.
    """
    return _pg_loss(batch, _rloo_view(batch.rewards, batch.group_size), "token-mean")


def _seq_mean_token_mean(batch: SequenceBatch) -> Any:
    r"""RLOO advantages, ``seq-mean-token-mean`` (per-response token mean, then mean).

    :math:`g = \frac1B\sum_j A_j S_j / L_j`: with :math:`A_j` free of the own-row term the
    expectation is :math:`\frac1P\sum_p E[(R(y) - \bar R_{-})S(y)/L(y)]`, the gradient of a
    length-reweighted objective.  Biased for ``T >= 2`` (Liu et al. 2025).
    """
    return _pg_loss(batch, _rloo_view(batch.rewards, batch.group_size), "seq-mean-token-mean")


def _seq_mean_token_sum_norm(batch: SequenceBatch) -> Any:
    r"""RLOO advantages, verl's ``seq-mean-token-sum-norm`` (sum over everything / ``T``).

    :math:`g = \frac1T\sum_j A_j S_j`; note that verl does *not* divide by the batch size.
    By (F2) :math:`E[g] = \frac1T\sum_p k\,\nabla J_p = \frac{kP}{T}\nabla J`: scaled,
    :math:`c = kP/T` (derived; confirmed by enumeration at ``P = 1``).
    """
    return _pg_loss(batch, _rloo_view(batch.rewards, batch.group_size), "seq-mean-token-sum-norm")


def _dr_grpo_verl(batch: SequenceBatch) -> Any:
    r"""Dr. GRPO in verl: group-mean advantage (no std), ``seq-mean-token-sum-norm``.

    :math:`g = \frac1T\sum_j (R_j - \bar R) S_j` and :math:`R_j - \bar R = \frac{k-1}{k}(R_j -
    \bar R_{-j})`, so :math:`E[g] = \frac1T\sum_p k\frac{k-1}{k}\nabla J_p = \frac{(k-1)P}{T}\nabla
    J`: scaled with :math:`c = (k-1)P/T` (checked with ``P in (1, 2)``: verl sums over the
    batch).
    Liu et al. 2025 show the constant normaliser removes the length bias.
    """
    k = batch.group_size
    advantages = batch.rewards - _group_mean_view(batch.rewards, k)
    return _pg_loss(batch, advantages, "seq-mean-token-sum-norm")


def _dr_grpo_trl(batch: SequenceBatch) -> Any:
    r"""Dr. GRPO in TRL: ``(loss * mask).sum() / (B * max_completion_length)``, group-mean advantage.

    :math:`g = \frac{1}{BT}\sum_j (R_j - \bar R) S_j`, so
    :math:`E[g] = \frac{1}{PkT}\sum_p k\frac{k-1}{k}\nabla J_p = \frac{k-1}{kT}\nabla J`:
    scaled, :math:`c = (k-1)/(kT)` for every ``P`` (checked with ``P in (1, 2)``).
    """
    k = batch.group_size
    advantages = batch.rewards - _group_mean_view(batch.rewards, k)
    per_token_loss = -advantages[:, None] * batch.log_probs
    return (per_token_loss * batch.mask).sum() / (per_token_loss.size(0) * batch.max_len)


# --------------------------------------------------------------------------- returns


def _reward_to_go_terminal(batch: SequenceBatch) -> Any:
    r"""Reward-to-go with the reward on the last response token (undiscounted), minus RLOO baseline.

    With a terminal reward the reward-to-go of every response token is the whole return:
    :math:`G_{jt} = R_j` for :math:`t < L_j`, so this is ``rloo`` exactly (and reward-to-go is
    unbiased in general by (F3)).  Unbiased at ``P = 1``.
    """
    token_rewards = _terminal_token_rewards(batch.rewards, batch.mask)
    returns = _reverse_cumsum(token_rewards * batch.mask)
    baseline = batch.rewards - _rloo_view(batch.rewards, batch.group_size)
    advantages = (returns - baseline[:, None]) * batch.mask
    return _agg_loss(-advantages.detach() * batch.log_probs, batch.mask, "seq-mean-token-sum")


def _reward_at_last_column(batch: SequenceBatch) -> Any:
    r"""Terminal reward written into the last *column* ``T-1`` instead of the last response token.

    Looks wrong for responses shorter than ``T``, but with right padding and an undiscounted
    reverse cumsum every position ``t <= T-1`` receives :math:`R_j`, and the mask keeps exactly
    the response tokens: the gradient is REINFORCE's.  Unbiased at ``P = 1`` (derived; a
    discount would break it, see ``reward-to-go-discounted``).
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    token_rewards = torch.zeros_like(batch.log_probs.detach())
    last_column = torch.arange(batch.max_len) == batch.max_len - 1
    token_rewards = torch.where(last_column[None, :], batch.rewards[:, None], token_rewards)
    returns = _reverse_cumsum(token_rewards)
    return _agg_loss(-returns * batch.log_probs, batch.mask, "seq-mean-token-sum")


def _reward_to_go_discounted(batch: SequenceBatch) -> Any:
    r"""Discounted reward-to-go, :math:`G_{jt} = \gamma^{L_j-1-t} R_j` with :math:`\gamma = 0.9`.

    The objective is undiscounted: the weight of token ``t`` depends on how far it is from
    the end of its own response, so :math:`E[g] = \sum_y \pi(y) R(y)\sum_t \gamma^{L-1-t}
    s_t(y)`, not a multiple of :math:`\nabla J` once lengths vary (``T >= 2``).  Biased (the
    discounted policy gradient is not the gradient of the undiscounted return; Thomas 2014).
    """
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    token_rewards = _terminal_token_rewards(batch.rewards, batch.mask)
    returns = torch.zeros_like(token_rewards)
    running = torch.zeros_like(batch.rewards)
    for t in reversed(range(batch.max_len)):
        running = token_rewards[:, t] + GAMMA * running
        returns = torch.where(torch.arange(batch.max_len)[None, :] == t, running[:, None], returns)
    return _agg_loss(-returns * batch.log_probs, batch.mask, "seq-mean-token-sum")


def _returns_forward_cumsum(batch: SequenceBatch) -> Any:
    r"""Returns as ``token_rewards.cumsum(-1)``: the flips of the reverse cumsum forgotten.

    :math:`G_{jt} = \sum_{s\le t} r_{js} = R_j\,1[t = L_j - 1]` on response tokens: only the
    last token of each response is reinforced, :math:`g = \frac1B\sum_j R_j s_{j,L_j-1}`.  For
    ``T >= 2`` the earlier decisions get no credit: biased.
    """
    token_rewards = _terminal_token_rewards(batch.rewards, batch.mask)
    returns = token_rewards.cumsum(dim=-1)
    return _agg_loss(-returns * batch.log_probs, batch.mask, "seq-mean-token-sum")
