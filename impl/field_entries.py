r"""Catalogue entries for the fields libraries pass (issue 16, item 3): the trainer protocol and token weights.

The sequence catalogue (:mod:`impl.sequence_catalogue`) has losses on ``SequenceBatch`` for the
inference engine's log-probs (``sampling_mismatch``), masks with holes (``tool_tokens``) and a
critic's values (``values``).  These are the same fields on the two other protocols:

* :data:`FIELD_TRAINER_ENTRIES` (:class:`~impl.trainer_catalogue.TrainerEntry`): losses
  ``fn(model, inputs)`` that read ``inputs["sampling_per_token_logps"]``, TRL's
  ``inputs["tool_mask"]`` and ``inputs["values"]``, one correct and at least one wrong per
  field, checked by ``properties.check_trainer_loss``;
* :data:`FIELD_WEIGHT_ENTRIES` (:class:`~impl.sequence_catalogue.SequenceEntry`, protocol
  ``"weights"``): NumPy token weights that ask for ``values`` or ``sampling_log_probs`` by
  keyword, checked by ``properties.check_token_weights``.

Their verdicts are confirmed by the brute-force oracles of ``tests/sequence/``
(``test_field_entries.py``), which checks each with the options its field needs.  They are a
catalogue of their own, beside :mod:`impl.trainer_catalogue` and :mod:`impl.sequence_catalogue`
(the generic catalogue tests and the diagnosis, which does not model these fields, run on those
two): this module imports the trainer catalogue's plumbing, so the trainer table cannot list
them without an import circle.

======================================  ========  ======================================
name                                    expected  settings
======================================  ========  ======================================
trainer-mismatch-sequence-is            unbiased  sampling_mismatch
trl-vllm-is-token-truncate              biased    sampling_mismatch (TRL's token_truncate)
trainer-mismatch-uncorrected            biased    sampling_mismatch
trainer-tool-mask                       unbiased  tool_tokens
trainer-tool-tokens-trained-on          biased    tool_tokens (tool_mask ignored)
trainer-tool-mask-as-attention          biased    tool_tokens (the loss mask to the model)
trainer-gae-lambda-1-random-values      unbiased  values="random"
trainer-gae-lambda-0.95-random-values   biased    values="random"
trainer-gae-lambda-0.95-exact-values    unbiased  values="exact"
w-gae-lambda-1-random-values            unbiased  values="random" (weights)
w-gae-lambda-0.95-random-values         biased    values="random" (weights)
w-gae-lambda-0.95-exact-values          unbiased  values="exact" (weights)
w-mismatch-sequence-is                  unbiased  sampling_mismatch (weights)
w-mismatch-uncorrected                  biased    sampling_mismatch (weights)
======================================  ========  ======================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from impl.sequence_catalogue import GAE_LAMBDA, SequenceEntry, SequenceSettings
from impl.trainer_catalogue import (
    TrainerEntry,
    TrainerSettings,
    _model_inputs,
    _per_token_logps,
    _reinforce_from,
    _selective_log_softmax,
)

TRL_IS_CLIP_MAX = 3.0
"""TRL's ``vllm_importance_sampling_clip_max`` default (``GRPOConfig``)."""

FIELD_GROUP_SIZES = (2, 3)
"""The trainer entries' group sizes: with ``P`` in (1, 2) every ``(k, T, P)`` up to ``T = 3``
fits the batch budget, so a pass is a full check, not a partial one."""


# --------------------------------------------------------------------------- the inference engine


def _sampling_log_ratio(inputs: dict[str, Any], logps: Any) -> Any:
    """``(old - sampling) * mask`` per token (TRL's ``per_token_logps_diff``; ``old`` is the
    current policy's detached log-probs on-policy)."""
    old = inputs["old_per_token_logps"]
    return (old - inputs["sampling_per_token_logps"]) * inputs["completion_mask"]


def _trainer_mismatch_sequence_is(model: Any, inputs: dict[str, Any]) -> Any:
    r"""REINFORCE weighted by the full sequence ratio :math:`w = \pi_{\mathrm{old}}(y)/\pi_s(y)`
    (detached): :math:`E_s[w R S] = E_{\mathrm{old}}[R S] = \nabla J` on-policy; unbiased for
    every ``P`` (REINFORCE needs no baseline)."""
    logps = _per_token_logps(model, inputs)
    weight = _sampling_log_ratio(inputs, logps).sum(-1).exp().detach()
    per_seq = (logps * inputs["completion_mask"]).sum(-1)
    loss = -(weight * inputs["rewards"] * per_seq).sum()
    return loss / inputs["global_batch_size"] * inputs["dp_size"]


def _trl_vllm_is_token_truncate(model: Any, inputs: dict[str, Any]) -> Any:
    r"""TRL's ``vllm_importance_sampling_mode="token_truncate"``: each token's loss times
    :math:`\min(\pi_{\mathrm{old}}(y_t\mid y_{<t})/\pi_s(y_t\mid y_{<t}), 3)`.

    A per-token ratio corrects the distribution of token ``t`` given its prefix, but the prefix
    and the rest of the response (on which the reward depends) stay the engine's:
    :math:`E_s[\rho_t R s_t] = \sum \pi_s(y_{<t})\,\pi(y_t\mid y_{<t})\,E_s[R\mid y_{\le t}]\,s_t`,
    not :math:`\nabla J` once :math:`\pi_s \ne \pi`: biased (whether or not the cap binds)."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    logps = _per_token_logps(model, inputs)
    ratio = torch.clamp(_sampling_log_ratio(inputs, logps).exp(), max=TRL_IS_CLIP_MAX).detach()
    per_token = -inputs["rewards"][:, None] * logps * ratio
    loss = (per_token * inputs["completion_mask"]).sum()
    return loss / inputs["global_batch_size"] * inputs["dp_size"]


def _trainer_reinforce_uncorrected(model: Any, inputs: dict[str, Any]) -> Any:
    r"""REINFORCE that ignores ``sampling_per_token_logps``: :math:`E_s[R S] =
    \sum_y \pi_s(y) R(y) \nabla\log\pi(y) \ne \nabla J`: biased as soon as the engine differs."""
    return _reinforce_from(_per_token_logps(model, inputs), inputs)


# --------------------------------------------------------------------------- tool tokens


def _loss_mask(inputs: dict[str, Any]) -> Any:
    """TRL's loss mask: ``completion_mask * tool_mask`` (``completion_mask`` without a tool mask)."""
    mask = inputs["completion_mask"]
    return mask * inputs["tool_mask"] if "tool_mask" in inputs else mask


def _trainer_tool_mask(model: Any, inputs: dict[str, Any]) -> Any:
    r"""REINFORCE on TRL's loss mask ``completion_mask * tool_mask``, the model called with the
    attention mask ``completion_mask``: the score sums the policy's tokens only,
    :math:`S = \sum_{t\notin H} s_t`, the environment's factors do not depend on
    :math:`\theta`: unbiased (the sequence catalogue's ``tool-tokens-masked``)."""
    logps = _per_token_logps(model, inputs)
    return _reinforce_from(logps, inputs, _loss_mask(inputs))


def _trainer_tool_tokens_trained_on(model: Any, inputs: dict[str, Any]) -> Any:
    r"""REINFORCE on ``completion_mask`` alone (``tool_mask`` ignored): the tool's tokens are
    scored under the policy's logits at the prefixes the tool continues, whose :math:`\nabla J`
    is 0: biased (the sequence catalogue's ``tool-tokens-trained-on``)."""
    return _reinforce_from(_per_token_logps(model, inputs), inputs)


def _trainer_tool_mask_as_attention(model: Any, inputs: dict[str, Any]) -> Any:
    r"""Calls the model with the *loss* mask (``completion_mask * tool_mask``) as its attention
    mask: the model no longer sees the tool's output, so every later position is scored from a
    context without it (the wrong prefix, or none: the after-the-end node): biased, though the
    loss mask itself is right."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    input_ids, _ = _model_inputs(inputs)
    loss_mask = _loss_mask(inputs)
    attention = torch.cat([inputs["prompt_mask"], loss_mask.long()], dim=1)
    t = inputs["completion_ids"].size(1)
    logits = model(input_ids=input_ids, attention_mask=attention, logits_to_keep=t + 1).logits
    logits = logits[:, :-1] / inputs["temperature"]
    logps = _selective_log_softmax(logits, inputs["completion_ids"])
    return _reinforce_from(logps, inputs, loss_mask)


# --------------------------------------------------------------------------- a critic


def _gae(inputs: dict[str, Any], lam: float) -> Any:
    r"""verl's ``compute_gae_advantage_return`` with :math:`\gamma = 1` on ``inputs["values"]``:
    the reward on the last response token, :math:`\delta_t = r_t + V_{t+1} - V_t`,
    :math:`A_t = \sum_l \lambda^l \delta_{t+l}` (detached)."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    mask = inputs["completion_mask"]
    rewards = inputs["rewards"]
    last = (torch.arange(mask.shape[-1])[None, :] == (mask.sum(-1).long() - 1)[:, None])
    token_rewards = last.to(rewards.dtype) * rewards[:, None]
    values = inputs["values"] * mask
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=-1)
    deltas = token_rewards + next_values - values
    running = torch.zeros_like(deltas[:, 0])
    out = []
    for t in reversed(range(mask.shape[-1])):
        running = deltas[:, t] + lam * running
        out.append(running)
    return torch.stack(out[::-1], dim=-1).detach()


def _gae_loss(model: Any, inputs: dict[str, Any], lam: float) -> Any:
    logps = _per_token_logps(model, inputs)
    per_token = -_gae(inputs, lam) * logps * inputs["completion_mask"]
    return per_token.sum() / inputs["global_batch_size"] * inputs["dp_size"]


def _trainer_gae_lambda_one(model: Any, inputs: dict[str, Any]) -> Any:
    r"""PPO with a critic, GAE :math:`\gamma = \lambda = 1`: :math:`A_t = R - V(y_{<t})`, a
    baseline of the prefix only, so unbiased for *any* values (the sequence catalogue's
    ``gae-lambda-1-random-values``)."""
    return _gae_loss(model, inputs, 1.0)


def _trainer_gae_lambda_095(model: Any, inputs: dict[str, Any]) -> Any:
    r"""GAE with :math:`\lambda = 0.95`: with the exact values :math:`E[\delta_u\mid y_{<u}] = 0`
    and :math:`E[A_t s_t] = E[(Q - V) s_t]` (unbiased); with a wrong critic the later deltas
    keep a mean that depends on :math:`y_t`: biased (the sequence catalogue's
    ``gae-lambda-0.95-*``)."""
    return _gae_loss(model, inputs, GAE_LAMBDA)


# --------------------------------------------------------------------------- token weights


def _w_gae(rewards: Any, mask: Any, values: Any, lam: float) -> Any:
    """GAE (gamma = 1) advantages ``(..., B, T)`` from the terminal reward and ``values``."""
    t = mask.shape[-1]
    last = np.arange(t) == (mask.sum(-1).astype(np.int64) - 1)[..., None]
    token_rewards = last * rewards[..., None]
    v = values * mask
    next_v = np.concatenate([v[..., 1:], np.zeros_like(v[..., :1])], axis=-1)
    deltas = token_rewards + next_v - v
    out = np.zeros_like(deltas)
    running = np.zeros_like(deltas[..., 0])
    for i in reversed(range(t)):
        running = deltas[..., i] + lam * running
        out[..., i] = running
    return out


def _w_gae_lambda_one(rewards: Any, mask: Any, log_probs: Any, values: Any) -> Any:
    r"""GAE :math:`\lambda = 1` as token weights, :math:`w_{jt} = A_{jt} m_{jt} / B`, ``values``
    asked for by keyword: :math:`A_t = R - V(y_{<t})`, unbiased for any values."""
    return _w_gae(rewards, mask, values, 1.0) * mask / rewards.shape[-1]


def _w_gae_lambda_095(rewards: Any, mask: Any, log_probs: Any, values: Any) -> Any:
    r"""GAE :math:`\lambda = 0.95` as token weights: unbiased with the exact values only."""
    return _w_gae(rewards, mask, values, GAE_LAMBDA) * mask / rewards.shape[-1]


def _w_rloo(rewards: Any) -> Any:
    """Leave-one-out advantages over the last axis (one prompt: the batch is the group)."""
    k = rewards.shape[-1]
    return rewards - (rewards.sum(-1, keepdims=True) - rewards) / (k - 1)


def _w_mismatch_sequence_is(
    rewards: Any, mask: Any, log_probs: Any, old_log_probs: Any, sampling_log_probs: Any
) -> Any:
    r"""RLOO weighted by :math:`\pi_{\mathrm{old}}(y)/\pi_s(y)` over the masked positions, from
    ``old_log_probs`` and ``sampling_log_probs`` asked for by keyword: unbiased at ``P = 1``
    (the sequence catalogue's ``mismatch-sequence-is``)."""
    weight = np.exp(((old_log_probs - sampling_log_probs) * mask).sum(-1))
    return (weight * _w_rloo(rewards))[..., None] * mask / rewards.shape[-1]


def _w_mismatch_uncorrected(rewards: Any, mask: Any, log_probs: Any) -> Any:
    r"""RLOO on the engine's responses without the correction: the score weighted by
    :math:`\pi_s` instead of :math:`\pi`: biased."""
    return _w_rloo(rewards)[..., None] * mask / rewards.shape[-1]


# --------------------------------------------------------------------------- the tables

_MISMATCH = TrainerSettings(group_sizes=FIELD_GROUP_SIZES, sampling_mismatch=True)
_TOOL = TrainerSettings(group_sizes=FIELD_GROUP_SIZES, tool_tokens=True)
_RANDOM = TrainerSettings(group_sizes=FIELD_GROUP_SIZES, values="random")
_EXACT = TrainerSettings(group_sizes=FIELD_GROUP_SIZES, values="exact")


def _t(name: str, fn: Any, expected: Any, category: str, description: str, settings: TrainerSettings) -> TrainerEntry:
    return TrainerEntry(name, fn, expected, None, settings, category, description)


FIELD_TRAINER_ENTRIES: tuple[TrainerEntry, ...] = (
    _t("trainer-mismatch-sequence-is", _trainer_mismatch_sequence_is, "unbiased", "inference engine",
       "REINFORCE times exp(sum (old - sampling) * mask), detached.", _MISMATCH),
    _t("trl-vllm-is-token-truncate", _trl_vllm_is_token_truncate, "biased", "inference engine",
       "TRL's token_truncate correction: a per-token ratio capped at 3.", _MISMATCH),
    _t("trainer-mismatch-uncorrected", _trainer_reinforce_uncorrected, "biased", "inference engine",
       "REINFORCE on the engine's responses, sampling_per_token_logps ignored.", _MISMATCH),
    _t("trainer-tool-mask", _trainer_tool_mask, "unbiased", "tool tokens",
       "loss mask completion_mask * tool_mask, attention mask completion_mask (TRL).", _TOOL),
    _t("trainer-tool-tokens-trained-on", _trainer_tool_tokens_trained_on, "biased", "tool tokens",
       "tool_mask ignored: the tool's tokens are trained on.", _TOOL),
    _t("trainer-tool-mask-as-attention", _trainer_tool_mask_as_attention, "biased", "tool tokens",
       "the loss mask passed as the attention mask: the model does not see the tool's output.", _TOOL),
    _t("trainer-gae-lambda-1-random-values", _trainer_gae_lambda_one, "unbiased", "critic",
       "GAE gamma = lambda = 1 on inputs['values'] (a random critic).", _RANDOM),
    _t("trainer-gae-lambda-0.95-random-values", _trainer_gae_lambda_095, "biased", "critic",
       "GAE lambda = 0.95 with a random critic.", _RANDOM),
    _t("trainer-gae-lambda-0.95-exact-values", _trainer_gae_lambda_095, "unbiased", "critic",
       "GAE lambda = 0.95 with the exact values.", _EXACT),
)
"""The trainer entries, in the order of the module table."""


def _w(name: str, fn: Any, expected: Any, description: str, settings: SequenceSettings) -> SequenceEntry:
    return SequenceEntry(name, fn, "weights", expected, None, settings, "fields", "derived+oracle", description)


_W_RANDOM = SequenceSettings(batched=True, values="random")
_W_EXACT = SequenceSettings(batched=True, values="exact")
_W_MISMATCH = SequenceSettings(batched=True, sampling_mismatch=True)

FIELD_WEIGHT_ENTRIES: tuple[SequenceEntry, ...] = (
    _w("w-gae-lambda-1-random-values", _w_gae_lambda_one, "unbiased",
       "GAE lambda = 1 weights from values=... (a random critic).", _W_RANDOM),
    _w("w-gae-lambda-0.95-random-values", _w_gae_lambda_095, "biased",
       "GAE lambda = 0.95 weights, a random critic.", _W_RANDOM),
    _w("w-gae-lambda-0.95-exact-values", _w_gae_lambda_095, "unbiased",
       "GAE lambda = 0.95 weights, the exact values.", _W_EXACT),
    _w("w-mismatch-sequence-is", _w_mismatch_sequence_is, "unbiased",
       "RLOO weights times pi_old(y) / pi_sampler(y) from sampling_log_probs=...", _W_MISMATCH),
    _w("w-mismatch-uncorrected", _w_mismatch_uncorrected, "biased",
       "RLOO weights on the engine's responses, uncorrected.", _W_MISMATCH),
)
"""The token-weight entries, in the order of the module table."""


__all__ = [
    "FIELD_GROUP_SIZES",
    "FIELD_TRAINER_ENTRIES",
    "FIELD_WEIGHT_ENTRIES",
    "TRL_IS_CLIP_MAX",
]
