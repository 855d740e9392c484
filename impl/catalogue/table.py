"""The one-step catalogue's entry table, in the order of the package docstring's table, with
the scales of its scaled entries, lookup by name and the per-group adapter."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import numpy as np

from impl import estimators as _ref
from impl.catalogue.entry import (
    CONSTANT_BASELINE,
    PERCENT,
    REWARD_SCALE,
    SELF_BASELINE_FRACTION,
    TEMPERATURE,
    CatalogueEntry,
    Verdict,
)
from impl.catalogue.estimators import (
    _binary_softmax,
    _clamped_log_prob,
    _clip_rewards,
    _dedupe_by_reward,
    _divide_by_n_not_k,
    _dr_grpo,
    _entropy_bonus,
    _epsilon_inside_log,
    _fixed_reward_normalisation,
    _grad_p,
    _group_mean_bessel,
    _grpo_std,
    _imitate_group_best,
    _index_shift,
    _kl_to_uniform,
    _loo_max_baseline,
    _loo_median_baseline,
    _median_including_self,
    _missing_p_term,
    _negated_reinforce,
    _ppo_clip_group_mean,
    _ppo_clip_on_policy,
    _prob_floor_in_score,
    _rank_reward,
    _reinforce_float32,
    _reinforce_returns_list,
    _rewards_rolled,
    _rloo_k1_fallback_self,
    _rloo_wrong_denominator,
    _self_proportional_baseline,
    _stale_batch_baseline,
    _sum_instead_of_mean,
    _temperature_gradient_scale,
    _temperature_mismatch,
    _uniform_p_in_score,
    _zero_gradient,
)
from impl.catalogue.failing import (
    _batch_mean_baseline,
    _calls_sys_exit,
    _detects_full_enumeration,
    _ema_baseline,
    _forces_writeable_inputs,
    _group_mean_advantage_float32,
    _in_place_sort,
    _logit_clamp,
    _mutates_rewards,
    _nan_on_negative,
    _nondeterministic,
    _per_group_only,
    _raises_value_error,
    _random_for_n_at_least_3,
    _read_only_message,
    _reinforce_bfloat16_rewards,
    _reinforce_float16,
    _reinforce_float32_internal,
    _returns_integer,
    _returns_none,
    _reward_clip,
    _rewards_in_percent,
    _rloo_unguarded,
    _softmax_without_max,
    _top5_truncated_softmax,
    _wrong_shape,
)
from impl.errors import InvalidArgument, describe
from impl.types import Estimator, Logits, Rewards, Samples

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
