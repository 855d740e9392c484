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

import difflib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from impl import estimators as _ref
from impl.errors import InvalidArgument, describe
from impl.policy import group_gradient, log_softmax, softmax
from impl.types import Estimator, FloatArray, Gradient, IntArray, Logits, Rewards, Samples

Verdict = Literal["unbiased", "scaled", "biased", "error"]
"""The four verdicts of the estimator checker."""

VERDICTS: tuple[Verdict, ...] = ("unbiased", "scaled", "biased", "error")

CATEGORIES: tuple[str, ...] = (
    "correct",
    "sign/scale",
    "baseline",
    "score",
    "normalisation",
    "indexing",
    "clipping",
    "regularisation",
    "temperature",
    "objective",
    "error",
)
"""The allowed values of :attr:`CatalogueEntry.category`."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One named estimator with the verdict an exact checker must reach on it.

    ``expected`` is the verdict for the batched estimator; ``per_group_expected`` the
    verdict for :func:`per_group` of it when that differs (an estimator that pools
    statistics across the rows of a batch is a different estimator on a batch of one).
    ``scale`` is ``k -> c_k`` when either verdict is ``"scaled"`` and ``None`` otherwise;
    ``min_k`` is the smallest group size the estimator is defined for.  ``roundoff`` is
    ``(dtype, verdict)`` for an entry that is ``"biased"`` only through the round-off of
    a coarser dtype it computes in: the checker's verdict stays ``"biased"`` (its output
    claims float64 precision), and at that dtype's precision it is ``verdict``.
    """

    name: str
    fn: Estimator
    expected: Verdict
    scale: Callable[[int], float] | None
    min_k: int
    description: str
    category: str
    per_group_expected: Verdict | None = None
    roundoff: tuple[str, Verdict] | None = None

    @property
    def expected_per_group(self) -> Verdict:
        """The verdict for the per-group form (:func:`per_group`) of this estimator."""
        return self.per_group_expected or self.expected


# --------------------------------------------------------------------------- constants
# Named parameters of the planted estimators (each is what a real implementation uses).

STALE_BASELINE = -3.25
"""Baseline frozen from a previous batch: any constant is fine."""

CONSTANT_BASELINE = 0.7
"""A hand-picked constant baseline."""

SELF_BASELINE_FRACTION = 0.5
"""``b_j = fraction * s(x_j)``: a baseline proportional to the sample's own reward."""

REWARD_SHIFT, REWARD_SCALE = 0.5, 0.25
"""Fixed reward normalisation ``(s - shift) / scale`` with stale running statistics."""

TEMPERATURE = 2.0
"""Sampling/backward temperature used by the temperature entries."""

PPO_EPSILON = 0.2
"""The PPO clip range ``[1 - eps, 1 + eps]``."""

GRPO_STD_EPS = 1e-4
"""The ``std + eps`` guard of GRPO's advantage normalisation."""

PROB_FLOOR = 1e-6
"""``p.clip(min=PROB_FLOOR)`` inside the score."""

LOGP_FLOOR = -10.0
"""``log p`` clamped at this floor (the clamp kills the gradient below it)."""

LOG_EPS = 1e-6
"""``log(p + LOG_EPS)`` instead of ``log p``."""

ENTROPY_COEF = 1e-6
"""A tiny entropy bonus coefficient: still a bias."""

KL_COEF = 0.05
"""Coefficient of the KL-to-uniform penalty folded into the reward."""

NOISE_STD = 1e-3
"""Standard deviation of the noise the nondeterministic entries add."""

TOP_K_SOFTMAX = 5
"""Answers kept by the truncated softmax of the ``top5-truncated-softmax`` entry."""

LOGIT_CLAMP = 50.0
"""``logits.clip(-LOGIT_CLAMP, LOGIT_CLAMP)`` "for stability" before the softmax."""

REWARD_CLIP = 1e4
"""``rewards.clip(-REWARD_CLIP, REWARD_CLIP)``: a clip meant never to bite."""

PERCENT = 100.0
"""Rewards reported in percent: every reward multiplied by this."""

EMA_DECAY = 0.9
"""Decay of the moving-average baseline kept across calls."""


# --------------------------------------------------------------------------- helpers


def _rw(samples: Samples, rewards: Rewards) -> FloatArray:
    """``rewards`` as float64 ``(B, k)`` matching ``samples`` (no copy when already so)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2 or r.shape != np.shape(samples):
        raise InvalidArgument(
            f"Expected rewards of shape {np.shape(samples)} (B, k) but got "
            f"{describe('rewards', rewards)}"
        )
    return r


def _need_k2(samples: Samples, who: str) -> int:
    k = int(np.shape(samples)[-1])
    if k < 2:
        raise InvalidArgument(
            f"{who} needs groups of k >= 2 samples but got {describe('samples', samples)}"
        )
    return k


def _onehot(samples: Samples, n: int) -> FloatArray:
    """``e_{x_bj}`` as a ``(B, k, n)`` float64 array."""
    out: FloatArray = (np.asarray(samples)[..., None] == np.arange(n)).astype(np.float64)
    return out


def _without_self(r: FloatArray, fill: float) -> FloatArray:
    """``(B, k, k)``: row ``j`` holds the group's rewards with entry ``j`` replaced by ``fill``."""
    k = r.shape[-1]
    out: FloatArray = np.where(np.eye(k, dtype=bool), fill, r[:, None, :])
    return out


def _entropy_gradient(logits: Logits) -> FloatArray:
    r""":math:`\nabla H = -p\odot(\log p - p\cdot\log p)` for :math:`H = -\sum p\log p`."""
    p, logp = softmax(logits), log_softmax(logits)
    out: FloatArray = -p * (logp - p @ logp)
    return out


# --------------------------------------------------------------------------- unbiased


def _stale_batch_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    return group_gradient(logits, samples, _rw(samples, rewards) - STALE_BASELINE)


def _rloo_wrong_denominator(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    k = r.shape[-1]
    others = (r.sum(axis=-1, keepdims=True) - r) / k  # should be / (k - 1)
    return group_gradient(logits, samples, r - others)


def _group_mean_bessel(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    k = _need_k2(samples, "group-mean-bessel-corrected")
    return group_gradient(logits, samples, k / (k - 1) * (r - r.mean(axis=-1, keepdims=True)))


def _loo_max_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    _need_k2(samples, "loo-max-baseline")
    b = _without_self(r, -np.inf).max(axis=-1)
    return group_gradient(logits, samples, r - b)


def _loo_median_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    _need_k2(samples, "loo-median-baseline")
    b = np.nanmedian(_without_self(r, np.nan), axis=-1)
    return group_gradient(logits, samples, r - b)


def _ppo_weights(logits: Logits, samples: Samples, advantages: FloatArray) -> FloatArray:
    """Gradient coefficient of ``min(ratio A, clip(ratio) A)`` w.r.t. ``log p(x)``."""
    logp = log_softmax(logits)[np.asarray(samples)]
    logp_old = logp.copy()  # the behaviour policy is the current policy (detached)
    ratio = np.exp(logp - logp_old)
    clipped = ((advantages > 0) & (ratio > 1 + PPO_EPSILON)) | (
        (advantages < 0) & (ratio < 1 - PPO_EPSILON)
    )
    out: FloatArray = np.where(clipped, 0.0, ratio * advantages)
    return out


def _ppo_clip_on_policy(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    return group_gradient(logits, samples, _ppo_weights(logits, samples, r))


def _reinforce_float32(logits: Logits, samples: Samples, rewards: Rewards) -> Any:
    p = softmax(logits).astype(np.float32)
    r = _rw(samples, rewards).astype(np.float32)
    onehot = (np.asarray(samples)[..., None] == np.arange(p.size)).astype(np.float32)
    k = np.float32(r.shape[-1])
    return (np.einsum("bk,bkn->bn", r, onehot) - r.sum(axis=-1, keepdims=True) * p) / k


def _reinforce_returns_list(logits: Logits, samples: Samples, rewards: Rewards) -> Any:
    return _ref.reinforce(logits, samples, rewards).tolist()


# --------------------------------------------------------------------------- scaled


def _dr_grpo(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    k = _need_k2(samples, "dr-grpo")
    p = softmax(logits)
    advantage = r - r.mean(axis=-1, keepdims=True)  # no std division, no length normaliser
    out: Gradient = np.einsum("bk,bkn->bn", advantage, _onehot(samples, p.size) - p) / k
    return out


def _sum_instead_of_mean(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    out: Gradient = r.shape[-1] * group_gradient(logits, samples, r)
    return out


def _self_proportional_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    return group_gradient(logits, samples, r - SELF_BASELINE_FRACTION * r)


def _fixed_reward_normalisation(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    return group_gradient(logits, samples, (r - REWARD_SHIFT) / REWARD_SCALE)


def _temperature_gradient_scale(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    out: Gradient = group_gradient(logits, samples, _rw(samples, rewards)) / TEMPERATURE
    return out


def _ppo_clip_group_mean(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    _need_k2(samples, "ppo-clip-group-mean-advantage")
    advantage = r - r.mean(axis=-1, keepdims=True)
    return group_gradient(logits, samples, _ppo_weights(logits, samples, advantage))


# --------------------------------------------------------------------------- biased


def _negated_reinforce(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    out: Gradient = -group_gradient(logits, samples, _rw(samples, rewards))
    return out


def _zero_gradient(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    n = softmax(logits).size
    return np.zeros((np.shape(samples)[0], n))


def _divide_by_n_not_k(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    n = softmax(logits).size
    out: Gradient = group_gradient(logits, samples, r) * (r.shape[-1] / n)
    return out


def _missing_p_term(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    n = softmax(logits).size
    out: Gradient = np.einsum("bk,bkn->bn", r, _onehot(samples, n)) / r.shape[-1]
    return out


def _grad_p(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    p = softmax(logits)
    return group_gradient(logits, samples, r * p[np.asarray(samples)])


def _uniform_p_in_score(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    n = softmax(logits).size
    out: Gradient = np.einsum("bk,bkn->bn", r, _onehot(samples, n) - 1.0 / n) / r.shape[-1]
    return out


def _index_shift(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    n = softmax(logits).size
    return group_gradient(logits, (np.asarray(samples) + 1) % n, r)


def _rewards_rolled(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    _need_k2(samples, "rewards-rolled")
    return group_gradient(logits, samples, np.roll(r, 1, axis=-1))


def _grpo_std(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    _need_k2(samples, "grpo-std-normalised")
    advantage = (r - r.mean(axis=-1, keepdims=True)) / (r.std(axis=-1, keepdims=True) + GRPO_STD_EPS)
    return group_gradient(logits, samples, advantage)


def _median_including_self(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    _need_k2(samples, "median-baseline-including-self")
    return group_gradient(logits, samples, r - np.median(r, axis=-1, keepdims=True))


def _rank_reward(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    k = _need_k2(samples, "rank-reward")
    rank = (r[:, None, :] < r[:, :, None]).sum(axis=-1) / (k - 1)
    return group_gradient(logits, samples, rank.astype(np.float64))


def _imitate_group_best(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    best = np.arange(r.shape[-1]) == r.argmax(axis=-1)[:, None]
    return group_gradient(logits, samples, best.astype(np.float64))


def _clip_rewards(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    return group_gradient(logits, samples, np.clip(_rw(samples, rewards), 0.0, 1.0))


def _prob_floor_in_score(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    p = softmax(logits)
    floored = np.maximum(p, PROB_FLOOR)
    onehot = _onehot(samples, p.size)
    out: Gradient = np.einsum("bk,bkn->bn", r, onehot - floored) / r.shape[-1]
    return out


def _clamped_log_prob(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    alive = log_softmax(logits)[np.asarray(samples)] >= LOGP_FLOOR  # clamp kills the gradient
    return group_gradient(logits, samples, np.where(alive, r, 0.0))


def _epsilon_inside_log(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    px = softmax(logits)[np.asarray(samples)]
    return group_gradient(logits, samples, r * px / (px + LOG_EPS))


def _entropy_bonus(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    g = group_gradient(logits, samples, _rw(samples, rewards))
    out: Gradient = g + ENTROPY_COEF * _entropy_gradient(logits)
    return out


def _kl_to_uniform(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    logp = log_softmax(logits)
    log_ratio = logp[np.asarray(samples)] + np.log(logp.size)  # log p(x) - log(1/n)
    return group_gradient(logits, samples, r - KL_COEF * log_ratio)


def _temperature_mismatch(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    p_t = softmax(np.asarray(logits, dtype=np.float64) / TEMPERATURE)
    score = (_onehot(samples, p_t.size) - p_t) / TEMPERATURE
    out: Gradient = np.einsum("bk,bkn->bn", r, score) / r.shape[-1]
    return out


def _rloo_k1_fallback_self(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    k = r.shape[-1]
    if k == 1:  # "no other samples: use the group mean", which is the sample itself
        baseline = r.mean(axis=-1, keepdims=True)
    else:
        baseline = (r.sum(axis=-1, keepdims=True) - r) / (k - 1)
    return group_gradient(logits, samples, r - baseline)


def _dedupe_by_reward(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    x = np.asarray(samples)
    n = softmax(logits).size
    same = r[:, :, None] == r[:, None, :]
    representative: IntArray = np.where(same, x[:, None, :], n).min(axis=-1).astype(np.int64)
    return group_gradient(logits, representative, r)


def _binary_softmax(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    theta = np.asarray(logits, dtype=np.float64)
    p1 = 1.0 / (1.0 + np.exp(theta[0] - theta[1]))  # sigmoid(theta_1 - theta_0)
    p_binary = np.zeros(theta.size)
    p_binary[:2] = (1.0 - p1, p1)
    score = _onehot(samples, theta.size) - p_binary
    out: Gradient = np.einsum("bk,bkn->bn", r, score) / r.shape[-1]
    return out


# --------------------------------------------------------------------------- error


def _raises_value_error(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    raise ValueError("estimator not implemented for tabular policies")


def _returns_none(logits: Logits, samples: Samples, rewards: Rewards) -> Any:
    group_gradient(logits, samples, _rw(samples, rewards))  # computed, never returned
    return None


def _wrong_shape(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    # "the gradient sums to zero, so the last coordinate is redundant"
    out: Gradient = _ref.reinforce(logits, samples, rewards)[:, :-1]
    return out


def _nan_on_negative(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.exp(np.log(r))  # rewards "in log space": NaN for r < 0
    return group_gradient(logits, samples, w)


def _nondeterministic(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    g = _ref.reinforce(logits, samples, rewards)
    rng = np.random.default_rng()  # the bug: a fresh unseeded generator per call
    out: Gradient = g + NOISE_STD * rng.standard_normal(g.shape)
    return out


def _mutates_rewards(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    r -= r.mean(axis=-1, keepdims=True)  # in place: the caller's rewards change
    return group_gradient(logits, samples, r)


def _in_place_sort(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    x, r = np.asarray(samples), _rw(samples, rewards)
    order = np.argsort(r, axis=-1, kind="stable")
    x[...] = np.take_along_axis(x, order, axis=-1)  # consistent, but in place
    r[...] = np.take_along_axis(r, order, axis=-1)
    return _ref.reinforce(logits, x, r)


def _per_group_only(logits: Logits, samples: Samples, rewards: Rewards) -> Any:
    # written for samples (k,) -> (n,): the sum over axis 0 eats the batch axis too
    r = _rw(samples, rewards)
    p = softmax(logits)
    score = _onehot(samples, p.size) - p
    return (r[..., None] * score).reshape(-1, p.size).sum(axis=0) / r.shape[-1]


def _rloo_unguarded(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    k = r.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        loo = (r.sum(axis=-1, keepdims=True) - r) / np.float64(k - 1)  # 0/0 at k = 1
    return group_gradient(logits, samples, r - loo)


def _batch_mean_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    return group_gradient(logits, samples, r - r.mean())  # the mean over the whole batch


def _detects_full_enumeration(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    g = _ref.reinforce(logits, samples, rewards)
    b, k = np.shape(samples)
    if b == softmax(logits).size ** k:  # "this must be the test harness"
        return g
    out: Gradient = -g
    return out


def _softmax_without_max(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    theta = np.asarray(logits, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        e = np.exp(theta)  # no max subtraction: inf past theta ~ 709, 0 below -745
        p = e / e.sum()
    out: Gradient = np.einsum("bk,bkn->bn", r, _onehot(samples, theta.size) - p) / r.shape[-1]
    return out


def _returns_integer(logits: Logits, samples: Samples, rewards: Rewards) -> Any:
    return np.rint(_ref.reinforce(logits, samples, rewards)).astype(np.int64)


def _reinforce_float16(logits: Logits, samples: Samples, rewards: Rewards) -> Any:
    with np.errstate(over="ignore"):
        return _ref.reinforce(logits, samples, rewards).astype(np.float16)


def _calls_sys_exit(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    if np.any(r.max(axis=-1) == r.min(axis=-1)):
        sys.exit("degenerate group: all rewards equal")  # a script's guard, run as a library
    return group_gradient(logits, samples, r)


def _random_for_n_at_least_3(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    g = _ref.reinforce(logits, samples, rewards)
    if g.shape[-1] < 3:
        return g
    rng = np.random.default_rng()  # "jitter to break ties", only where ties can occur
    out: Gradient = g + NOISE_STD * rng.standard_normal(g.shape)
    return out


_EMA_STATE = [0.0]


def _ema_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    baseline = _EMA_STATE[0]
    _EMA_STATE[0] = EMA_DECAY * baseline + (1.0 - EMA_DECAY) * float(r.mean())
    return group_gradient(logits, samples, r - baseline)


def _forces_writeable_inputs(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = np.asarray(rewards)
    if not r.flags.writeable:
        r.setflags(write=True)  # "the framework hands out read-only arrays, override it"
    r -= r.mean(axis=-1, keepdims=True)
    return group_gradient(logits, samples, r)


def _read_only_message(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    raise ValueError("cannot update the baseline: the baseline buffer is read-only")


def _top5_truncated_softmax(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    theta = np.asarray(logits, dtype=np.float64)
    keep = np.argsort(-theta, kind="stable")[:TOP_K_SOFTMAX]
    p = np.zeros(theta.size)
    p[keep] = softmax(theta[keep])  # the rest of the vocabulary "has negligible mass"
    out: Gradient = np.einsum("bk,bkn->bn", r, _onehot(samples, theta.size) - p) / r.shape[-1]
    return out


def _logit_clamp(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    theta = np.clip(np.asarray(logits, dtype=np.float64), -LOGIT_CLAMP, LOGIT_CLAMP)
    return group_gradient(theta, samples, _rw(samples, rewards))


def _reward_clip(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    return group_gradient(logits, samples, np.clip(_rw(samples, rewards), -REWARD_CLIP, REWARD_CLIP))


def _rewards_in_percent(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    return group_gradient(logits, samples, PERCENT * _rw(samples, rewards))


def _group_mean_advantage_float32(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r32 = _rw(samples, rewards).astype(np.float32)  # verl keeps scores in float32
    _need_k2(samples, "group-mean-advantage-float32")
    advantage = (r32 - r32.mean(axis=-1, keepdims=True)).astype(np.float64)
    return group_gradient(logits, samples, advantage)


def _reinforce_float32_internal(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    out: Gradient = np.asarray(_reinforce_float32(logits, samples, rewards), dtype=np.float64)
    return out


def round_bfloat16(x: Any) -> FloatArray:
    """``x`` rounded to bfloat16 (8 significant bits, round to nearest even), as float64.

    >>> round_bfloat16(np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 3.14159])).tolist()
    [1.0, 1.0, 1.015625, 3.140625]
    """
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    out: FloatArray = rounded.astype(np.uint32).view(np.float32).astype(np.float64)
    return out


def _reinforce_bfloat16_rewards(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    return group_gradient(logits, samples, round_bfloat16(_rw(samples, rewards)))


# --------------------------------------------------------------------------- scales


def _loo_scale(k: int) -> float:
    """:math:`c_k = (k-1)/k`, the self-inclusive group-mean factor."""
    return (k - 1) / k


def _group_size_scale(k: int) -> float:
    """:math:`c_k = k`, summing instead of averaging over the group."""
    return float(k)


def _half_scale(k: int) -> float:
    """:math:`c_k = 1/2` for every ``k``."""
    return 1.0 - SELF_BASELINE_FRACTION


def _normalisation_scale(k: int) -> float:
    """:math:`c_k = 1/\\sigma` for the fixed normalisation ``(s - mu) / sigma``."""
    return 1.0 / REWARD_SCALE


def _temperature_scale(k: int) -> float:
    """:math:`c_k = 1/T`."""
    return 1.0 / TEMPERATURE


def _percent_scale(k: int) -> float:
    """:math:`c_k = 100` for rewards in percent."""
    return PERCENT


def _e(
    name: str,
    fn: Estimator,
    expected: Verdict,
    category: str,
    description: str,
    *,
    scale: Callable[[int], float] | None = None,
    min_k: int = 1,
    per_group: Verdict | None = None,
    roundoff: tuple[str, Verdict] | None = None,
) -> CatalogueEntry:
    return CatalogueEntry(
        name=name,
        fn=fn,
        expected=expected,
        scale=scale,
        min_k=min_k,
        description=description,
        category=category,
        per_group_expected=per_group,
        roundoff=roundoff,
    )


CATALOGUE: tuple[CatalogueEntry, ...] = (
    # ---- unbiased
    _e("reinforce", _ref.reinforce, "unbiased", "correct",
       "w_j = s_j; E[s(x) S(x)] = grad J."),
    _e("constant-baseline", _ref.constant_baseline(CONSTANT_BASELINE), "unbiased", "baseline",
       "w_j = s_j - 0.7; a constant baseline leaves E unchanged since E[S(x)] = 0."),
    _e("stale-batch-baseline", _stale_batch_baseline, "unbiased", "baseline",
       "w_j = s_j - b with b = -3.25 the previous batch's mean: a constant here, so unbiased."),
    _e("rloo", _ref.rloo, "unbiased", "baseline",
       "w_j = s_j - mean_{i!=j} s_i; the baseline is independent of x_j.", min_k=2),
    _e("rloo-wrong-denominator", _rloo_wrong_denominator, "unbiased", "baseline",
       "w_j = s_j - (1/k) sum_{i!=j} s_i; surprising but exact: the baseline is still a "
       "function of the other samples only (at k=1 it is reinforce)."),
    _e("group-mean-bessel-corrected", _group_mean_bessel, "unbiased", "baseline",
       "w_j = k/(k-1) (s_j - mean_i s_i) = s_j - mean_{i!=j} s_i, i.e. rloo written via the "
       "group mean.", min_k=2),
    _e("loo-max-baseline", _loo_max_baseline, "unbiased", "baseline",
       "w_j = s_j - max_{i!=j} s_i; nonlinear, but of the other samples only.", min_k=2),
    _e("loo-median-baseline", _loo_median_baseline, "unbiased", "baseline",
       "w_j = s_j - median_{i!=j} s_i; independent of x_j, so unbiased.", min_k=2),
    _e("ppo-clip-on-policy", _ppo_clip_on_policy, "unbiased", "clipping",
       "PPO min(r A, clip(r,0.8,1.2) A) with A = s at the on-policy point r = 1: the "
       "gradient is r A S(x) = reinforce."),
    _e("reinforce-float32", _reinforce_float32, "unbiased", "correct",
       "reinforce computed and returned in float32; exact up to float32 round-off (~1e-7 "
       "relative), which a checker must tolerate for float32 output."),
    _e("reinforce-returns-list", _reinforce_returns_list, "unbiased", "correct",
       "reinforce returning a nested Python list of the (B, n) values; acceptable output."),
    # ---- scaled
    _e("group-mean-baseline", _ref.group_mean_baseline, "scaled", "baseline",
       "w_j = s_j - mean_i s_i (self-inclusive, GRPO without std) = ((k-1)/k)(s_j - "
       "mean_{i!=j} s_i), so E = ((k-1)/k) grad J.", scale=_loo_scale, min_k=2),
    _e("dr-grpo", _dr_grpo, "scaled", "normalisation",
       "Dr. GRPO: A_j = s_j - mean_i s_i, no std and no length normaliser, (1/k) sum_j A_j "
       "(e_{x_j} - p); E = ((k-1)/k) grad J.", scale=_loo_scale, min_k=2),
    _e("ppo-clip-group-mean-advantage", _ppo_clip_group_mean, "scaled", "clipping",
       "PPO clipped surrogate at r = 1 with A_j = s_j - mean_i s_i: the group-mean "
       "baseline, E = ((k-1)/k) grad J.", scale=_loo_scale, min_k=2),
    _e("sum-instead-of-mean", _sum_instead_of_mean, "scaled", "sign/scale",
       "g = sum_j s_j S(x_j) (no 1/k): E = k grad J (c_1 = 1, so k = 1 alone cannot tell).",
       scale=_group_size_scale),
    _e("self-proportional-baseline", _self_proportional_baseline, "scaled", "baseline",
       "b_j = 0.5 s_j depends on x_j, but linearly: w_j = 0.5 s_j, so E = 0.5 grad J.",
       scale=_half_scale),
    _e("fixed-reward-normalisation", _fixed_reward_normalisation, "scaled", "normalisation",
       "w_j = (s_j - 0.5)/0.25 with frozen statistics: shift is a constant baseline, "
       "E = 4 grad J.", scale=_normalisation_scale),
    _e("temperature-gradient-scale", _temperature_gradient_scale, "scaled", "temperature",
       "sampled and scored at T = 1 but the backward pass applies the 1/T = 1/2 chain-rule "
       "factor of softmax(theta/T): E = grad J / 2.", scale=_temperature_scale),
    _e("rewards-in-percent", _rewards_in_percent, "scaled", "sign/scale",
       "rewards multiplied by 100 before the gradient: E = 100 grad J (round-off grows by 100 "
       "too, and must not read as a bias).", scale=_percent_scale),
    # ---- biased
    _e("negated-reinforce", _negated_reinforce, "biased", "sign/scale",
       "g = -(1/k) sum_j s_j S(x_j): descent direction, E = -grad J (c = -1 < 0)."),
    _e("zero-gradient", _zero_gradient, "biased", "sign/scale",
       "g = 0 (rewards detached from the graph): E = 0 where grad J != 0 (c = 0)."),
    _e("divide-by-n-not-k", _divide_by_n_not_k, "biased", "sign/scale",
       "g = (1/n) sum_j s_j S(x_j): E = (k/n) grad J, a scale that depends on the problem's n."),
    _e("missing-p-term", _missing_p_term, "biased", "score",
       "g = (1/k) sum_j s_j e_{x_j} (score without -p): E = p*s, not a multiple of grad J, "
       "nonzero when all scores are equal and nonzero."),
    _e("grad-p-instead-of-grad-log-p", _grad_p, "biased", "score",
       "g = (1/k) sum_j s_j p(x_j) (e_{x_j} - p): E = sum_x p_x^2 s_x (e_x - p), the gradient "
       "of the wrong objective."),
    _e("uniform-p-in-score", _uniform_p_in_score, "biased", "score",
       "score e_x - 1/n (uniform p instead of softmax): E = p*s - J/n, nonzero at equal "
       "scores."),
    _e("index-shift", _index_shift, "biased", "indexing",
       "score e_{(x+1) mod n} - p (off by one): E = roll(p*s, 1) - J p."),
    _e("rewards-rolled", _rewards_rolled, "biased", "indexing",
       "w_j = s_{j-1} (rewards paired with the wrong sample): for iid samples E = E[s] E[S] = 0 "
       "(c = 0) for k >= 2.", min_k=2),
    _e("grpo-std-normalised", _grpo_std, "biased", "normalisation",
       "GRPO A_j = (s_j - mean)/(std + 1e-4): the std depends on x_j, E is not a fixed "
       "multiple of grad J.", min_k=2),
    _e("median-baseline-including-self", _median_including_self, "biased", "baseline",
       "w_j = s_j - median_i s_i with x_j included: scaled 1/2 at k = 2 (median = mean) but "
       "biased for k >= 3.", min_k=2),
    _e("rank-reward", _rank_reward, "biased", "normalisation",
       "w_j = #{i: s_i < s_j}/(k-1): E = grad of sum_x p_x F(s_x) with F the policy's CDF "
       "(a p-dependent reward transform); even at n = 2 the scale depends on p.", min_k=2),
    _e("imitate-group-best", _imitate_group_best, "biased", "objective",
       "w_j = 1[j = argmax_i s_i]: imitation of the group's best sample, E = (B_k(p) - p)/k "
       "(best-of-k distribution B_k), not a multiple of grad J."),
    _e("clip-rewards-unit-interval", _clip_rewards, "biased", "clipping",
       "w_j = clip(s_j, 0, 1): exact for scores in [0, 1], biased only when a score lies "
       "outside (negative or > 1)."),
    _e("prob-floor-in-score", _prob_floor_in_score, "biased", "clipping",
       "score e_x - max(p, 1e-6): E = grad J + J (p - max(p, 1e-6)), bias only at extreme "
       "logits (some p < 1e-6) with J != 0."),
    _e("clamped-log-prob", _clamped_log_prob, "biased", "clipping",
       "log p(x) clamped at -10 kills the gradient of rare samples: E = grad J - sum_{p_x < "
       "e^-10} p_x s_x S(x), bias only at extreme logits."),
    _e("epsilon-inside-log", _epsilon_inside_log, "biased", "score",
       "score from log(p + 1e-6): w_j = s_j p/(p + 1e-6), a tiny (~1e-6 |s|) but real bias."),
    _e("entropy-bonus", _entropy_bonus, "biased", "regularisation",
       "reinforce + 1e-6 grad H(p): optimises J + 1e-6 H, a tiny bias (zero only at uniform "
       "logits)."),
    _e("kl-to-uniform-reward-penalty", _kl_to_uniform, "biased", "regularisation",
       "w_j = s_j - 0.05 (log p(x_j) + log n): the gradient of J - 0.05 KL(p || uniform)."),
    _e("temperature-mismatch-score", _temperature_mismatch, "biased", "temperature",
       "samples from softmax(theta) but score of softmax(theta/2): (e_x - p_T)/T, "
       "E = (p*s - J p_T)/2."),
    _e("rloo-k1-fallback-self", _rloo_k1_fallback_self, "biased", "baseline",
       "rloo for k >= 2 (exact), but at k = 1 falls back to the group mean = s_1 itself: "
       "g = 0 at k = 1, a bias that shows only for k = 1."),
    _e("dedupe-by-reward", _dedupe_by_reward, "biased", "indexing",
       "maps each sample to the lowest answer in its group with the same reward: exact for "
       "injective scores, biased only with tied scores of distinct answers."),
    _e("binary-softmax-assumption", _binary_softmax, "biased", "score",
       "score e_x - (1 - sigma(t1 - t0), sigma(t1 - t0), 0, ...): exact for n = 2, biased only "
       "for n >= 3."),
    _e("top5-truncated-softmax", _top5_truncated_softmax, "biased", "score",
       "score e_x - p_top5 with p renormalised over the 5 largest logits: exact for n <= 5, "
       "biased only for n >= 6."),
    _e("logit-clamp-50", _logit_clamp, "biased", "clipping",
       "logits clipped to [-50, 50] 'for stability' before the softmax: exact while every logit "
       "is within, biased for larger logits (and for shifted ones: softmax is shift-invariant, "
       "the clamp is not)."),
    _e("reward-clip-1e4", _reward_clip, "biased", "clipping",
       "rewards clipped to [-1e4, 1e4], a clip 'that never bites': biased only for scores "
       "beyond 1e4."),
    _e("group-mean-advantage-float32", _group_mean_advantage_float32, "biased", "baseline",
       "verl's group-mean advantage computed in float32 inside a float64 pipeline: "
       "((k-1)/k) grad J up to float32 round-off (relative ~1e-9), so strictly biased; at "
       "float32 precision it is scaled.", min_k=2, roundoff=("float32", "scaled")),
    _e("reinforce-float32-internal", _reinforce_float32_internal, "biased", "correct",
       "reinforce computed in float32 and returned as float64: exact up to float32 round-off, "
       "which float64 output does not excuse; at float32 precision it is unbiased.",
       roundoff=("float32", "unbiased")),
    _e("reinforce-bfloat16-rewards", _reinforce_bfloat16_rewards, "biased", "correct",
       "rewards rounded to bfloat16 (8 significant bits) before reinforce: the gradient of the "
       "rounded reward, biased by up to 2^-9 relative; at bfloat16 precision (rtol ~ 1) the "
       "scale cannot be measured at all.", roundoff=("bfloat16", "error")),
    # ---- error
    _e("raises-value-error", _raises_value_error, "error", "error",
       "raises ValueError on every call."),
    _e("returns-none", _returns_none, "error", "error",
       "computes reinforce but returns None."),
    _e("wrong-shape-drops-last", _wrong_shape, "error", "error",
       "returns reinforce[:, :-1], shape (B, n-1) ('the last coordinate is redundant')."),
    _e("nan-on-negative-reward", _nan_on_negative, "error", "error",
       "w_j = exp(log s_j): reinforce for s >= 0, NaN as soon as a reward is negative."),
    _e("nondeterministic-noise", _nondeterministic, "error", "error",
       "reinforce + 1e-3 N(0, 1) from a fresh unseeded np.random.default_rng(): unbiased "
       "in mean but not reproducible for fixed inputs."),
    _e("mutates-rewards", _mutates_rewards, "error", "error",
       "centres rewards in place (rewards -= mean): values of the group-mean baseline, and "
       "the caller's array changes."),
    _e("in-place-sort-by-reward", _in_place_sort, "error", "error",
       "sorts samples and rewards together in place before reinforce: exact values, but "
       "mutates both inputs."),
    _e("per-group-only", _per_group_only, "error", "error",
       "written for samples (k,): summing over axis 0 also sums the batch, returns (n,) "
       "instead of (B, n)."),
    _e("rloo-unguarded", _rloo_unguarded, "error", "error",
       "rloo with (sum - s_j)/(k - 1) unguarded: exact for k >= 2, NaN (0/0) at k = 1."),
    _e("batch-mean-baseline", _batch_mean_baseline, "error", "baseline",
       "baseline = mean of every reward in the batch: row outputs depend on the other rows "
       "(an error for a batched estimator); per group it is the group mean, scaled (k-1)/k.",
       min_k=2, per_group="scaled", scale=_loo_scale),
    _e("detects-full-enumeration", _detects_full_enumeration, "error", "error",
       "reinforce when the batch has exactly n**k groups (the checker's enumeration), "
       "-reinforce otherwise: rows depend on the batch; per group it is biased (c = -1).",
       per_group="biased"),
    _e("softmax-without-max-subtraction", _softmax_without_max, "error", "score",
       "p = exp(theta) / sum exp(theta) with no max subtraction: exact for moderate logits, "
       "NaN once a logit passes ~709 (or all fall below ~-745)."),
    _e("returns-integer", _returns_integer, "error", "error",
       "reinforce rounded to int64: a gradient must be floating point."),
    _e("reinforce-float16", _reinforce_float16, "error", "error",
       "reinforce returned in float16: inf for scores of 1e6 (float16 stops at 65504), and "
       "too coarse to tell c_k from 1 where it is finite."),
    _e("calls-sys-exit", _calls_sys_exit, "error", "error",
       "calls sys.exit when a group's rewards are all equal (a script's guard): must be the "
       "error verdict, never the end of the checking process."),
    _e("random-for-n-at-least-3", _random_for_n_at_least_3, "error", "error",
       "adds unseeded noise only for n >= 3: deterministic on the first (n = 2) problems, "
       "nondeterministic later."),
    _e("ema-baseline-state", _ema_baseline, "error", "error",
       "a moving-average baseline kept across calls (state): not a function of its inputs."),
    _e("forces-writeable-inputs", _forces_writeable_inputs, "error", "error",
       "makes read-only rewards writeable with setflags and centres them in place."),
    _e("read-only-message", _read_only_message, "error", "error",
       "raises ValueError('... read-only') without writing anything: an error, but not a "
       "write into the inputs."),
)
"""Every catalogued estimator, in the order of the module table."""

_BY_NAME: dict[str, CatalogueEntry] = {entry.name: entry for entry in CATALOGUE}


# --------------------------------------------------------------------------- several prompts


PooledEstimator = Callable[[Any, Any, Any, Any], Any]
"""``fn(logits (P*k, n), samples (P*k,), rewards (P*k,), group (P*k,)) -> (P*k, n)``."""

WHITEN_EPS = 1e-8
"""The ``std + eps`` guard of REINFORCE++'s whole-batch advantage whitening."""


@dataclass(frozen=True)
class PromptEntry:
    r"""One estimator of the multi-prompt protocol with the verdict an exact checker must reach.

    ``fn(logits, samples, rewards, group)`` pools ``P`` prompts of ``k`` responses in one
    batch (``check_estimator(fn, num_prompts=...)``); ``scale`` is ``(k, P) -> c`` when
    ``expected`` is ``"scaled"``; ``num_prompts`` the ``P`` to check and ``min_k`` the
    smallest group size the estimator is defined for.  The target is the gradient of the
    mean objective over prompts, :math:`\frac1P\sum_p \nabla J_p`.
    """

    name: str
    fn: PooledEstimator
    expected: Verdict
    scale: Callable[[int, int], float] | None
    min_k: int
    description: str
    category: str
    num_prompts: tuple[int, ...] = (1, 2)


def _rows(logits: Any, samples: Any, weights: FloatArray) -> FloatArray:
    r"""Row ``j``: :math:`w_j (e_{x_j} - \mathrm{softmax}(\theta_j))` for ``logits`` ``(B, n)``."""
    theta = np.asarray(logits, dtype=np.float64)
    e = np.exp(theta - theta.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    x = np.asarray(samples)
    onehot = (x[:, None] == np.arange(theta.shape[1])).astype(np.float64)
    out: FloatArray = weights[:, None] * (onehot - p)
    return out


def _pooled_reinforce_mean(logits: Any, samples: Any, rewards: Any, group: Any) -> FloatArray:
    r = np.asarray(rewards, dtype=np.float64)
    return _rows(logits, samples, r / r.size)


def _pooled_reinforce_sum(logits: Any, samples: Any, rewards: Any, group: Any) -> FloatArray:
    return _rows(logits, samples, np.asarray(rewards, dtype=np.float64))


def _pooled_per_prompt_mean(logits: Any, samples: Any, rewards: Any, group: Any) -> FloatArray:
    r = np.asarray(rewards, dtype=np.float64)
    counts = np.bincount(group)[group]
    return _rows(logits, samples, r / counts)


def _pooled_batch_mean_baseline(logits: Any, samples: Any, rewards: Any, group: Any) -> FloatArray:
    r = np.asarray(rewards, dtype=np.float64)
    return _rows(logits, samples, (r - r.mean()) / r.size)


def _pooled_group_rloo(logits: Any, samples: Any, rewards: Any, group: Any) -> FloatArray:
    r = np.asarray(rewards, dtype=np.float64)
    sums = np.bincount(group, weights=r)[group]
    counts = np.bincount(group)[group]
    others = (sums - r) / (counts - 1)
    return _rows(logits, samples, (r - others) / r.size)


def _pooled_batch_whitening(logits: Any, samples: Any, rewards: Any, group: Any) -> FloatArray:
    r = np.asarray(rewards, dtype=np.float64)
    advantage = (r - r.mean()) / (r.std() + WHITEN_EPS)
    return _rows(logits, samples, advantage / r.size)


def _pooled_nonzero_count(logits: Any, samples: Any, rewards: Any, group: Any) -> FloatArray:
    r = np.asarray(rewards, dtype=np.float64)
    # mean over the batch times B / count_nonzero(rewards): "average over informative rows"
    return _rows(logits, samples, r / max(int(np.count_nonzero(r)), 1))


def _pooled_dapo_filter(logits: Any, samples: Any, rewards: Any, group: Any) -> FloatArray:
    r = np.asarray(rewards, dtype=np.float64)
    g = np.asarray(group)
    sums = np.bincount(g, weights=r)[g]
    counts = np.bincount(g)[g]
    advantage = r - (sums - r) / (counts - 1)  # leave-one-out within the prompt
    high = np.full(int(g.max()) + 1, -np.inf)
    low = np.full(int(g.max()) + 1, np.inf)
    np.maximum.at(high, g, r)
    np.minimum.at(low, g, r)
    keep = (high > low)[g]  # drop the prompts whose rewards are all equal (no signal)
    return _rows(logits, samples, np.where(keep, advantage, 0.0) / max(int(keep.sum()), 1))


def _pooled_first_prompt_logits(logits: Any, samples: Any, rewards: Any, group: Any) -> FloatArray:
    r = np.asarray(rewards, dtype=np.float64)
    theta = np.asarray(logits, dtype=np.float64)
    first = np.broadcast_to(theta[0], theta.shape)  # "all rows share the prompt's logits"
    return _rows(first, samples, r / r.size)


def _pooled_per_prompt_output(logits: Any, samples: Any, rewards: Any, group: Any) -> FloatArray:
    r = np.asarray(rewards, dtype=np.float64)
    rows = _rows(logits, samples, r / r.size)
    out: FloatArray = np.stack([rows[group == q].sum(axis=0) for q in np.unique(group)])
    return out


def _batch_scale(k: int, p: int) -> float:
    """:math:`c = kP`, a sum over the batch's ``P*k`` rows instead of a mean."""
    return float(k * p)


def _prompt_sum_scale(k: int, p: int) -> float:
    """:math:`c = P`, per-prompt means summed over prompts (the target is their mean)."""
    return float(p)


def _batch_baseline_scale(k: int, p: int) -> float:
    """:math:`c = (kP-1)/(kP)`, the self-inclusive whole-batch mean as baseline."""
    return (k * p - 1) / (k * p)


def _p(
    name: str,
    fn: PooledEstimator,
    expected: Verdict,
    category: str,
    description: str,
    *,
    scale: Callable[[int, int], float] | None = None,
    min_k: int = 1,
) -> PromptEntry:
    return PromptEntry(name, fn, expected, scale, min_k, description, category)


MULTI_PROMPT_CATALOGUE: tuple[PromptEntry, ...] = (
    _p("pooled-reinforce-mean", _pooled_reinforce_mean, "unbiased", "correct",
       "w_j = s_j / (P k), a mean over all P*k rows: prompt p's rows sum to "
       "(1/(P k)) sum_{j in p} s_j S_p(x_j), E = grad J_p / P, the target."),
    _p("pooled-group-rloo", _pooled_group_rloo, "unbiased", "baseline",
       "w_j = (s_j - mean of the other rows of j's prompt, found through group) / (P k): the "
       "baseline is independent of x_j, so E = grad J_p / P.", min_k=2),
    _p("pooled-reinforce-sum", _pooled_reinforce_sum, "scaled", "sign/scale",
       "w_j = s_j, a sum over all rows: E = k grad J_p = (P k) grad J_p / P, c = P k.",
       scale=_batch_scale),
    _p("pooled-per-prompt-mean-summed", _pooled_per_prompt_mean, "scaled", "sign/scale",
       "w_j = s_j / k: each prompt's group mean, summed over prompts: E = grad J_p = "
       "P grad J_p / P, c = P.", scale=_prompt_sum_scale),
    _p("pooled-batch-mean-baseline", _pooled_batch_mean_baseline, "scaled", "baseline",
       "w_j = (s_j - mean of all P*k rewards) / (P k): the other P k - 1 rewards are "
       "independent of x_j, s_j's own share is 1/(P k), so E = ((P k - 1)/(P k)) grad J_p / P.",
       scale=_batch_baseline_scale, min_k=2),
    _p("pooled-batch-whitening", _pooled_batch_whitening, "biased", "normalisation",
       "REINFORCE++: A_j = (s_j - batch mean) / (batch std + 1e-8), w_j = A_j / (P k): the "
       "std depends on x_j, E is not a fixed multiple of grad J_p / P.", min_k=2),
    _p("pooled-nonzero-count-scale", _pooled_nonzero_count, "biased", "normalisation",
       "w_j = s_j / max(count_nonzero(s), 1) (a mean times B / count_nonzero): the divisor "
       "depends on the samples once a score is 0; exact only when every score is nonzero."),
    _p("pooled-dapo-filter-no-refill", _pooled_dapo_filter, "biased", "normalisation",
       "DAPO's dynamic-sampling filter without refilling the batch: leave-one-out advantages, "
       "prompts whose k rewards are all equal dropped, mean over the kept rows.  At P = 1 a "
       "dropped prompt has zero advantages anyway: unbiased.  At P = 2 prompt p's rows are "
       "divided by k (1 + [the other prompt is kept]), independent of p's samples, so "
       "E = (1 + q_other) grad J_p / P with q_other the chance that the other prompt is "
       "dropped: a different constant per prompt, biased.", min_k=2),
    _p("pooled-first-prompt-logits", _pooled_first_prompt_logits, "biased", "indexing",
       "every row scored with softmax(logits[0]) (rows assumed to share one prompt): exact at "
       "P = 1, E = (1/(P k)) sum_j E[s_j (e_{x_j} - p_0)] wrong for the other prompts at P >= 2."),
    _p("pooled-per-prompt-output", _pooled_per_prompt_output, "error", "error",
       "returns one row per prompt, (P, n), instead of one per response, (P*k, n): the wrong "
       "shape for every k >= 2.", min_k=2),
)
"""The estimators of the multi-prompt protocol (``check_estimator(fn, num_prompts=...)``)."""

_BY_NAME_MULTI: dict[str, PromptEntry] = {e.name: e for e in MULTI_PROMPT_CATALOGUE}


def get_multi_prompt(name: str) -> PromptEntry:
    """The multi-prompt catalogue entry called ``name``.

    >>> get_multi_prompt("pooled-batch-mean-baseline").scale(2, 2)
    0.75
    """
    if not isinstance(name, str) or name not in _BY_NAME_MULTI:
        close = difflib.get_close_matches(str(name), list(_BY_NAME_MULTI), n=5, cutoff=0.5)
        raise InvalidArgument(
            f"No multi-prompt catalogue entry {describe('name', name)}; close names: {close}"
        )
    return _BY_NAME_MULTI[name]


def get(name: str) -> CatalogueEntry:
    """The catalogue entry called ``name``.

    >>> get("rloo-wrong-denominator").expected
    'unbiased'
    >>> get("rlo")
    Traceback (most recent call last):
    ...
    impl.errors.InvalidArgument: No catalogue entry name='rlo' (type=str); close names: ['rloo']
    """
    if not isinstance(name, str) or name not in _BY_NAME:
        close = difflib.get_close_matches(str(name), list(_BY_NAME), n=5, cutoff=0.5)
        raise InvalidArgument(
            f"No catalogue entry {describe('name', name)}; close names: {close}"
        )
    return _BY_NAME[name]


def per_group(fn: Estimator) -> Estimator:
    """Adapt a batched estimator to the per-group form ``(k,), (k,) -> (n,)``.

    Calls ``fn`` on a batch of one group (views of the caller's arrays, so in-place
    mutation still shows) and returns row 0 of whatever came back, keeping its type and
    dtype: ``None`` stays ``None``, a list stays a list, a wrong shape stays wrong.

    >>> one = per_group(get("reinforce").fn)
    >>> one(np.zeros(2), np.array([0, 1]), np.array([1.0, 3.0]))
    array([-0.5,  0.5])
    """

    def estimator(logits: Logits, samples: Samples, rewards: Rewards) -> Any:
        x, r = np.asarray(samples), np.asarray(rewards)
        out: Any = fn(logits, x[None, ...], r[None, ...])
        if out is None:
            return None
        if isinstance(out, list):
            return out[0] if out else out
        if isinstance(out, np.ndarray) and out.ndim >= 1:
            return out[0]
        return out

    estimator.__name__ = f"per_group({getattr(fn, '__name__', repr(fn))})"
    return estimator


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
