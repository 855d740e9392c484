"""The sequence catalogue's entry table, in the order of the package docstring's table, with
the scales of its scaled entries, lookup by name and the expected constant."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

from impl.errors import InvalidArgument, describe
from impl.sequence_catalogue.baselines import (
    _batch_mean_baseline,
    _batch_whitening,
    _dapo_filter_no_refill,
    _dr_grpo_trl,
    _dr_grpo_verl,
    _grpo_mean_only,
    _grpo_original,
    _grpo_std,
    _reinforce_seq_mean_token_sum,
    _reinforce_sum_over_prompts,
    _remax_greedy_baseline,
    _remax_teacher_forced_argmax,
    _returns_forward_cumsum,
    _reward_at_last_column,
    _reward_to_go_discounted,
    _reward_to_go_terminal,
    _rloo,
    _rloo_group_index,
    _rloo_verl_dict_loop,
    _seq_mean_token_mean,
    _seq_mean_token_sum_norm,
    _token_mean,
)
from impl.sequence_catalogue.entry import (
    KL_COEF,
    Protocol,
    Scale,
    SequenceEntry,
    SequenceSettings,
    SettledBy,
    Verdict,
)
from impl.sequence_catalogue.failing import (
    _grpo_std_no_eps,
    _mutates_rewards_in_place,
    _nondeterministic_dropout,
    _raises_not_implemented,
    _returns_per_sequence_vector,
    _returns_python_float,
)
from impl.sequence_catalogue.importance import (
    _gspo_on_policy,
    _ppo_clip,
    _ppo_clip_off_policy,
    _ppo_ratio_old_not_detached,
    _sequence_is,
    _sequence_is_truncated,
    _tis_token,
)
from impl.sequence_catalogue.kl import (
    _entropy_bonus,
    _kl_k1_in_loss,
    _kl_k1_in_reward,
    _kl_k1_in_reward_group_mean,
    _kl_k1_in_reward_token_level,
    _kl_k2_in_loss,
    _kl_k2_in_reward,
    _kl_k3_in_loss,
    _kl_k3_in_reward,
)
from impl.sequence_catalogue.masking import (
    _gae_lambda_095,
    _gae_lambda_one,
    _logprobs_shifted_by_one,
    _mask_counts_padding,
    _mask_from_first_eos,
    _mask_tokens_ne_pad,
    _mismatch_sequence_is,
    _mismatch_sequence_tis,
    _mismatch_uncorrected,
    _tool_tokens_masked,
    _tool_tokens_sequence_is_kl,
    _tool_tokens_trained_on,
)
from impl.sequence_catalogue.weights import (
    _w_counts_padding,
    _w_dr_grpo,
    _w_grpo_std,
    _w_kl_k1_in_reward,
    _w_kl_k3_in_loss,
    _w_mask_tokens_ne_pad,
    _w_mutates_rewards,
    _w_nan_std_no_eps,
    _w_nondeterministic,
    _w_raises,
    _w_reinforce,
    _w_returns_vector,
    _w_reward_to_go_terminal,
    _w_rloo,
    _w_sequence_is,
    _w_tis_token,
    _w_token_mean,
)

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
