"""The multi-prompt catalogue (``fn(logits, samples, rewards, group)``, ``P`` prompts of ``k``
responses pooled in one batch) with its entry type and lookup by name."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from impl.catalogue.entry import Verdict
from impl.errors import InvalidArgument, describe
from impl.types import FloatArray

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
