r"""Named sequence-level policy-gradient estimators, correct and planted-wrong, with their verdicts.

Each :class:`SequenceEntry` is either

* a PyTorch **loss** ``fn(batch: SequenceBatch) -> scalar tensor`` (minimised; the estimate is
  :math:`g = -\nabla_\theta\,\mathrm{loss}`), written the way public RL libraries write it
  (``masked_mean``, the group index, advantages broadcast over tokens, ``ratio * adv``,
  ``torch.clamp``, ``.detach()``; torch is imported inside each function, so :mod:`impl` does
  not depend on it), or
* a NumPy **weight function** ``fn(rewards (B,), mask (B, T), log_probs (B, T), *, group=...,
  tokens=..., old_log_probs=..., ref_log_probs=...) -> (B, T)`` whose estimate is
  :math:`g = \sum_{j,t} w_{jt}\nabla\log\pi(y_{jt}\mid y_{j,<t})`.

The setting is ``design/sequence.md``: ``P`` prompts, ``k`` iid responses each (``B = P k``
rows, prompt-major, ``group[row] = row // k``), responses padded with EOS to ``T = max_len``,
``mask`` 1.0 on response tokens including EOS.  The target is the gradient of the prompts'
*mean* objective, :math:`\nabla J = \frac1P\sum_p \nabla J_p` (the prompts of a batch are a
sample from the prompt distribution, and RL maximises the expectation over it),
:math:`J_p = E_{\pi_p}[R_p(y)] - \beta\,\mathrm{KL}(\pi_p\,\|\,\pi_{\mathrm{ref},p})` (sequence-level
reverse KL, ``beta = kl_coef``).  Each entry declares the verdict an exact checker must reach:

* ``unbiased``: :math:`E[g] = \nabla J`;
* ``scaled``: :math:`E[g] = c\,\nabla J` with ``c = scale(k, T, P) > 0`` depending only on the
  group size, ``max_len`` and the number of prompts;
* ``biased``: anything else (a weighting by the sampled lengths or rewards, a missing or extra
  term, a gradient on the after-the-end node that padding positions read);
* ``error``: raises, returns a non-scalar / non-tensor / wrong shape, non-finite values,
  writes into the batch, or is nondeterministic.

Notation used in the derivations (each entry's docstring): row ``j`` holds response
:math:`y_j` of length :math:`L_j` (its ``mask`` sum), :math:`s_{jt} = \nabla\log\pi(y_{jt}\mid
y_{j,<t})` for :math:`t < L_j`, :math:`S_j = \sum_{t<L_j} s_{jt} = \nabla\log\pi(y_j)`,
:math:`\delta_{jt} = \log\pi - \log\pi_{\mathrm{ref}}` at token ``t`` and
:math:`D_j = \sum_t \delta_{jt} = \log\pi(y_j)/\pi_{\mathrm{ref}}(y_j)`.  Four facts do all
the work:

* (F1) score identity: :math:`E[S_j] = 0` and :math:`E[f(y_j) S_j] = \nabla E[f(y)]` for any
  :math:`f` that does not depend on :math:`\theta`; in particular
  :math:`\nabla J_p = E[(R(y) - \beta D(y)) S(y)]` (the :math:`-\beta E[\nabla D] = -\beta E[S]`
  term vanishes);
* (F2) independence: :math:`E[b\,S_j] = 0` when :math:`b` depends only on the *other* rows
  (and :math:`\theta`), so such a baseline changes nothing;
* (F3) causality: :math:`E[f(y_{j,<t})\,s_{jt}] = 0`, so only rewards at or after a token
  matter for it;
* (F4) a mean over the ``B = P k`` rows of a batch gives :math:`\frac1B\sum_j = \frac1P\sum_p
  \frac1k\sum_{j\in p}`, the mean over prompts of the group means: a batch-mean loss is
  unbiased for every ``P`` when its rows are, and a loss that sums over the prompts (or over
  all rows) carries a factor ``P`` (resp. ``P k``).  (Entries checked with
  ``num_prompts=(1,)`` do not see it.)

Where the verdict was not settled in the literature it was derived on paper here and then
confirmed by an independent brute-force enumeration (``tests/sequence``); ``settled_by`` says
which.  The table (``c`` as a function of ``(k, T, P)``):

=====================================  =======  ========  ==================  ===============
name                                   proto    expected  scale c(k, T, P)    settled by
=====================================  =======  ========  ==================  ===============
reinforce-seq-mean-token-sum           loss     unbiased  -                   literature
reinforce-batch-mean-multi-prompt      loss     unbiased  -                   derived+oracle
reinforce-sum-over-prompts             loss     scaled    P                   derived+oracle
rloo                                   loss     unbiased  -                   literature
rloo-group-index-multi-prompt          loss     unbiased  -                   derived+oracle
rloo-verl-dict-loop                    loss     unbiased  -                   literature
remax-greedy-baseline                  loss     unbiased  -                   literature
remax-teacher-forced-argmax-baseline   loss     biased    -                   derived+oracle
grpo-mean-only                         loss     scaled    (k-1)/k             literature
grpo-std                               loss     biased    -                   literature
grpo-original                          loss     biased    -                   literature
token-mean                             loss     biased    -                   literature
token-mean-multi-prompt                loss     biased    -                   derived+oracle
seq-mean-token-mean                    loss     biased    -                   literature
seq-mean-token-sum-norm                loss     scaled    k P/T               derived+oracle
dr-grpo-verl                           loss     scaled    (k-1) P/T           literature
dr-grpo-trl                            loss     scaled    (k-1)/(k T)         derived+oracle
batch-mean-baseline                    loss     scaled    (Pk-1)/(P k)        derived+oracle
batch-whitening                        loss     biased    -                   derived+oracle
dapo-filter-no-refill                  loss     biased    -                   derived+oracle
reward-to-go-terminal                  loss     unbiased  -                   literature
reward-at-last-column                  loss     unbiased  -                   derived+oracle
reward-to-go-discounted                loss     biased    -                   literature
returns-forward-cumsum                 loss     biased    -                   derived+oracle
mask-from-first-eos                    loss     unbiased  -                   derived+oracle
gae-lambda-1-random-values             loss     unbiased  -                   derived+oracle
gae-lambda-0.95-random-values          loss     biased    -                   derived+oracle
gae-lambda-0.95-exact-values           loss     unbiased  -                   derived+oracle
mismatch-sequence-is                   loss     unbiased  -                   derived+oracle
mismatch-sequence-tis                  loss     biased    -                   derived+oracle
mismatch-uncorrected                   loss     biased    -                   derived+oracle
tool-tokens-masked                     loss     unbiased  -                   derived+oracle
tool-tokens-trained-on                 loss     biased    -                   derived+oracle
tool-tokens-sequence-is-kl             loss     unbiased  -                   derived+oracle
mask-tokens-ne-pad                     loss     biased    -                   derived+oracle
mask-counts-padding                    loss     biased    -                   derived+oracle
logprobs-shifted-by-one                loss     biased    -                   derived+oracle
ppo-clip-on-policy                     loss     unbiased  -                   literature
ppo-clip-off-policy                    loss     biased    -                   derived+oracle
ppo-ratio-old-not-detached             loss     biased    -                   derived+oracle
gspo-sequence-ratio-on-policy          loss     biased    -                   derived+oracle
tis-token-on-policy                    loss     unbiased  -                   derived+oracle
tis-token-off-policy                   loss     biased    -                   derived+oracle
sequence-is-off-policy                 loss     unbiased  -                   literature
sequence-is-truncated-off-policy       loss     biased    -                   derived+oracle
kl-k1-in-reward                        loss     unbiased  -                   literature
kl-k1-in-reward-token-level            loss     unbiased  -                   derived+oracle
kl-k1-in-reward-group-mean             loss     scaled    (k-1)/k             derived+oracle
kl-k2-in-reward                        loss     biased    -                   derived+oracle
kl-k3-in-reward                        loss     biased    -                   derived+oracle
kl-k1-in-loss                          loss     biased    -                   literature
kl-k2-in-loss                          loss     biased    -                   derived+oracle
kl-k3-in-loss                          loss     biased    -                   derived+oracle
entropy-bonus                          loss     biased    -                   literature
raises-not-implemented                 loss     error     -                   by construction
returns-per-sequence-vector            loss     error     -                   by construction
returns-python-float                   loss     error     -                   by construction
grpo-std-no-eps-nan                    loss     error     -                   by construction
mutates-rewards-in-place               loss     error     -                   by construction
nondeterministic-token-dropout         loss     error     -                   by construction
w-reinforce                            weights  unbiased  -                   literature
w-rloo-multi-prompt                    weights  unbiased  -                   derived+oracle
w-rloo-batched                         weights  unbiased  -                   literature
w-reward-to-go-terminal                weights  unbiased  -                   literature
w-grpo-std                             weights  biased    -                   literature
w-token-mean                           weights  biased    -                   literature
w-dr-grpo                              weights  scaled    (k-1) P/T           literature
w-mask-tokens-ne-pad                   weights  biased    -                   derived+oracle
w-counts-padding                       weights  biased    -                   derived+oracle
w-kl-k1-in-reward                      weights  unbiased  -                   literature
w-kl-k3-in-loss                        weights  biased    -                   derived+oracle
w-sequence-is-off-policy               weights  unbiased  -                   literature
w-tis-token-off-policy                 weights  biased    -                   derived+oracle
w-raises                               weights  error     -                   by construction
w-returns-vector                       weights  error     -                   by construction
w-nan-std-no-eps                       weights  error     -                   by construction
w-mutates-rewards                      weights  error     -                   by construction
w-nondeterministic                     weights  error     -                   by construction
=====================================  =======  ========  ==================  ===============

>>> len(SEQUENCE_CATALOGUE) >= 60
True
>>> entry = get("dr-grpo-verl")
>>> entry.protocol, entry.expected, entry.scale(4, 3, 1)
('loss', 'scaled', 1.0)
>>> w = get("w-rloo-multi-prompt").fn
>>> w(np.array([1.0, 3.0]), np.array([[1.0, 0.0], [1.0, 1.0]]), np.zeros((2, 2)), group=np.array([0, 0]))
array([[-1., -0.],
       [ 1.,  1.]])
"""

from __future__ import annotations

import difflib
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from impl.errors import InvalidArgument, describe
from impl.types import FloatArray, IntArray

if TYPE_CHECKING:  # the protocol object lives in properties; impl never imports it at run time
    from properties.sequence.batch import SequenceBatch

Verdict = Literal["unbiased", "scaled", "biased", "error"]
"""The four verdicts of the checkers."""

VERDICTS: tuple[Verdict, ...] = ("unbiased", "scaled", "biased", "error")

Protocol = Literal["loss", "weights"]
"""``loss``: ``fn(batch) -> scalar tensor``; ``weights``: NumPy ``fn(rewards, mask, log_probs, ...)``."""

SettledBy = Literal["literature", "derived+oracle", "by construction"]
"""How an expected verdict was settled (see the module docstring)."""

CATEGORIES: tuple[str, ...] = (
    "correct",
    "baseline",
    "normalisation",
    "aggregation",
    "returns",
    "masking",
    "importance",
    "kl",
    "regularisation",
    "error",
)
"""The allowed values of :attr:`SequenceEntry.category`."""

Scale = Callable[[int, int, int], float]
"""``(k, T, P) -> c``: the constant of a scaled estimator."""


# --------------------------------------------------------------------------- constants
# Named parameters of the entries (each is a value real configurations use).

KL_COEF = 0.1
"""The ``kl_coef`` (beta) every KL entry is checked with; the weight functions hard-code it."""

PPO_CLIP = 0.2
"""The PPO clip range ``[1 - eps, 1 + eps]``."""

TIS_CAP = 2.0
"""Truncated importance sampling cap ``C`` of ``min(ratio, C)`` (TIS uses 2)."""

GRPO_STD_EPS = 1e-4
"""The ``std + eps`` guard of TRL's GRPO advantage normalisation."""

WHITEN_EPS = 1e-8
"""The ``std + eps`` guard of batch-level advantage whitening."""

GAMMA = 0.9
"""The discount of the discounted reward-to-go entry (the objective is undiscounted)."""

ENTROPY_COEF = 0.01
"""Coefficient of the entropy bonus."""

DROPOUT_KEEP = 0.9
"""Fraction of tokens the nondeterministic entries keep."""

GAE_LAMBDA = 0.95
r"""The GAE :math:`\lambda` of the biased-critic entries (verl's and OpenRLHF's default)."""

MISMATCH_TIS_CAP = 1.1
"""The cap ``C`` of the truncated training-inference correction ``min(pi_old/pi_sampler, C)``:
small enough that it binds on responses the sampler under-weights by more than 10%, which
the checker's perturbation of the sampler makes common."""


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class SequenceSettings:
    """The keywords an entry must be checked with (those of ``properties.check_sequence_loss``).

    ``batched`` applies to weight functions only (``check_token_weights(batched=...)``).
    """

    group_sizes: tuple[int, ...] = (2, 3, 4)
    vocab_size: int = 3
    max_len: int = 3
    kl_coef: float = 0.0
    off_policy: bool = False
    num_prompts: tuple[int, ...] = (1,)
    batched: bool = False
    tool_tokens: bool = False
    sampling_mismatch: bool = False
    values: str | None = None

    def checker_kwargs(self, protocol: Protocol) -> dict[str, Any]:
        """Keyword arguments for ``check_sequence_loss`` / ``check_token_weights``.

        >>> SequenceSettings(kl_coef=0.1).checker_kwargs("loss")["kl_coef"]
        0.1
        >>> "batched" in SequenceSettings().checker_kwargs("loss")
        False
        """
        out: dict[str, Any] = {
            "group_sizes": self.group_sizes,
            "vocab_size": self.vocab_size,
            "max_len": self.max_len,
            "kl_coef": self.kl_coef,
            "off_policy": self.off_policy,
            "num_prompts": self.num_prompts,
        }
        if protocol == "weights":
            out["batched"] = self.batched
        for flag in ("tool_tokens", "sampling_mismatch"):  # only when set: the weight
            if getattr(self, flag):  # protocol has neither keyword
                out[flag] = True
        if self.values is not None:
            out["values"] = self.values
        return out


@dataclass(frozen=True)
class SequenceEntry:
    """One named sequence estimator with the verdict an exact checker must reach on it.

    ``scale`` is ``(k, T, P) -> c`` for ``expected == "scaled"`` and ``None`` otherwise;
    :attr:`derivation` is the function's docstring (the derivation on paper).
    """

    name: str
    fn: Callable[..., Any]
    protocol: Protocol
    expected: Verdict
    scale: Scale | None
    settings: SequenceSettings
    category: str
    settled_by: SettledBy
    description: str
    source: str = field(default="")

    @property
    def derivation(self) -> str:
        """The derivation of the expected verdict (the function's docstring)."""
        return (self.fn.__doc__ or "").strip()


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


# --------------------------------------------------------------------------- NumPy weights


def _rloo_np(rewards: FloatArray, group: IntArray) -> FloatArray:
    """Leave-one-out advantages through the group index (any leading axes)."""
    g = np.asarray(group)
    onehot = (g[..., None] == np.arange(int(g.max()) + 1)).astype(np.float64)
    group_sum = (onehot * (onehot * rewards[..., None]).sum(axis=-2)[..., None, :]).sum(axis=-1)
    group_count = (onehot * onehot.sum(axis=-2)[..., None, :]).sum(axis=-1)
    out: FloatArray = rewards - (group_sum - rewards) / (group_count - 1)
    return out


def _group_mean_std_np(rewards: FloatArray, group: IntArray) -> tuple[FloatArray, FloatArray]:
    """Per-row group mean and Bessel-corrected group std, verl's ``id2score`` loop style."""
    id2score: dict[int, list[float]] = defaultdict(list)
    for r, g in zip(rewards.tolist(), np.asarray(group).tolist(), strict=True):
        id2score[int(g)].append(r)
    mean = np.array([np.mean(id2score[int(g)]) for g in np.asarray(group).tolist()])
    std = np.array([np.std(id2score[int(g)], ddof=1) for g in np.asarray(group).tolist()])
    return mean, std


def _w_reinforce(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray) -> FloatArray:
    r"""``advantages[:, None] * mask / B`` with advantage = reward: the weights of ``seq-mean-token-sum``.

    :math:`g = \frac1B\sum_j R_j S_j`: unbiased at ``P = 1`` (F1).
    """
    out: FloatArray = rewards[:, None] * mask / rewards.shape[0]
    return out


def _w_rloo(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, group: IntArray) -> FloatArray:
    r"""RLOO advantages from the ``group`` index, broadcast over tokens, divided by ``B``.

    Unbiased per row (F2), and so is the mean over the batch (F4): unbiased, checked with
    ``P in (1, 2)``.  The same code runs on a leading ``G`` axis
    (entry ``w-rloo-batched``).
    """
    advantages = _rloo_np(rewards, group)
    out: FloatArray = advantages[..., None] * mask / rewards.shape[-1]
    return out


def _w_reward_to_go_terminal(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray) -> FloatArray:
    r"""Undiscounted reward-to-go of a terminal reward (reverse cumsum), masked, divided by ``B``.

    Every response token's reward-to-go is :math:`R_j`: REINFORCE, unbiased at ``P = 1``.
    """
    lengths = mask.sum(axis=-1).astype(np.int64)
    token_rewards = np.zeros_like(mask)
    token_rewards[np.arange(rewards.shape[0]), lengths - 1] = rewards
    returns = np.flip(np.cumsum(np.flip(token_rewards, axis=-1), axis=-1), axis=-1)
    out: FloatArray = returns * mask / rewards.shape[0]
    return out


def _w_grpo_std(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, group: IntArray) -> FloatArray:
    r"""GRPO ``(R - mean) / (std + 1e-4)`` by group, seq-mean-token-sum weights: biased (see ``grpo-std``)."""
    mean, std = _group_mean_std_np(rewards, group)
    advantages = (rewards - mean) / (std + GRPO_STD_EPS)
    out: FloatArray = advantages[:, None] * mask / rewards.shape[0]
    return out


def _w_token_mean(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, group: IntArray) -> FloatArray:
    r"""RLOO advantages with token-mean weights ``A_j mask / mask.sum()``: biased (see ``token-mean``)."""
    advantages = _rloo_np(rewards, group)
    out: FloatArray = advantages[:, None] * mask / mask.sum()
    return out


def _w_dr_grpo(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, group: IntArray) -> FloatArray:
    r"""Group-mean advantage, weights ``A_j mask / T`` (verl's seq-mean-token-sum-norm).

    As ``dr-grpo-verl``: :math:`c = (k-1)P/T`.
    """
    mean, _ = _group_mean_std_np(rewards, group)
    out: FloatArray = (rewards - mean)[:, None] * mask / mask.shape[-1]
    return out


def _w_mask_tokens_ne_pad(
    rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, tokens: IntArray
) -> FloatArray:
    r"""Weights masked by ``tokens != 0`` (pad == EOS) instead of ``mask``: EOS dropped, biased."""
    out: FloatArray = rewards[:, None] * (tokens != 0) / rewards.shape[0]
    return out


def _w_counts_padding(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray) -> FloatArray:
    r"""The advantage on every position, padding included (mask ignored).

    Padding weights move the after-the-end node, where :math:`\nabla J = 0`: biased for
    ``T >= 2`` (see ``mask-counts-padding``).
    """
    out: FloatArray = np.broadcast_to(rewards[:, None], mask.shape) / rewards.shape[0]
    return out


def _w_kl_k1_in_reward(
    rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, ref_log_probs: FloatArray
) -> FloatArray:
    r"""REINFORCE on :math:`R - \beta D` with :math:`\beta` = :data:`KL_COEF` hard-coded.

    Unbiased against the ``kl_coef = KL_COEF`` objective (see ``kl-k1-in-reward``).
    """
    kl = ((log_probs - ref_log_probs) * mask).sum(axis=-1)
    out: FloatArray = (rewards - KL_COEF * kl)[:, None] * mask / rewards.shape[0]
    return out


def _w_kl_k3_in_loss(
    rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, ref_log_probs: FloatArray
) -> FloatArray:
    r"""REINFORCE weights plus the k3-loss term's ``-beta (1 - exp(ref - logp))`` per token.

    ``d/d logp`` of :math:`\beta(e^{-\delta} + \delta - 1)` is :math:`\beta(1 - e^{-\delta})`;
    as an ascent weight it enters with a minus sign.  Biased (see ``kl-k3-in-loss``).
    """
    kl_grad = 1.0 - np.exp(ref_log_probs - log_probs)
    out: FloatArray = (rewards[:, None] - KL_COEF * kl_grad) * mask / rewards.shape[0]
    return out


def _w_sequence_is(
    rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, group: IntArray, old_log_probs: FloatArray
) -> FloatArray:
    r"""Sequence importance weight times RLOO advantage, broadcast over tokens: unbiased off-policy."""
    weight = np.exp(((log_probs - old_log_probs) * mask).sum(axis=-1))
    out: FloatArray = (weight * _rloo_np(rewards, group))[:, None] * mask / rewards.shape[0]
    return out


def _w_tis_token(
    rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, group: IntArray, old_log_probs: FloatArray
) -> FloatArray:
    r"""``min(exp(logp - old), 2)`` per token times the RLOO advantage: biased off-policy (see ``tis-token``)."""
    weight = np.minimum(np.exp(log_probs - old_log_probs), TIS_CAP)
    out: FloatArray = weight * _rloo_np(rewards, group)[:, None] * mask / rewards.shape[0]
    return out


def _w_raises(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray) -> FloatArray:
    """Raises ``ValueError``: error."""
    raise ValueError("expected rewards of shape (B, T)")


def _w_returns_vector(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray) -> FloatArray:
    """Returns the per-response advantages ``(B,)`` instead of ``(B, T)`` weights: error."""
    out: FloatArray = rewards / rewards.shape[0]
    return out


def _w_nan_std_no_eps(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray, *, group: IntArray) -> FloatArray:
    """``(R - mean) / std`` by group with no ``eps``: NaN when a group's rewards are all equal: error."""
    mean, std = _group_mean_std_np(rewards, group)
    with np.errstate(invalid="ignore", divide="ignore"):
        advantages = (rewards - mean) / std
    out: FloatArray = advantages[:, None] * mask / rewards.shape[0]
    return out


def _w_mutates_rewards(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray) -> FloatArray:
    """``rewards -= rewards.mean()`` in place on the caller's array: error."""
    rewards -= rewards.mean()
    out: FloatArray = rewards[:, None] * mask / rewards.shape[0]
    return out


def _w_nondeterministic(rewards: FloatArray, mask: FloatArray, log_probs: FloatArray) -> FloatArray:
    """REINFORCE weights times a fresh, unseeded random keep-mask: not reproducible, error."""
    rng = np.random.default_rng()  # the bug: a new unseeded generator per call
    keep = rng.random(mask.shape) < DROPOUT_KEEP
    out: FloatArray = rewards[:, None] * mask * keep / rewards.shape[0]
    return out


# --------------------------------------------------------------------------- scales


def _prompts(k: int, t: int, p: int) -> float:
    """:math:`c = P` (a sum over the prompts against the mean-over-prompts target)."""
    return float(p)


def _group_mean_scale(k: int, t: int, p: int) -> float:
    """:math:`c = (k-1)/k` (self-inclusive group mean), ``P = 1``."""
    return (k - 1) / k


def _k_over_t(k: int, t: int, p: int) -> float:
    """:math:`c = kP/T` (token sum over the whole batch divided by ``max_len``)."""
    return k * p / t


def _k_minus_one_over_t(k: int, t: int, p: int) -> float:
    """:math:`c = (k-1)P/T` (verl's Dr. GRPO: a sum over the batch)."""
    return (k - 1) * p / t


def _dr_grpo_trl_scale(k: int, t: int, p: int) -> float:
    """:math:`c = (k-1)/(kT)` (TRL's Dr. GRPO)."""
    return (k - 1) / (k * t)


def _batch_mean_scale(k: int, t: int, p: int) -> float:
    """:math:`c = (Pk-1)/(Pk)` (self-inclusive mean over the whole batch)."""
    return (p * k - 1) / (p * k)


# --------------------------------------------------------------------------- the table

_ON = SequenceSettings()
_K1 = SequenceSettings(group_sizes=(1, 2, 3))
_MULTI = SequenceSettings(group_sizes=(2, 3), num_prompts=(1, 2))
_MULTI_K1 = SequenceSettings(group_sizes=(1, 2, 3), num_prompts=(1, 2))
_OFF = SequenceSettings(off_policy=True)
_TOOL = SequenceSettings(tool_tokens=True)
_MISMATCH = SequenceSettings(sampling_mismatch=True)
_RANDOM_VALUES = SequenceSettings(group_sizes=(1, 2, 3), values="random")
_EXACT_VALUES = SequenceSettings(group_sizes=(1, 2, 3), values="exact")
_TOOL_OFF_KL = SequenceSettings(tool_tokens=True, off_policy=True, kl_coef=KL_COEF)
_KL = SequenceSettings(kl_coef=KL_COEF)
_KL_K1 = SequenceSettings(group_sizes=(1, 2, 3), kl_coef=KL_COEF)
_BATCHED = SequenceSettings(batched=True)


def _e(
    name: str,
    fn: Callable[..., Any],
    expected: Verdict,
    category: str,
    settled_by: SettledBy,
    description: str,
    *,
    protocol: Protocol = "loss",
    settings: SequenceSettings = _ON,
    scale: Scale | None = None,
    source: str = "",
) -> SequenceEntry:
    return SequenceEntry(
        name=name, fn=fn, protocol=protocol, expected=expected, scale=scale, settings=settings,
        category=category, settled_by=settled_by, description=description, source=source,
    )


_LIT: SettledBy = "literature"
_DER: SettledBy = "derived+oracle"
_BUILT: SettledBy = "by construction"

SEQUENCE_CATALOGUE: tuple[SequenceEntry, ...] = (
    # ---- baselines
    _e("reinforce-seq-mean-token-sum", _reinforce_seq_mean_token_sum, "unbiased", "correct", _LIT,
       "-(R * log pi * mask).sum(-1).mean(): REINFORCE, E[g] = grad J at P = 1.", settings=_K1,
       source="Williams 1992"),
    _e("reinforce-batch-mean-multi-prompt", _reinforce_seq_mean_token_sum, "unbiased", "correct", _DER,
       "the same loss with P in (1, 2): the batch mean over P*k rows is the mean over prompts.",
       settings=_MULTI_K1),
    _e("reinforce-sum-over-prompts", _reinforce_sum_over_prompts, "scaled", "correct", _DER,
       "(per-token loss * mask).sum() / k: sums the prompts where J averages them, c = P.",
       settings=_MULTI_K1, scale=_prompts),
    _e("rloo", _rloo, "unbiased", "baseline", _LIT,
       "leave-one-out baseline within the group (view(-1, k)); independent of the row.",
       source="Kool et al. 2019; Ahmadian et al. 2024"),
    _e("rloo-group-index-multi-prompt", _rloo_group_index, "unbiased", "baseline", _DER,
       "RLOO through batch.group (one-hot sums) with P in (1, 2), mean over the batch.",
       settings=_MULTI),
    _e("rloo-verl-dict-loop", _rloo_verl_dict_loop, "unbiased", "baseline", _LIT,
       "RLOO via verl's id2score dict and int(group[i]): not vmap-able, exercises the fallback.",
       source="verl compute_rloo_outcome_advantage"),
    _e("remax-greedy-baseline", _remax_greedy_baseline, "unbiased", "baseline", _LIT,
       "baseline = reward_fn(greedy response): depends on theta, not on the samples.",
       source="Li et al. 2023 (ReMax)"),
    _e("remax-teacher-forced-argmax-baseline", _remax_teacher_forced_argmax, "biased", "baseline", _DER,
       "'greedy' = logits.argmax(-1) along the sampled prefix: depends on the row itself (T >= 2)."),
    _e("batch-mean-baseline", _batch_mean_baseline, "scaled", "baseline", _DER,
       "baseline = mean over the whole batch (own reward included): c = (Pk-1)/(Pk).",
       settings=_MULTI, scale=_batch_mean_scale),
    _e("batch-whitening", _batch_whitening, "biased", "normalisation", _DER,
       "(R - batch mean) / (batch std + 1e-8), REINFORCE++ style: the std depends on the row.",
       settings=_MULTI),
    _e("dapo-filter-no-refill", _dapo_filter_no_refill, "biased", "normalisation", _DER,
       "RLOO, prompts with all-equal rewards dropped, mean over the kept rows: exact at P = 1, "
       "a different constant per prompt at P = 2.", settings=_MULTI, source="Yu et al. 2025 (DAPO)"),
    # ---- normalisation
    _e("grpo-mean-only", _grpo_mean_only, "scaled", "normalisation", _LIT,
       "group-mean advantage without std, seq-mean-token-sum: c = (k-1)/k.",
       scale=_group_mean_scale, source="Liu et al. 2025 (Dr. GRPO)"),
    _e("grpo-std", _grpo_std, "biased", "normalisation", _LIT,
       "TRL's (R - mean)/(std + 1e-4), seq-mean-token-sum: the std depends on the row.",
       source="Liu et al. 2025 (Dr. GRPO)"),
    _e("grpo-original", _grpo_original, "biased", "normalisation", _LIT,
       "std-normalised advantage and seq-mean-token-mean (DeepSeekMath GRPO).",
       source="Shao et al. 2024; Liu et al. 2025"),
    # ---- aggregation
    _e("token-mean", _token_mean, "biased", "aggregation", _LIT,
       "RLOO with token-mean: each row weighted by 1/(total tokens in the batch).",
       source="Liu et al. 2025; Yu et al. 2025 (DAPO)"),
    _e("token-mean-multi-prompt", _token_mean, "biased", "aggregation", _DER,
       "token-mean with P in (1, 2): pooling prompts shrinks the length bias but does not remove it.",
       settings=_MULTI),
    _e("seq-mean-token-mean", _seq_mean_token_mean, "biased", "aggregation", _LIT,
       "RLOO with per-response token mean: each row weighted by 1/L_j.",
       source="Liu et al. 2025 (Dr. GRPO)"),
    _e("seq-mean-token-sum-norm", _seq_mean_token_sum_norm, "scaled", "aggregation", _DER,
       "RLOO, verl's sum over all tokens / T (no division by B): c = kP/T.", scale=_k_over_t),
    _e("dr-grpo-verl", _dr_grpo_verl, "scaled", "aggregation", _LIT,
       "group-mean advantage, seq-mean-token-sum-norm (a sum over the batch): c = (k-1)P/T.",
       settings=_MULTI, scale=_k_minus_one_over_t, source="Liu et al. 2025; verl agg_loss"),
    _e("dr-grpo-trl", _dr_grpo_trl, "scaled", "aggregation", _DER,
       "group-mean advantage, sum / (B * max_len): c = (k-1)/(k T) for every P.",
       settings=_MULTI, scale=_dr_grpo_trl_scale, source="TRL loss_type='dr_grpo'"),
    # ---- returns
    _e("reward-to-go-terminal", _reward_to_go_terminal, "unbiased", "returns", _LIT,
       "reverse cumsum of a terminal reward minus the RLOO baseline: = whole return.",
       source="Sutton and Barto 2018, ch. 13"),
    _e("reward-at-last-column", _reward_at_last_column, "unbiased", "returns", _DER,
       "terminal reward written at column T-1; undiscounted reverse cumsum still gives R on every "
       "response token.", settings=_K1),
    _e("reward-to-go-discounted", _reward_to_go_discounted, "biased", "returns", _LIT,
       "gamma = 0.9 reward-to-go against the undiscounted objective: weight gamma^(L-1-t).",
       settings=_K1, source="Thomas 2014"),
    _e("returns-forward-cumsum", _returns_forward_cumsum, "biased", "returns", _DER,
       "token_rewards.cumsum(-1) without the flips: only the last token is reinforced.",
       settings=_K1),
    # ---- masking
    _e("mask-from-first-eos", _mask_from_first_eos, "unbiased", "masking", _DER,
       "mask rebuilt as positions <= first EOS (TRL's completion_mask): equals batch.mask.",
       settings=_K1),
    _e("gae-lambda-1-random-values", _gae_lambda_one, "unbiased", "baseline", _DER,
       "GAE, gamma = lambda = 1, a random critic: R - V(prefix), a prefix-dependent baseline.",
       settings=_RANDOM_VALUES),
    _e("gae-lambda-0.95-random-values", _gae_lambda_095, "biased", "baseline", _DER,
       "GAE with lambda = 0.95 and a random critic: the bootstrapped values bias it.",
       settings=_RANDOM_VALUES, source="Schulman et al. 2016 (GAE)"),
    _e("gae-lambda-0.95-exact-values", _gae_lambda_095, "unbiased", "baseline", _DER,
       "GAE with lambda = 0.95 and the exact values of the current policy.",
       settings=_EXACT_VALUES, source="Schulman et al. 2016 (GAE)"),
    _e("mismatch-sequence-is", _mismatch_sequence_is, "unbiased", "importance", _DER,
       "exp(sum_t (old - sampling)) * RLOO: the full training-inference correction.",
       settings=_MISMATCH),
    _e("mismatch-sequence-tis", _mismatch_sequence_tis, "biased", "importance", _DER,
       "min(pi_old/pi_sampler, 1.1) * RLOO: the truncated correction, biased where it binds.",
       settings=_MISMATCH, source="Yao et al. 2025 (TIS)"),
    _e("mismatch-uncorrected", _mismatch_uncorrected, "biased", "importance", _DER,
       "RLOO on the inference engine's samples without any correction.", settings=_MISMATCH),
    _e("tool-tokens-masked", _tool_tokens_masked, "unbiased", "masking", _DER,
       "RLOO with the tool's tokens (odd positions) masked out: only the policy's tokens.",
       settings=_TOOL),
    _e("tool-tokens-trained-on", _tool_tokens_trained_on, "biased", "masking", _DER,
       "RLOO on the attention mask: trains on the tool's output tokens too.", settings=_TOOL),
    _e("tool-tokens-sequence-is-kl", _tool_tokens_sequence_is_kl, "unbiased", "masking", _DER,
       "off-policy, KL in the reward: sequence IS ratio and KL summed over the masked tokens.",
       settings=_TOOL_OFF_KL),
    _e("mask-tokens-ne-pad", _mask_tokens_ne_pad, "biased", "masking", _DER,
       "mask = tokens != pad_id with pad == eos: the EOS token is dropped.", settings=_K1),
    _e("mask-counts-padding", _mask_counts_padding, "biased", "masking", _DER,
       "no mask: padding positions push the after-the-end node.", settings=_K1),
    _e("logprobs-shifted-by-one", _logprobs_shifted_by_one, "biased", "masking", _DER,
       "HF's logits[:, :-1] / tokens[:, 1:] shift applied to already aligned logits.",
       settings=_K1),
    # ---- importance
    _e("ppo-clip-on-policy", _ppo_clip, "unbiased", "importance", _LIT,
       "verl's clipped surrogate at ratio = 1 with RLOO advantages: vanilla PG.",
       source="Schulman et al. 2017"),
    _e("ppo-clip-off-policy", _ppo_clip_off_policy, "biased", "importance", _DER,
       "the same loss off-policy: per-token ratio and clipping.", settings=_OFF),
    _e("ppo-ratio-old-not-detached", _ppo_ratio_old_not_detached, "biased", "importance", _DER,
       "old log-probs recomputed in the graph without .detach(): ratio == 1, zero gradient."),
    _e("gspo-sequence-ratio-on-policy", _gspo_on_policy, "biased", "importance", _DER,
       "GSPO's length-normalised sequence ratio: on-policy gradient A S_j / L_j.",
       source="Zheng et al. 2025 (GSPO)"),
    _e("tis-token-on-policy", _tis_token, "unbiased", "importance", _DER,
       "min(ratio, 2).detach() per token at ratio = 1: RLOO."),
    _e("tis-token-off-policy", _tis_token, "biased", "importance", _DER,
       "min(ratio, 2).detach() per token off-policy: per-token ratio plus truncation.",
       settings=_OFF, source="Yao et al. 2025 (TIS)"),
    _e("sequence-is-off-policy", _sequence_is, "unbiased", "importance", _LIT,
       "full-sequence ratio (detached) times the RLOO advantage: plain importance sampling.",
       settings=_OFF),
    _e("sequence-is-truncated-off-policy", _sequence_is_truncated, "biased", "importance", _DER,
       "min(sequence ratio, 2): truncation bias where pi > 2 pi_old.", settings=_OFF),
    # ---- KL
    _e("kl-k1-in-reward", _kl_k1_in_reward, "unbiased", "kl", _LIT,
       "R - beta * sum_t (log pi_old - log pi_ref), RLOO: grad of E[R] - beta KL.",
       settings=_KL, source="Ziegler et al. 2019; verl compute_rewards"),
    _e("kl-k1-in-reward-token-level", _kl_k1_in_reward_token_level, "unbiased", "kl", _DER,
       "-beta delta_t as token rewards, reward-to-go (causality drops the past terms).",
       settings=_KL_K1),
    _e("kl-k1-in-reward-group-mean", _kl_k1_in_reward_group_mean, "scaled", "kl", _DER,
       "k1 in the reward with a group-mean advantage: c = (k-1)/k.", settings=_KL,
       scale=_group_mean_scale),
    _e("kl-k2-in-reward", _kl_k2_in_reward, "biased", "kl", _DER,
       "R - beta * sum_t delta_t^2 / 2 (detached): score-function gradient of the wrong quantity.",
       settings=_KL),
    _e("kl-k3-in-reward", _kl_k3_in_reward, "biased", "kl", _DER,
       "R - beta * sum_t (exp(-delta) - 1 + delta) (detached).", settings=_KL),
    _e("kl-k1-in-loss", _kl_k1_in_loss, "biased", "kl", _LIT,
       "beta * agg(log pi - log pi_ref) in the loss: zero expected gradient.", settings=_KL),
    _e("kl-k2-in-loss", _kl_k2_in_loss, "biased", "kl", _DER,
       "beta * agg(delta^2 / 2) in the loss: per-token KL gradients, future terms missing "
       "(exact at T = 1 only).", settings=_KL),
    _e("kl-k3-in-loss", _kl_k3_in_loss, "biased", "kl", _DER,
       "GRPO's k3 in the loss: per-node forward-KL gradient.", settings=_KL,
       source="Shao et al. 2024 (usage); Tang and Munos 2025 (analysis)"),
    _e("entropy-bonus", _entropy_bonus, "biased", "regularisation", _LIT,
       "RLOO minus 0.01 * token-summed entropy: a different objective."),
    # ---- errors (loss)
    _e("raises-not-implemented", _raises_not_implemented, "error", "error", _BUILT,
       "raises NotImplementedError."),
    _e("returns-per-sequence-vector", _returns_per_sequence_vector, "error", "error", _BUILT,
       "returns the (B,) per-sequence losses, not a scalar."),
    _e("returns-python-float", _returns_python_float, "error", "error", _BUILT,
       "returns loss.item(): a float, no graph."),
    _e("grpo-std-no-eps-nan", _grpo_std_no_eps, "error", "error", _BUILT,
       "(R - mean) / std without eps: NaN when a group's rewards are equal."),
    _e("mutates-rewards-in-place", _mutates_rewards_in_place, "error", "error", _BUILT,
       "rewards -= rewards.mean() on batch.rewards."),
    _e("nondeterministic-token-dropout", _nondeterministic_dropout, "error", "error", _BUILT,
       "keeps a random 90% of the tokens (torch.rand_like, unseeded)."),
    # ---- NumPy weights
    _e("w-reinforce", _w_reinforce, "unbiased", "correct", _LIT,
       "R_j * mask / B.", protocol="weights", settings=_K1),
    _e("w-rloo-multi-prompt", _w_rloo, "unbiased", "baseline", _DER,
       "RLOO via group=, * mask / B, with P in (1, 2): the batch mean is the prompts' mean.",
       protocol="weights", settings=_MULTI),
    _e("w-rloo-batched", _w_rloo, "unbiased", "baseline", _LIT,
       "the RLOO weights with a leading G axis (batched=True).", protocol="weights",
       settings=_BATCHED),
    _e("w-reward-to-go-terminal", _w_reward_to_go_terminal, "unbiased", "returns", _LIT,
       "reverse cumsum of a terminal reward, masked, / B.", protocol="weights", settings=_K1),
    _e("w-grpo-std", _w_grpo_std, "biased", "normalisation", _LIT,
       "GRPO (R - mean)/(std + 1e-4) by group (id2score loop).", protocol="weights"),
    _e("w-token-mean", _w_token_mean, "biased", "aggregation", _LIT,
       "RLOO * mask / mask.sum().", protocol="weights"),
    _e("w-dr-grpo", _w_dr_grpo, "scaled", "aggregation", _LIT,
       "group-mean advantage * mask / T: c = (k-1)P/T.", protocol="weights",
       scale=_k_minus_one_over_t),
    _e("w-mask-tokens-ne-pad", _w_mask_tokens_ne_pad, "biased", "masking", _DER,
       "R_j * (tokens != 0) / B: EOS dropped.", protocol="weights", settings=_K1),
    _e("w-counts-padding", _w_counts_padding, "biased", "masking", _DER,
       "R_j on every position, padding included.", protocol="weights", settings=_K1),
    _e("w-kl-k1-in-reward", _w_kl_k1_in_reward, "unbiased", "kl", _LIT,
       "(R - 0.1 * sum_t (logp - ref)) * mask / B.", protocol="weights", settings=_KL_K1),
    _e("w-kl-k3-in-loss", _w_kl_k3_in_loss, "biased", "kl", _DER,
       "(R - 0.1 * (1 - exp(ref - logp))) * mask / B.", protocol="weights", settings=_KL_K1),
    _e("w-sequence-is-off-policy", _w_sequence_is, "unbiased", "importance", _LIT,
       "exp(sum_t (logp - old)) * RLOO * mask / B.", protocol="weights", settings=_OFF),
    _e("w-tis-token-off-policy", _w_tis_token, "biased", "importance", _DER,
       "min(exp(logp - old), 2) * RLOO * mask / B.", protocol="weights", settings=_OFF),
    # ---- errors (weights)
    _e("w-raises", _w_raises, "error", "error", _BUILT, "raises ValueError.", protocol="weights"),
    _e("w-returns-vector", _w_returns_vector, "error", "error", _BUILT,
       "returns (B,) instead of (B, T).", protocol="weights"),
    _e("w-nan-std-no-eps", _w_nan_std_no_eps, "error", "error", _BUILT,
       "(R - mean)/std without eps: NaN for equal rewards.", protocol="weights"),
    _e("w-mutates-rewards", _w_mutates_rewards, "error", "error", _BUILT,
       "rewards -= rewards.mean() in place.", protocol="weights"),
    _e("w-nondeterministic", _w_nondeterministic, "error", "error", _BUILT,
       "fresh unseeded np.random.default_rng() keep-mask.", protocol="weights"),
)
"""Every sequence entry, in the order of the module table."""

_BY_NAME: dict[str, SequenceEntry] = {entry.name: entry for entry in SEQUENCE_CATALOGUE}


def get(name: str) -> SequenceEntry:
    """The sequence catalogue entry called ``name``.

    >>> get("kl-k3-in-loss").settings.kl_coef
    0.1
    >>> get("rlo")
    Traceback (most recent call last):
    ...
    impl.errors.InvalidArgument: No sequence catalogue entry name='rlo' (type=str); close names: ['rloo']
    """
    if not isinstance(name, str) or name not in _BY_NAME:
        close = difflib.get_close_matches(str(name), list(_BY_NAME), n=5, cutoff=0.5)
        raise InvalidArgument(f"No sequence catalogue entry {describe('name', name)}; close names: {close}")
    return _BY_NAME[name]


def expected_scale(entry: SequenceEntry, k: int, max_len: int, num_prompts: int) -> float:
    """The constant ``c`` an exact checker must measure for ``entry`` at ``(k, T, P)``.

    1 for unbiased entries, ``entry.scale(k, T, P)`` for scaled ones; ``nan`` otherwise.

    >>> expected_scale(get("dr-grpo-trl"), 2, 3, 2)  # (k-1)/(kT), whatever P
    0.16666666666666666
    >>> expected_scale(get("rloo"), 3, 3, 1)
    1.0
    """
    if entry.expected == "unbiased":
        return 1.0
    if entry.expected == "scaled" and entry.scale is not None:
        return float(entry.scale(k, max_len, num_prompts))
    return math.nan


__all__ = [
    "CATEGORIES",
    "DROPOUT_KEEP",
    "ENTROPY_COEF",
    "GAE_LAMBDA",
    "GAMMA",
    "GRPO_STD_EPS",
    "KL_COEF",
    "MISMATCH_TIS_CAP",
    "PPO_CLIP",
    "SEQUENCE_CATALOGUE",
    "TIS_CAP",
    "VERDICTS",
    "WHITEN_EPS",
    "Protocol",
    "Scale",
    "SequenceEntry",
    "SequenceSettings",
    "SettledBy",
    "Verdict",
    "expected_scale",
    "get",
]
