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

import numpy as np  # noqa: F401  (the docstring's example uses it)

from impl.sequence_catalogue.entry import (
    CATEGORIES,
    DROPOUT_KEEP,
    ENTROPY_COEF,
    GAE_LAMBDA,
    GAMMA,
    GRPO_STD_EPS,
    KL_COEF,
    MISMATCH_TIS_CAP,
    PPO_CLIP,
    TIS_CAP,
    VERDICTS,
    WHITEN_EPS,
    Protocol,
    Scale,
    SequenceEntry,
    SequenceSettings,
    SettledBy,
    Verdict,
)
from impl.sequence_catalogue.table import (
    SEQUENCE_CATALOGUE,
    expected_scale,
    get,
)

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
