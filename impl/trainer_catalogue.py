r"""Named trainer losses ``fn(model, inputs) -> loss``, correct and planted-wrong, with their verdicts.

Each entry is a trainer's ``compute_loss`` as TRL writes it: it concatenates the left-padded
prompt and the right-padded completion, calls the causal LM with ``logits_to_keep``, drops
the last position's logits (position ``t`` scores token ``t + 1``), divides by the sampling
temperature and gathers the completion tokens' log-probabilities; ``properties.check_trainer_loss``
runs it on :class:`properties.trainer.model.TabularCausalLM` (torch is imported inside each
function, so :mod:`impl` does not depend on it).  The checker sums the gradients of the
micro-batches and averages over ranks; a loss that wants the trainer's division by the number
of accumulation steps does it itself (HF's ``Trainer`` divides the loss of a model that does not
take ``num_items_in_batch``, as TRL's ``GRPOTrainer`` does).

The plumbing bugs are planted in REINFORCE (advantage = reward, token sum per response, mean
over the ``B`` rows: unbiased), whose advantages do not sum to zero over a group, so that a
gradient a bug sends to a node shared by the group's rows (the after-the-end node a prompt
position reads) does not cancel.  With group-mean advantages it does cancel: prompt tokens
left in the mask of a loss with a constant normaliser change nothing (the
``prompt-tokens-in-mask-group-mean`` entry, scaled).

=====================================  ========  ===========================  ================
name                                   expected  scale c(k, T, P)             settings
=====================================  ========  ===========================  ================
trainer-reinforce                      unbiased  -                            P in (1, 2)
trainer-reinforce-micro-dp             unbiased  -                            M = 2, D = 2
trl-dr-grpo                            scaled    (k-1)/(kT)                   TRL dr_grpo
trl-dr-grpo-accumulated                scaled    (k-1)/(kT)                   M = 2
trl-dr-grpo-temperature                scaled    (k-1)/(kT)                   temperature 0.7
trainer-kl-k1-in-reward                unbiased  -                            beta = 0.1
trl-kl-k3-in-loss                      biased    -                            beta = 0.1
double-shift                           biased    -
temperature-in-loss-only               biased    -                            loss / 0.7
temperature-missing-in-loss            biased    -                            temperature 0.7
prompt-tokens-in-mask                  biased    -
prompt-tokens-in-mask-group-mean       scaled    (k-1)/(kT)                   cancels
left-padding-offset                    biased    -                            P = 2
no-attention-mask                      biased    -                            P = 2
token-mean-global-count                biased    -                            M = 2 (vs grad J)
ga-token-mean-per-micro-batch          biased    -                            M = 2, one-call
ga-token-mean-global-count             unbiased  -                            M = 2, one-call
model-called-with-float-ids            error     -
returns-none-on-micro-batch            error     -                            M = 2
mutates-inputs-rewards                 error     -
returns-per-sequence-vector            error     -
=====================================  ========  ===========================  ================

``one-call``: judged against the same loss's expected gradient without the split
(``against="one-call"``), since a token mean is biased against :math:`\nabla J` however it is
accumulated; a global token count makes the accumulation exact, a per-micro-batch mean does not.
Against :math:`\nabla J` (``against="objective"``) the global-count fix is ``biased``, exactly as
``token-mean-global-count`` (the same function) is: the normaliser, the step's number of response
tokens, depends on the sampled lengths, a bias of the token mean that no accumulation removes.

The fields libraries pass (the inference engine's log-probs, TRL's ``tool_mask``, a critic's
``values``) have their entries in :mod:`impl.field_entries`, a catalogue of its own.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from impl.errors import InvalidArgument, describe
from impl.sequence_catalogue import Scale, Verdict

TEMPERATURE = 0.7
"""The sampling temperature of the temperature entries (a common GRPO setting)."""

PPO_CLIP = 0.2
"""TRL's ``epsilon`` (clip range ``[1 - eps, 1 + eps]``)."""

KL_COEF = 0.1
"""The ``beta`` of the KL entries."""


@dataclass(frozen=True)
class TrainerSettings:
    """The keywords an entry is checked with (those of ``properties.check_trainer_loss``)."""

    group_sizes: tuple[int, ...] | None = None
    vocab_size: int = 3
    max_len: int = 3
    num_prompts: tuple[int, ...] = (1, 2)
    kl_coef: float = 0.0
    micro_batches: int = 1
    dp_size: int = 1
    temperature: float = 1.0
    advantages: Callable[..., Any] | None = None
    against: str = "objective"
    tool_tokens: bool = False
    sampling_mismatch: bool = False
    values: str | None = None

    def checker_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``check_trainer_loss`` (the fields libraries pass only when set).

        >>> TrainerSettings(micro_batches=2).checker_kwargs()["micro_batches"]
        2
        >>> "values" in TrainerSettings().checker_kwargs(), TrainerSettings(values="exact").checker_kwargs()["values"]
        (False, 'exact')
        """
        fields: dict[str, Any] = {
            name: value
            for name, value in (
                ("tool_tokens", self.tool_tokens),
                ("sampling_mismatch", self.sampling_mismatch),
                ("values", self.values),
            )
            if value
        }
        return {
            **fields,
            "group_sizes": self.group_sizes,
            "vocab_size": self.vocab_size,
            "max_len": self.max_len,
            "num_prompts": self.num_prompts,
            "kl_coef": self.kl_coef,
            "micro_batches": self.micro_batches,
            "dp_size": self.dp_size,
            "temperature": self.temperature,
            "advantages": self.advantages,
            "against": self.against,
        }


@dataclass(frozen=True)
class TrainerEntry:
    """One named trainer loss with the verdict an exact checker must reach on it."""

    name: str
    fn: Callable[..., Any]
    expected: Verdict
    scale: Scale | None
    settings: TrainerSettings
    category: str
    description: str

    @property
    def derivation(self) -> str:
        """Why the verdict is what it is (the function's docstring)."""
        return (self.fn.__doc__ or "").strip()


# --------------------------------------------------------------------------- TRL's plumbing


def _selective_log_softmax(logits: Any, index: Any) -> Any:
    """TRL's ``selective_log_softmax``: ``log_softmax(logits)[index]`` per position."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    return torch.gather(logits.log_softmax(-1), -1, index.unsqueeze(-1)).squeeze(-1)


def _model_inputs(inputs: dict[str, Any]) -> tuple[Any, Any]:
    """``input_ids = cat(prompt_ids, completion_ids)`` and its attention mask."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"].long()], dim=1)
    return input_ids, mask


def _per_token_logps(model: Any, inputs: dict[str, Any], temperature: float | None = None) -> Any:
    """TRL's ``_get_per_token_logps``: the last ``T + 1`` logits, minus the last, over the temperature."""
    input_ids, mask = _model_inputs(inputs)
    logits_to_keep = inputs["completion_ids"].size(1)
    logits = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=logits_to_keep + 1).logits
    logits = logits[:, :-1, :]
    logits = logits[:, -logits_to_keep:]
    logits = logits / (inputs["temperature"] if temperature is None else temperature)
    return _selective_log_softmax(logits, inputs["completion_ids"])


def _reinforce_from(logps: Any, inputs: dict[str, Any], mask: Any = None) -> Any:
    """``-(R * sum_t logp * mask).sum() / (B / D)``: REINFORCE's mean over the step's rows
    (each rank divides by its share ``B / D`` of them: the ranks' gradients are averaged)."""
    mask = inputs["completion_mask"] if mask is None else mask
    per_seq = (logps * mask).sum(-1)
    return -(inputs["rewards"] * per_seq).sum() / inputs["global_batch_size"] * inputs["dp_size"]


def group_mean_advantages(inputs: dict[str, Any]) -> Any:
    """TRL's advantages with ``scale_rewards="none"``: ``r - mean of the prompt's group``."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    rewards, group = inputs["rewards"], inputs["group"]
    onehot = (group[:, None] == torch.arange(inputs["num_prompts"])[None, :]).to(rewards.dtype)
    means = (onehot.T @ rewards) / onehot.sum(0).clamp(min=1.0)
    return rewards - onehot @ means


def _dr_grpo_loss(logps: Any, inputs: dict[str, Any], mask: Any = None) -> Any:
    """TRL's clipped surrogate, ``loss_type="dr_grpo"``, then the trainer's ``/ accumulation steps``."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    mask = inputs["completion_mask"] if mask is None else mask
    adv = inputs["advantages"][:, None]
    old = inputs["old_per_token_logps"]
    old = old if old.shape == logps.shape else logps.detach()  # the full-sequence variant
    coef_1 = torch.exp(logps - old)
    coef_2 = torch.clamp(coef_1, 1 - PPO_CLIP, 1 + PPO_CLIP)
    per_token_loss = -torch.min(coef_1 * adv, coef_2 * adv)
    loss = (per_token_loss * mask).sum() / (per_token_loss.size(0) * inputs["max_completion_length"])
    return loss / inputs["current_gradient_accumulation_steps"]


# --------------------------------------------------------------------------- correct


def _trainer_reinforce(model: Any, inputs: dict[str, Any]) -> Any:
    r"""REINFORCE through the model: :math:`g = \frac1B\sum_j R_j S_j`, unbiased for every ``P``
    (and under any split: the normaliser is the step's ``B``, the gradients are summed)."""
    return _reinforce_from(_per_token_logps(model, inputs), inputs)


def _trl_dr_grpo(model: Any, inputs: dict[str, Any]) -> Any:
    r"""TRL ``loss_type="dr_grpo"``, ``scale_rewards="none"``, on-policy (ratio 1): the sequence
    catalogue's ``dr-grpo-trl``, :math:`c = (k-1)/(kT)`; split into ``M`` micro-batches of
    ``B/M`` rows each divided by ``M``, the sum is the same."""
    return _dr_grpo_loss(_per_token_logps(model, inputs), inputs)


def _kl_k1_in_reward(model: Any, inputs: dict[str, Any]) -> Any:
    r"""REINFORCE on :math:`R - \beta D` with the detached sequence log-ratio to the reference
    (``beta = inputs["beta"]``): the sequence catalogue's ``kl-k1-in-reward``, unbiased."""
    logps = _per_token_logps(model, inputs)
    mask = inputs["completion_mask"]
    kl = ((logps.detach() - inputs["ref_per_token_logps"]) * mask).sum(-1)
    per_seq = (logps * mask).sum(-1)
    adv = inputs["rewards"] - inputs["beta"] * kl
    return -(adv * per_seq).sum() / inputs["global_batch_size"] * inputs["dp_size"]


def _kl_k3_in_loss(model: Any, inputs: dict[str, Any]) -> Any:
    """TRL's ``beta * (exp(ref - logp) - (ref - logp) - 1)`` per token added to REINFORCE: the
    k3 estimator's gradient is not the sequence KL's (the sequence catalogue's ``kl-k3-in-loss``)."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    logps = _per_token_logps(model, inputs)
    mask = inputs["completion_mask"]
    ref = inputs["ref_per_token_logps"]
    per_token_kl = torch.exp(ref - logps) - (ref - logps) - 1
    per_seq = (logps * mask).sum(-1)
    loss = -(inputs["rewards"] * per_seq).sum() + inputs["beta"] * (per_token_kl * mask).sum()
    return loss / inputs["global_batch_size"] * inputs["dp_size"]


# --------------------------------------------------------------------------- plumbing bugs


def _double_shift(model: Any, inputs: dict[str, Any]) -> Any:
    """Shifts twice: aligns all logits with ``input_ids[:, 1:]`` and then takes the completion's
    logits one position early, so token ``t`` is scored by the context before token ``t - 1``."""
    input_ids, mask = _model_inputs(inputs)
    t = inputs["completion_ids"].size(1)
    logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
    logits = logits[:, -t - 1 : -1] / inputs["temperature"]
    return _reinforce_from(_selective_log_softmax(logits, inputs["completion_ids"]), inputs)


def _temperature_in_loss_only(model: Any, inputs: dict[str, Any]) -> Any:
    """Divides the logits by 0.7 though the responses were sampled at temperature 1: the
    log-probabilities are those of another policy (its score is not the sampler's)."""
    return _reinforce_from(_per_token_logps(model, inputs, temperature=TEMPERATURE), inputs)


def _temperature_missing(model: Any, inputs: dict[str, Any]) -> Any:
    """Sampled at 0.7 but scores the raw logits (temperature 1): the same mistake the other way."""
    return _reinforce_from(_per_token_logps(model, inputs, temperature=1.0), inputs)


def _full_sequence_logps(model: Any, inputs: dict[str, Any]) -> tuple[Any, Any]:
    """Log-probabilities of ``input_ids[:, 1:]`` (prompt included) and ``attention_mask[:, 1:]``."""
    input_ids, mask = _model_inputs(inputs)
    logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1] / inputs["temperature"]
    return _selective_log_softmax(logits, input_ids[:, 1:]), mask[:, 1:].to(logits.dtype)


def _prompt_tokens_in_mask(model: Any, inputs: dict[str, Any]) -> Any:
    """The loss mask is the attention mask: the prompt's own tokens (from the second on) are
    scored too.  Their contexts are not prompt + live prefix, so they read the after-the-end
    node, whose expected gradient :math:`E[R]\\,\\nabla\\log\\pi(\\text{prompt id})` is not 0."""
    logps, mask = _full_sequence_logps(model, inputs)
    return _reinforce_from(logps, inputs, mask)


def _prompt_tokens_in_mask_group_mean(model: Any, inputs: dict[str, Any]) -> Any:
    """The same mask with group-mean advantages and a constant normaliser (TRL ``dr_grpo``): the
    prompt positions of a group's rows read the same node with advantages that sum to zero, so
    their gradient cancels in every batch; :math:`c = (k-1)/(kT)` as without them."""
    logps, mask = _full_sequence_logps(model, inputs)
    return _dr_grpo_loss(logps, inputs, mask)


def _left_padding_offset(model: Any, inputs: dict[str, Any]) -> Any:
    """Takes row ``b``'s completion logits from its own prompt length (``prompt_mask.sum()``),
    forgetting the left padding: a shorter prompt's row is read one position early."""
    import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

    input_ids, mask = _model_inputs(inputs)
    t = inputs["completion_ids"].size(1)
    logits = model(input_ids=input_ids, attention_mask=mask).logits / inputs["temperature"]
    start = inputs["prompt_mask"].sum(-1) - 1
    index = start[:, None] + torch.arange(t)[None, :]
    logits = logits.gather(1, index[..., None].expand(-1, -1, logits.size(-1)))
    return _reinforce_from(_selective_log_softmax(logits, inputs["completion_ids"]), inputs)


def _no_attention_mask(model: Any, inputs: dict[str, Any]) -> Any:
    """Calls the model without ``attention_mask``: a left-padded row attends to its padding."""
    input_ids, _ = _model_inputs(inputs)
    t = inputs["completion_ids"].size(1)
    logits = model(input_ids=input_ids, logits_to_keep=t + 1).logits[:, :-1] / inputs["temperature"]
    return _reinforce_from(_selective_log_softmax(logits, inputs["completion_ids"]), inputs)


# --------------------------------------------------------------------------- accumulation


def _token_mean_global_count(model: Any, inputs: dict[str, Any]) -> Any:
    """``-sum(R logp mask) / num_items_in_batch * dp_size`` (TRL ``dapo``, verl ``token-mean``):
    the step's token mean under any split, but a token mean is biased against grad J."""
    logps = _per_token_logps(model, inputs)
    total = -(inputs["rewards"][:, None] * logps * inputs["completion_mask"]).sum()
    return total / inputs["num_items_in_batch"] * inputs["dp_size"]


def _token_mean_per_micro_batch(model: Any, inputs: dict[str, Any]) -> Any:
    """The gradient-accumulation bug: each micro-batch's own token mean, divided by the number
    of steps; the micro-batch with fewer tokens weighs more, so the step is not the token mean."""
    logps = _per_token_logps(model, inputs)
    mask = inputs["completion_mask"]
    loss = -(inputs["rewards"][:, None] * logps * mask).sum() / mask.sum()
    return loss / inputs["current_gradient_accumulation_steps"]


# --------------------------------------------------------------------------- errors


def _float_ids(model: Any, inputs: dict[str, Any]) -> Any:
    """Passes float ``input_ids``: the model raises (an ``error`` verdict)."""
    input_ids, mask = _model_inputs(inputs)
    return model(input_ids=input_ids.double(), attention_mask=mask).logits.sum()


def _none_on_micro_batch(model: Any, inputs: dict[str, Any]) -> Any:
    """Returns ``None`` (forgot the ``return`` of one branch)."""
    _per_token_logps(model, inputs)
    return None


def _mutates_rewards(model: Any, inputs: dict[str, Any]) -> Any:
    """Centres ``inputs["rewards"]`` in place."""
    inputs["rewards"] -= inputs["rewards"].mean()
    return _reinforce_from(_per_token_logps(model, inputs), inputs)


def _per_sequence_vector(model: Any, inputs: dict[str, Any]) -> Any:
    """Returns the per-sequence losses without reducing them."""
    logps = _per_token_logps(model, inputs)
    return -(inputs["rewards"][:, None] * logps * inputs["completion_mask"]).sum(-1)


# --------------------------------------------------------------------------- the table


def _dr_grpo_scale(k: int, t: int, p: int) -> float:
    return (k - 1) / (k * t)


_ON = TrainerSettings()
_GRPO = TrainerSettings(advantages=group_mean_advantages)
_P2 = TrainerSettings(num_prompts=(2,))
_KL = TrainerSettings(kl_coef=KL_COEF)
_M2 = TrainerSettings(group_sizes=(2, 4), micro_batches=2)
_M2_ONE = TrainerSettings(group_sizes=(2, 4), micro_batches=2, against="one-call")


def _e(
    name: str,
    fn: Callable[..., Any],
    expected: Verdict,
    category: str,
    description: str,
    settings: TrainerSettings = _ON,
    scale: Scale | None = None,
) -> TrainerEntry:
    return TrainerEntry(name, fn, expected, scale, settings, category, description)


TRAINER_CATALOGUE: tuple[TrainerEntry, ...] = (
    _e("trainer-reinforce", _trainer_reinforce, "unbiased", "correct",
       "REINFORCE through the model and TRL's plumbing."),
    _e("trainer-reinforce-micro-dp", _trainer_reinforce, "unbiased", "correct",
       "the same loss split over 2 micro-batches on each of 2 ranks.",
       TrainerSettings(group_sizes=(4,), num_prompts=(1, 2), micro_batches=2, dp_size=2)),
    _e("trl-dr-grpo", _trl_dr_grpo, "scaled", "correct",
       "TRL GRPO, loss_type='dr_grpo', scale_rewards='none'.", _GRPO, _dr_grpo_scale),
    _e("trl-dr-grpo-accumulated", _trl_dr_grpo, "scaled", "correct",
       "the same with 2 micro-batches (each divided by the accumulation steps).",
       TrainerSettings(group_sizes=(2, 4), micro_batches=2, advantages=group_mean_advantages),
       _dr_grpo_scale),
    _e("trl-dr-grpo-temperature", _trl_dr_grpo, "scaled", "correct",
       "sampled at temperature 0.7, logits divided by it in the loss.",
       TrainerSettings(temperature=TEMPERATURE, advantages=group_mean_advantages), _dr_grpo_scale),
    _e("trainer-kl-k1-in-reward", _kl_k1_in_reward, "unbiased", "kl",
       "k1 sequence KL to the reference subtracted from the reward (beta = 0.1).", _KL),
    _e("trl-kl-k3-in-loss", _kl_k3_in_loss, "biased", "kl",
       "TRL's k3 per-token KL in the loss (beta = 0.1).", _KL),
    _e("double-shift", _double_shift, "biased", "plumbing",
       "logits shifted twice: each token scored by the context one token early."),
    _e("temperature-in-loss-only", _temperature_in_loss_only, "biased", "plumbing",
       "logits / 0.7 in the loss, sampling at temperature 1."),
    _e("temperature-missing-in-loss", _temperature_missing, "biased", "plumbing",
       "sampling at 0.7, the loss scores the raw logits.", TrainerSettings(temperature=TEMPERATURE)),
    _e("prompt-tokens-in-mask", _prompt_tokens_in_mask, "biased", "plumbing",
       "the attention mask as loss mask: prompt tokens scored."),
    _e("prompt-tokens-in-mask-group-mean", _prompt_tokens_in_mask_group_mean, "scaled", "plumbing",
       "the same mask under group-mean advantages and dr_grpo: the prompt terms cancel.",
       _GRPO, _dr_grpo_scale),
    _e("left-padding-offset", _left_padding_offset, "biased", "plumbing",
       "completion logits located by each row's own prompt length (left padding forgotten).", _P2),
    _e("no-attention-mask", _no_attention_mask, "biased", "plumbing",
       "model called without attention_mask: left padding attended.", _P2),
    _e("token-mean-global-count", _token_mean_global_count, "biased", "accumulation",
       "sum / num_items_in_batch over 2 micro-batches: exact accumulation of a biased token mean.", _M2),
    _e("ga-token-mean-per-micro-batch", _token_mean_per_micro_batch, "biased", "accumulation",
       "per-micro-batch token mean / steps, against the same loss in one call.", _M2_ONE),
    _e("ga-token-mean-global-count", _token_mean_global_count, "unbiased", "accumulation",
       "the fix, a global token count: accumulation changes nothing.", _M2_ONE),
    _e("model-called-with-float-ids", _float_ids, "error", "error",
       "input_ids cast to float64: the model raises."),
    _e("returns-none-on-micro-batch", _none_on_micro_batch, "error", "error",
       "returns None (on each micro-batch).", _M2),
    _e("mutates-inputs-rewards", _mutates_rewards, "error", "error",
       'inputs["rewards"] -= mean in place.'),
    _e("returns-per-sequence-vector", _per_sequence_vector, "error", "error",
       "returns the (B,) per-sequence losses."),
)
"""Every trainer entry, in the order of the module table."""

_BY_NAME = {entry.name: entry for entry in TRAINER_CATALOGUE}


def get(name: str) -> TrainerEntry:
    """The trainer catalogue entry called ``name``.

    >>> get("double-shift").expected
    'biased'
    """
    if not isinstance(name, str) or name not in _BY_NAME:
        close = difflib.get_close_matches(str(name), list(_BY_NAME), n=5, cutoff=0.5)
        raise InvalidArgument(f"No trainer catalogue entry {describe('name', name)}; close names: {close}")
    return _BY_NAME[name]


__all__ = [
    "KL_COEF",
    "PPO_CLIP",
    "TEMPERATURE",
    "TRAINER_CATALOGUE",
    "TrainerEntry",
    "TrainerSettings",
    "get",
    "group_mean_advantages",
]
