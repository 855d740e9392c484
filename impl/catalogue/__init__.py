r"""A catalogue of named gradient estimators, correct and planted-wrong, with their verdicts.

Every entry is a batched :data:`impl.types.Estimator`
``fn(logits (n,), samples (B, k) int64, rewards (B, k) float64) -> (B, n)`` meant to
estimate :math:`\nabla_\theta J`, :math:`J = E_{X\sim\mathrm{softmax}(\theta)}[s(X)]`, from
a group of :math:`k` iid samples.  Writing :math:`S(x) = e_x - p` for the score
(:math:`\nabla\log p(x)`) and :math:`G = \nabla J = p\odot(s - J)`, most entries are
:math:`g = \frac1k\sum_j w_j S(x_j)` for some coefficients :math:`w_j`, and

* :math:`E[g] = G` whenever :math:`E[w_j \mid x_j] = s(x_j) + c` with :math:`c` not depending
  on :math:`x_j` (because :math:`E[S(x)] = 0`): constant baselines, and any baseline built
  from the *other* samples only;
* :math:`E[g] = c\,G` when :math:`w_j = c\,s_j + (\text{such a baseline})`, e.g. the
  self-inclusive group mean :math:`w_j = s_j - \bar s = \frac{k-1}{k}(s_j - \bar s_{-j})`.

Each entry declares the verdict an exact checker must reach over every problem
``(logits, scores)`` and every tested group size ``k >= min_k``:

* ``unbiased``: :math:`E[g] = G` exactly;
* ``scaled``: :math:`E[g] = c_k G` with :math:`c_k > 0` given by ``scale(k)``, the same for
  every problem (:math:`c_k \ne 1` for some tested ``k``);
* ``biased``: anything else, including biases that only show with ties, negative scores,
  ``k = 1``, extreme logits or ``n >= 3`` (each such entry says so);
* ``error``: raises or exits, returns ``None``/a wrong shape/a non-float dtype/NaN, is
  nondeterministic, mutates its inputs, or (batched) computes a row from other rows, for
  at least one problem.

Two entries differ between the batched and the per-group protocol (``batch-mean-baseline``
and ``detects-full-enumeration`` pool the rows of a batch: on a batch of one they are a
different estimator, ``per_group_expected``), and three are ``biased`` only through the
round-off of a coarser dtype they compute in (``roundoff``: the checker says so).

Every verdict was derived by hand and is verified against :func:`impl.exact.exact_expectation`
in ``tests/test_catalogue.py``.

=====================================  ========  ===========  =====  ===============
name                                   expected  scale c_k    min_k  category
=====================================  ========  ===========  =====  ===============
reinforce                              unbiased  -            1      correct
constant-baseline                      unbiased  -            1      baseline
stale-batch-baseline                   unbiased  -            1      baseline
rloo                                   unbiased  -            2      baseline
rloo-wrong-denominator                 unbiased  -            1      baseline
group-mean-bessel-corrected            unbiased  -            2      baseline
loo-max-baseline                       unbiased  -            2      baseline
loo-median-baseline                    unbiased  -            2      baseline
ppo-clip-on-policy                     unbiased  -            1      clipping
reinforce-float32                      unbiased  -            1      correct
reinforce-returns-list                 unbiased  -            1      correct
group-mean-baseline                    scaled    (k-1)/k      2      baseline
dr-grpo                                scaled    (k-1)/k      2      normalisation
ppo-clip-group-mean-advantage          scaled    (k-1)/k      2      clipping
sum-instead-of-mean                    scaled    k            1      sign/scale
self-proportional-baseline             scaled    1/2          1      baseline
fixed-reward-normalisation             scaled    4            1      normalisation
temperature-gradient-scale             scaled    1/2          1      temperature
rewards-in-percent                     scaled    100          1      sign/scale
negated-reinforce                      biased    -            1      sign/scale
zero-gradient                          biased    -            1      sign/scale
divide-by-n-not-k                      biased    -            1      sign/scale
missing-p-term                         biased    -            1      score
grad-p-instead-of-grad-log-p           biased    -            1      score
uniform-p-in-score                     biased    -            1      score
index-shift                            biased    -            1      indexing
rewards-rolled                         biased    -            2      indexing
grpo-std-normalised                    biased    -            2      normalisation
median-baseline-including-self         biased    -            2      baseline
rank-reward                            biased    -            2      normalisation
imitate-group-best                     biased    -            1      objective
clip-rewards-unit-interval             biased    -            1      clipping
prob-floor-in-score                    biased    -            1      clipping
clamped-log-prob                       biased    -            1      clipping
epsilon-inside-log                     biased    -            1      score
entropy-bonus                          biased    -            1      regularisation
kl-to-uniform-reward-penalty           biased    -            1      regularisation
temperature-mismatch-score             biased    -            1      temperature
rloo-k1-fallback-self                  biased    -            1      baseline
dedupe-by-reward                       biased    -            1      indexing
binary-softmax-assumption              biased    -            1      score
top5-truncated-softmax                 biased    -            1      score
logit-clamp-50                         biased    -            1      clipping
reward-clip-1e4                        biased    -            1      clipping
group-mean-advantage-float32           biased    -            2      baseline
reinforce-float32-internal             biased    -            1      correct
reinforce-bfloat16-rewards             biased    -            1      correct
raises-value-error                     error     -            1      error
returns-none                           error     -            1      error
wrong-shape-drops-last                 error     -            1      error
nan-on-negative-reward                 error     -            1      error
nondeterministic-noise                 error     -            1      error
mutates-rewards                        error     -            1      error
in-place-sort-by-reward                error     -            1      error
per-group-only                         error     -            1      error
rloo-unguarded                         error     -            1      error
batch-mean-baseline                    error     (k-1)/k      2      baseline
detects-full-enumeration               error     -            1      error
softmax-without-max-subtraction        error     -            1      score
returns-integer                        error     -            1      error
reinforce-float16                      error     -            1      error
calls-sys-exit                         error     -            1      error
random-for-n-at-least-3                error     -            1      error
ema-baseline-state                     error     -            1      error
forces-writeable-inputs                error     -            1      error
read-only-message                      error     -            1      error
=====================================  ========  ===========  =====  ===============

Estimators of the multi-prompt protocol (``fn(logits, samples, rewards, group)``, ``P``
prompts of ``k`` responses pooled in one batch, target :math:`\frac1P\sum_p\nabla J_p`)
are in :data:`MULTI_PROMPT_CATALOGUE` (:class:`PromptEntry`, checked at ``P`` in 1, 2):

=============================  ========  =============  =====
name                           expected  scale c        min_k
=============================  ========  =============  =====
pooled-reinforce-mean          unbiased  -              1
pooled-group-rloo              unbiased  -              2
pooled-reinforce-sum           scaled    P k            1
pooled-per-prompt-mean-summed  scaled    P              1
pooled-batch-mean-baseline     scaled    (Pk-1)/(Pk)    2
pooled-batch-whitening         biased    -              2
pooled-nonzero-count-scale     biased    -              1
pooled-first-prompt-logits     biased    -              1
pooled-per-prompt-output       error     -              2
=============================  ========  =============  =====

>>> len(CATALOGUE) >= 34
True
>>> get("rloo").expected, get("group-mean-baseline").scale(4)
('unbiased', 0.75)
"""

from __future__ import annotations

from impl.catalogue.entry import (
    CATEGORIES,
    VERDICTS,
    CatalogueEntry,
    Verdict,
)
from impl.catalogue.entry import (
    CONSTANT_BASELINE as CONSTANT_BASELINE,
)
from impl.catalogue.entry import (
    EMA_DECAY as EMA_DECAY,
)
from impl.catalogue.entry import (
    ENTROPY_COEF as ENTROPY_COEF,
)
from impl.catalogue.entry import (
    GRPO_STD_EPS as GRPO_STD_EPS,
)
from impl.catalogue.entry import (
    KL_COEF as KL_COEF,
)
from impl.catalogue.entry import (
    LOG_EPS as LOG_EPS,
)
from impl.catalogue.entry import (
    LOGIT_CLAMP as LOGIT_CLAMP,
)
from impl.catalogue.entry import (
    LOGP_FLOOR as LOGP_FLOOR,
)
from impl.catalogue.entry import (
    NOISE_STD as NOISE_STD,
)
from impl.catalogue.entry import (
    PERCENT as PERCENT,
)
from impl.catalogue.entry import (
    PPO_EPSILON as PPO_EPSILON,
)
from impl.catalogue.entry import (
    PROB_FLOOR as PROB_FLOOR,
)
from impl.catalogue.entry import (
    REWARD_CLIP as REWARD_CLIP,
)
from impl.catalogue.entry import (
    REWARD_SCALE as REWARD_SCALE,
)
from impl.catalogue.entry import (
    REWARD_SHIFT as REWARD_SHIFT,
)
from impl.catalogue.entry import (
    SELF_BASELINE_FRACTION as SELF_BASELINE_FRACTION,
)
from impl.catalogue.entry import (
    STALE_BASELINE as STALE_BASELINE,
)
from impl.catalogue.entry import (
    TEMPERATURE as TEMPERATURE,
)
from impl.catalogue.entry import (
    TOP_K_SOFTMAX as TOP_K_SOFTMAX,
)
from impl.catalogue.failing import (
    round_bfloat16,
)
from impl.catalogue.prompts import (
    MULTI_PROMPT_CATALOGUE,
    WHITEN_EPS,
    PooledEstimator,
    PromptEntry,
    get_multi_prompt,
)
from impl.catalogue.table import (
    CATALOGUE,
    get,
    per_group,
)

__all__ = [
    "CATALOGUE",
    "CATEGORIES",
    "MULTI_PROMPT_CATALOGUE",
    "VERDICTS",
    "WHITEN_EPS",
    "CatalogueEntry",
    "PooledEstimator",
    "PromptEntry",
    "Verdict",
    "get",
    "get_multi_prompt",
    "per_group",
    "round_bfloat16",
]
