r"""TRL's configuration space, read from the installed library, and a trainer loss per configuration.

Each configuration is checked with :func:`properties.check_trainer_loss` through TRL's own
``GRPOTrainer._compute_loss``, called unbound on a stub ``self`` (:func:`stub`:
``object.__new__(GRPOTrainer)`` with the attributes ``__init__`` would copy from a
``GRPOConfig``, whose field defaults are read from the dataclass itself), on the checker's
:class:`~properties.trainer.model.TabularCausalLM`.  That model is also a backbone and a linear
LM head, so TRL's own ``add_fused_lm_head`` patches it and ``_get_per_token_logps_and_entropies``
runs unchanged.  TRL's fused head (``ChunkedLogProbFunction``, ``trl/kernels/chunked_logprob.py``)
computes the log-probabilities in float32 whatever the model's dtype, so a strict (float64)
check calls every configuration ``biased`` by TRL's round-off (about ``1e-8 |grad J|``).  The
module declares that precision (:data:`PRECISION`): every row is judged once at float32
round-off (:func:`properties.audit.core.precision_tolerance`, the checker's own rule) and says
so (``at float32 precision: ...`` in the cause, the ``precision`` of the row and the table's
header).  A bias larger than that tolerance is still ``biased``; one below about
``rtol |grad J|`` (``4e-05``) is not seen.

**What is re-expressed.**  trl 1.16.0 computes the advantages inside
``GRPOTrainer._generate_and_score_completions``, which also generates, calls the reward
functions and gathers across processes: it cannot be called alone.  :func:`trl_advantages`
re-expresses its ``sum_then_normalize`` / ``normalize_then_sum`` branch for one reward
function (group mean from :func:`impl.trainer_catalogue.group_mean_advantages`; the standard
deviation from TRL's own ``trl.trainer.utils.nanstd``; ``+ 1e-4``; ``scale_rewards`` in
``group``, ``batch``, ``none``), and ``mask_truncated_completions`` is that method's one line
(a completion whose last token is not EOS gets a zero mask).  With vLLM's importance-sampling
correction (``vllm-is:MODE`` rows), :func:`trl_vllm_importance_sampling_ratio` re-expresses the
ratio the same method computes from ``old_per_token_logps`` and ``sampling_per_token_logps`` (the
four modes, ``vllm_importance_sampling_clip_min``/``_max``), passed to ``_compute_loss`` as
``inputs["importance_sampling_ratio"]``, as TRL passes it.  Everything else is TRL's code.

The trainer's inputs are the ones ``_generate_and_score_completions`` hands the loss:
on-policy, ``old_per_token_logps`` is absent (TRL skips it when ``num_iterations == 1`` and
``steps_per_generation <= gradient_accumulation_steps``; ``_compute_loss`` then uses
``per_token_logps.detach()``), ``sampling_per_token_logps`` is absent (no vLLM; with vLLM, on the
``vllm-is:`` rows, both are present and the responses are the inference engine's:
``check_trainer_loss(sampling_mismatch=True)``),
``ref_per_token_logps`` is present only with ``beta > 0``; ``num_items_in_batch`` is the
response tokens of the whole generation batch over all ranks; ``steps_per_generation`` and
``current_gradient_accumulation_steps`` equal the step's micro-batches ``M`` and
``accelerator.num_processes`` its ranks ``D``, read from the inputs at every call (so the
checker's one-call reference runs with ``M = D = 1``, as a trainer without accumulation would).

**The space, factored** (not a blind product: a biased base makes every row of a product
biased and hides which option is at fault).  The *base* is ``loss_type="dr_grpo"``,
``scale_rewards="none"``, token-level importance sampling, ``beta=0``, on-policy, one
micro-batch: the one combination TRL documents as free of length and difficulty bias.

* ``default``: ``GRPOConfig``'s own defaults (read from the dataclass);
* ``loss:NAME``: each loss type of ``_compute_loss`` (read from its source), on the base,
  with the importance-sampling level TRL asks for (``sequence`` for ``luspo``; ``__init__``
  warns otherwise);
* ``loss:NAME off-policy``: the same with responses drawn from another policy
  (``num_iterations > 1``), which exercises the clipping (``epsilon``, ``epsilon_high``);
* ``accum:NAME``: each loss type with ``M = 2`` micro-batches (gradient accumulation),
  judged **against the same loss called once** on the whole batch: whether TRL's
  ``num_items_in_batch`` / ``current_gradient_accumulation_steps`` logic keeps the expected
  step of one call (the row's cause says so);
* ``scale:MODE``: each ``scale_rewards`` value (read from the source of
  ``_generate_and_score_completions``) other than the base's ``none`` (that is ``loss:dr_grpo``);
* ``is:LEVEL``: each ``importance_sampling_level`` other than the base's ``token``;
* ``kl`` and ``kl no-is-correction``: ``beta = 0.2`` with ``use_bias_correction_kl`` on
  (TRL's default) and off;
* single options on the base: ``normalize_then_sum`` (``multi_objective_aggregation``),
  ``entropy-bonus`` (``entropy_coef``), ``top-entropy`` (``top_entropy_quantile``),
  ``mask-truncated`` (``mask_truncated_completions``), ``temperature``, ``delta`` and
  ``off-policy-mask`` (``off_policy_mask_threshold``; both off-policy, where they act);
* ``vllm-is:MODE``: each ``vllm_importance_sampling_mode`` (read from the source of
  ``_generate_and_score_completions``) with the correction on and the responses drawn from the
  inference engine's policy (the checker's mismatch is small, logit shifts of about 0.3, so
  TRL's default cap ``vllm_importance_sampling_clip_max = 3`` never binds: the verdict is that
  of the ratio itself); ``vllm-is:MODE cap`` the same with a cap that binds (:data:`VLLM_CAP`);
* ``not checked``, with the reason: adaptive entropy, ``sync_ref_model``, several weighted
  reward functions, tool-calling rollouts.

Options that change only generation (``top_p``, ``top_k``, vLLM and continuous batching), the
model's kernels (``use_liger_kernel``, ``cast_lm_head_to_fp32``) or logging are not axes:
they do not enter the loss's gradient given the sampled responses.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import inspect
import textwrap
import types
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from properties.audit.core import Configuration

LIBRARY = "trl"
"""The library's name on the command line."""

EXTRA = "trl"
"""The extra of this package that installs it (``pip install 'ida-verify[trl]'``)."""

KL_COEF = 0.2
"""``beta`` of the KL rows (also the objective's KL coefficient; verl's rows use the same)."""

ENTROPY_COEF = 0.01
"""``entropy_coef`` of the ``entropy-bonus`` row (TRL's default is 0: no bonus)."""

TOP_ENTROPY_QUANTILE = 0.2
"""``top_entropy_quantile`` of the ``top-entropy`` row (the value its paper recommends)."""

TEMPERATURE = 0.7
"""Sampling temperature of the ``temperature`` row (TRL's default is 1)."""

DELTA = 1.5
"""``delta`` (two-sided clipping) of the ``delta`` row: above ``1 + epsilon``, as TRL recommends."""

OFF_POLICY_MASK_THRESHOLD = 0.01
"""``off_policy_mask_threshold`` of the ``off-policy-mask`` row (small, so that it masks)."""

PRECISION = (
    "float32",
    "TRL's fused LM head, ChunkedLogProbFunction in trl/kernels/chunked_logprob.py, accumulates "
    "the log-probabilities in float32",
)
"""The precision TRL's loss computes in, and why: every row is judged once at float32 round-off
(``check_trainer_loss(precision="float32")``: the round-off note's rule on the largest batch
evaluated), not strictly in float64.

``ChunkedLogProbFunction.forward`` keeps its running max, sums of exponentials and target logit
in ``torch.float32`` buffers whatever the input dtype (and its backward accumulates the gradients
in float32), so a float64 check sees TRL's float32 round-off, about ``1e-8 |grad J|``, and calls
every configuration biased.  At float32 tolerance (``rtol = 32 B T eps32`` rounded up, ``4e-05``
on the largest batch the TRL settings evaluate, ``B T = 8`` positions) the verdict is the
estimator's; a bias smaller than about ``rtol |grad J|`` is not seen (it is below what TRL's own
arithmetic can resolve)."""

VLLM_CAP = 1.2
"""``vllm_importance_sampling_clip_max`` of the ``vllm-is:MODE cap`` rows.  The checker's
training-inference mismatch is small (logit shifts of about 0.3): over the problems of
``vllm-is:sequence_mask`` the largest sequence ratio is 2.2, so TRL's default cap of 3 never
binds there, and those rows judge the ratio alone; at 1.2 the cap binds."""

ACCUM_MICRO_BATCHES = 2
"""Micro-batches ``M`` of the ``accum:`` rows."""

BASE: dict[str, str] = {
    "loss_type": "dr_grpo",
    "scale_rewards": "none",
    "importance_sampling_level": "token",
    "beta": "0.0",
}
"""The base every factored row changes one option of (see the module docstring)."""

SETTINGS: dict[str, Any] = {"group_sizes": (2, 4), "max_len": 2, "max_examples": 2}
"""Checker settings of every TRL row on top of :data:`properties.audit.core.AUDIT_SETTINGS`:
group sizes that split into ``M = 2`` micro-batches, the same for every row so that rows compare;
``T <= 2`` and 2 Hypothesis problems after the battery.  TRL's fused LM head is an
``autograd.Function`` whose ``forward`` takes ``ctx`` (no ``setup_context``), which
``torch.func.vmap`` refuses, and there is no supported route around that short of changing
TRL's class: every row runs one batch at a time (about 1.5 ms a batch, nearly all of it TRL's
own ``_compute_loss``), within the looped budget of 256 ordered batches a shape.

``num_prompts`` is the trainer checker's default: ``P = 2`` is asked for only where it fits that
budget, so ``k = 4, T = 2, P = 2`` (``3**8 = 6561`` batches at ``V = 2``) is not asked for, and
the region line lists it as not evaluated without making the row partial.  Every ``P = 1``
cell and ``P = 2`` at ``k = 2`` (both ``T``) and at ``k = 4, T = 1`` is evaluated; a cell asked
for and not reached would still be marked ``not checked`` in the row.  At the verl settings
(``T <= 3``, 5 problems) the matrix did not finish in 18 min on the shared machine."""

ACCUM_GROUP_SIZES: tuple[int, ...] = (2, 4)
"""Group sizes of the ``accum:`` rows (one prompt's ``k`` rows split into ``M`` equal parts)."""

NOT_CHECKED: dict[str, str] = {
    "adaptive-entropy": "use_adaptive_entropy changes entropy_coef between optimizer steps: state across "
    "steps, which a one-step check cannot express",
    "sync-ref-model": "sync_ref_model moves the reference model during training (state across steps)",
    "reward-weights": "several weighted reward functions (reward_weights, normalize_then_sum over them): "
    "the protocol has one scalar reward",
    "tools": "tool-calling rollouts (tools, environment_factory, tool_mask): multi-turn environments",
}
"""Configurations listed as ``not checked``, with the reason."""


def _grpo() -> Any:
    from trl.trainer import grpo_trainer

    return grpo_trainer


def version() -> str:
    """Import TRL's ``GRPOTrainer`` (``ImportError`` when TRL is missing) and return TRL's version."""
    import trl

    _grpo()
    return str(getattr(trl, "__version__", "unknown"))


# --------------------------------------------------------------------------- the space


def compared_strings(fn: Callable[..., Any], attribute: str) -> list[str]:
    """The string constants ``fn``'s source compares ``self.<attribute>`` with, in order, once each.

    >>> class T:
    ...     def f(self):
    ...         if self.mode == "a":
    ...             return 1
    ...         if self.mode in ["b", "c"] or self.other == "x":
    ...             return 2
    >>> compared_strings(T.f, "mode")
    ['a', 'b', 'c']
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    out: list[str] = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Attribute)
            and isinstance(node.left.value, ast.Name)
            and node.left.value.id == "self"
            and node.left.attr == attribute
            and len(node.comparators) == 1
            and isinstance(node.ops[0], ast.Eq | ast.In | ast.NotEq)
        ):
            continue
        right = node.comparators[0]
        items = right.elts if isinstance(right, ast.Tuple | ast.List | ast.Set) else [right]
        for e in items:
            if isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value not in out:
                out.append(e.value)
    return sorted(out, key=lambda s: (s != BASE.get(attribute), out.index(s)))


def loss_types() -> list[str]:
    """The loss types ``GRPOTrainer._compute_loss`` handles (8 in trl 1.16.0), the base first."""
    return compared_strings(_grpo().GRPOTrainer._compute_loss, "loss_type")


def scale_rewards_modes() -> list[str]:
    """The ``scale_rewards`` values ``_generate_and_score_completions`` handles, the base first."""
    return compared_strings(_grpo().GRPOTrainer._generate_and_score_completions, "scale_rewards")


def vllm_importance_sampling_modes() -> list[str]:
    """The ``vllm_importance_sampling_mode`` values ``_generate_and_score_completions`` handles."""
    return compared_strings(
        _grpo().GRPOTrainer._generate_and_score_completions, "vllm_importance_sampling_mode"
    )


def importance_sampling_levels() -> list[str]:
    """The ``importance_sampling_level`` values ``_compute_loss`` handles, the base first."""
    return compared_strings(_grpo().GRPOTrainer._compute_loss, "importance_sampling_level")


def config_defaults() -> dict[str, Any]:
    """Every ``GRPOConfig`` field's default, read from the dataclass (no ``__init__`` is run)."""
    from trl import GRPOConfig

    out: dict[str, Any] = {}
    for f in dataclasses.fields(GRPOConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = None
    return out


def configurations() -> list[Configuration]:
    """TRL's configurations, factored as the module docstring says."""
    out: list[Configuration] = []

    def add(name: str, not_checked: str | None = None, **axes: str) -> None:
        options = {**BASE, **axes} if not_checked is None and name != "default" else axes
        out.append(Configuration(LIBRARY, name, tuple(options.items()), not_checked))

    defaults = config_defaults()
    add("default", **{k: str(defaults[k]) for k in BASE})
    for loss in loss_types():
        level = "sequence" if loss == "luspo" else "token"
        add(f"loss:{loss}", loss_type=loss, importance_sampling_level=level)
        add(f"loss:{loss} off-policy", loss_type=loss, importance_sampling_level=level,
            off_policy="yes")
    for loss in loss_types():
        level = "sequence" if loss == "luspo" else "token"
        add(f"accum:{loss}", loss_type=loss, importance_sampling_level=level,
            micro_batches=str(ACCUM_MICRO_BATCHES))
    for mode in scale_rewards_modes()[1:]:
        add(f"scale:{mode}", scale_rewards=mode)
    for level in importance_sampling_levels()[1:]:
        add(f"is:{level}", importance_sampling_level=level)
    add("kl", beta=str(KL_COEF), use_bias_correction_kl="True")
    add("kl no-is-correction", beta=str(KL_COEF), use_bias_correction_kl="False")
    add("normalize_then_sum", multi_objective_aggregation="normalize_then_sum")
    add("entropy-bonus", entropy_coef=str(ENTROPY_COEF))
    add("top-entropy", top_entropy_quantile=str(TOP_ENTROPY_QUANTILE))
    add("mask-truncated", mask_truncated_completions="True")
    add("temperature", temperature=str(TEMPERATURE))
    add("delta", delta=str(DELTA), off_policy="yes")
    add("off-policy-mask", off_policy_mask_threshold=str(OFF_POLICY_MASK_THRESHOLD),
        off_policy="yes")
    for mode in vllm_importance_sampling_modes():
        add(f"vllm-is:{mode}", vllm_importance_sampling_mode=mode, sampling_mismatch="yes")
    for mode in vllm_importance_sampling_modes():
        add(f"vllm-is:{mode} cap", vllm_importance_sampling_mode=mode, sampling_mismatch="yes",
            vllm_importance_sampling_clip_max=str(VLLM_CAP))
    for name, why in NOT_CHECKED.items():
        add(name, why)
    return out


# --------------------------------------------------------------------------- the stub trainer


class StubAccelerator:
    """What ``_compute_loss`` asks of ``self.accelerator``: one process's view of ``D`` ranks."""

    def __init__(self, num_processes: int) -> None:
        self.num_processes = num_processes
        self.process_index = 0
        self.sync_gradients = True
        self.is_main_process = True

    def autocast(self) -> Any:
        """No mixed precision."""
        return contextlib.nullcontext()

    def gather(self, x: Any) -> Any:
        """This rank's values (metrics only)."""
        return x

    def gather_for_metrics(self, x: Any) -> Any:
        """This rank's values (metrics only)."""
        return x

    def reduce(self, x: Any, reduction: str = "sum") -> Any:
        """This rank's values (metrics only)."""
        return x

    def pad_across_processes(self, x: Any, dim: int = 0, pad_index: Any = 0) -> Any:
        """One rank: nothing to pad."""
        return x


def _parse(value: str, default: Any) -> Any:
    """An axis value as the type of the ``GRPOConfig`` field's default.

    >>> _parse("True", False), _parse("0.2", 0.0), _parse("2", 1), _parse("1.5", None), _parse("x", "y")
    (True, 0.2, 2, 1.5, 'x')
    """
    if isinstance(default, bool):
        return value == "True"
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float) or default is None:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def stub(options: dict[str, Any], micro_batches: int = 1, dp_size: int = 1, vllm: bool = False) -> Any:
    """A ``GRPOTrainer`` with only the attributes ``_compute_loss`` reads (no ``__init__``).

    ``options`` override ``GRPOConfig``'s defaults (field name to value); the attributes are
    copied from the resulting ``args`` as ``GRPOTrainer.__init__`` copies them.  ``vllm``: the
    responses come from vLLM (``use_vllm``) with the importance-sampling correction on.
    """
    args = types.SimpleNamespace(**{**config_defaults(), **options})
    args.scale_rewards = {True: "group", False: "none"}.get(args.scale_rewards, args.scale_rewards)
    args.steps_per_generation = micro_batches
    args.gradient_accumulation_steps = micro_batches
    trainer = object.__new__(_grpo().GRPOTrainer)
    trainer.__dict__.update(
        args=args,
        max_completion_length=args.max_completion_length,
        temperature=args.temperature,
        use_vllm=vllm,
        vllm_importance_sampling_correction=vllm and args.vllm_importance_sampling_correction,
        vllm_importance_sampling_mode=args.vllm_importance_sampling_mode,
        vllm_importance_sampling_clip_min=args.vllm_importance_sampling_clip_min,
        vllm_importance_sampling_clip_max=args.vllm_importance_sampling_clip_max,
        loss_type=args.loss_type,
        multi_objective_aggregation=args.multi_objective_aggregation,
        aux_loss_enabled=False,
        scale_rewards=args.scale_rewards,
        importance_sampling_level=args.importance_sampling_level,
        off_policy_mask_threshold=args.off_policy_mask_threshold,
        mask_truncated_completions=args.mask_truncated_completions,
        top_entropy_quantile=args.top_entropy_quantile,
        entropy_coef=args.entropy_coef,
        use_adaptive_entropy=args.use_adaptive_entropy,
        _entropy_bonus_enabled=args.entropy_coef != 0.0 or args.use_adaptive_entropy,
        _last_world_entropy=float("inf"),
        _entropy_window_stats=None,
        epsilon_low=args.epsilon,
        epsilon_high=args.epsilon_high if args.epsilon_high is not None else args.epsilon,
        beta=args.beta,
        accelerator=StubAccelerator(dp_size),
        current_gradient_accumulation_steps=micro_batches,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        model=types.SimpleNamespace(training=True),
    )
    return trainer


PATCHED = "_ida_verify_fused_lm_head"
"""Marks a model TRL's ``add_fused_lm_head`` has patched (patching again would wrap the wrapper)."""


def trl_loss(
    options: dict[str, Any],
    micro_batches: int = 1,
    dp_size: int = 1,
    off_policy: bool = False,
    vllm: bool = False,
) -> Callable[[Any, dict[str, Any]], Any]:
    """``fn(model, inputs)``: TRL's ``_compute_loss`` on the inputs TRL's trainer would pass it.

    ``max_completion_length`` is the batch's ``T``; on-policy the behaviour log-probs are
    dropped (TRL does not compute them); ``mask_truncated_completions`` zeroes the mask of a
    completion that does not end in EOS (id 0), as ``_generate_and_score_completions`` does.
    ``vllm``: the responses are the inference engine's (``sampling_per_token_logps``), TRL
    computes ``old_per_token_logps`` (the policy's own, on-policy) and
    ``inputs["importance_sampling_ratio"]`` (:func:`trl_vllm_importance_sampling_ratio`).
    """
    trainer = stub(options, micro_batches, dp_size, vllm=vllm)
    from trl.trainer.utils import add_fused_lm_head

    def fn(model: Any, inputs: dict[str, Any]) -> Any:
        # the step's split, as the trainer's loop sets it (the checker's one-call reference: M = D = 1)
        steps = int(inputs["current_gradient_accumulation_steps"])
        trainer.current_gradient_accumulation_steps = steps
        trainer.args.steps_per_generation = trainer.args.gradient_accumulation_steps = steps
        trainer.accelerator.num_processes = int(inputs["dp_size"])
        trainer.max_completion_length = inputs["max_completion_length"]
        if not getattr(model, PATCHED, False):  # once per model (an accum: step calls it M times)
            add_fused_lm_head(model, temperature=trainer.temperature, outputs=("log_probs", "entropy"))
            setattr(model, PATCHED, True)
        given = dict(inputs)
        if vllm:  # _generate_and_score_completions: old log-probs computed, the ratio from them
            given["importance_sampling_ratio"] = importance_ratio(given)
        else:
            given.pop("sampling_per_token_logps", None)
        if not off_policy and not vllm:
            given.pop("old_per_token_logps", None)
        if trainer.beta == 0.0:
            given.pop("ref_per_token_logps", None)
        if trainer.mask_truncated_completions:
            mask = given["completion_mask"]
            last = (mask.sum(-1).long() - 1).clamp(min=0)[:, None]
            ends = given["completion_ids"].gather(1, last)[:, 0] == 0
            given["completion_mask"] = mask * ends[:, None].to(mask.dtype)
        return _grpo().GRPOTrainer._compute_loss(trainer, model, given)

    importance_ratio = trl_vllm_importance_sampling_ratio(
        trainer.vllm_importance_sampling_mode,
        trainer.vllm_importance_sampling_clip_min,
        trainer.vllm_importance_sampling_clip_max,
    )
    fn.__name__ = f"trl_{options.get('loss_type', 'default')}"
    return fn


def trl_vllm_importance_sampling_ratio(
    mode: str, clip_min: float | None, clip_max: float | None
) -> Callable[[dict[str, Any]], Any]:
    """``ratio(inputs)`` as ``_generate_and_score_completions`` computes ``importance_sampling_ratio``.

    Re-expressed from trl 1.16.0 ``grpo_trainer.py`` (``if self.use_vllm and
    self.vllm_importance_sampling_correction:`` after the old log-probs): ``exp((old -
    sampling) * mask)`` with NaN differences set to 0, summed over the response for the
    ``sequence_*`` modes (shape ``(B, 1)``), then clamped to ``[clip_min, clip_max]``
    (``*_truncate``) or set to 0 outside it (``*_mask``).  No tool mask (one turn).  ``old`` is
    the checker's ``old_per_token_logps`` (on-policy: the policy's own, which TRL recomputes
    with the model under ``no_grad``).
    """
    import math

    sequence = mode in ("sequence_mask", "sequence_truncate")
    if mode not in ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"):
        raise ValueError(f"Unknown vLLM importance sampling level: {mode}")

    def ratio(inputs: dict[str, Any]) -> Any:
        import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

        mask = inputs["completion_mask"]
        diff = (inputs["old_per_token_logps"] - inputs["sampling_per_token_logps"]) * mask
        diff = torch.nan_to_num(diff, nan=0.0)
        out = torch.exp(diff.sum(dim=-1, keepdim=True) if sequence else diff)
        if mode.endswith("_truncate"):
            return torch.clamp(out, min=clip_min, max=clip_max)
        low = clip_min if clip_min is not None else -math.inf
        high = clip_max if clip_max is not None else math.inf
        return out.masked_fill((out < low) | (out > high), value=0.0)

    ratio.__name__ = f"trl_vllm_is_{mode}"
    return ratio


# --------------------------------------------------------------------------- advantages


def trl_advantages(
    scale_rewards: str = "none", aggregation: str = "sum_then_normalize"
) -> Callable[[dict[str, Any]], Any]:
    """``advantages(inputs) -> (B,)`` as ``_generate_and_score_completions`` computes them (one reward).

    ``sum_then_normalize``: ``r - mean of the group``, divided by ``nanstd + 1e-4`` of the group
    (``group``), of the batch (``batch``) or not (``none``); ``normalize_then_sum``: each
    group normalised, then the batch.  Groups are contiguous rows, as TRL's ``view(-1, k)``.
    """
    from trl.trainer.utils import nanstd

    from impl.trainer_catalogue import group_mean_advantages

    if scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"Invalid value for scale_rewards: {scale_rewards}")

    def advantages(inputs: dict[str, Any]) -> Any:
        import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

        rewards, k = inputs["rewards"], int(inputs["group_size"])
        expected = torch.arange(rewards.shape[0] // k).repeat_interleave(k)
        if not torch.equal(inputs["group"].cpu().long(), expected):
            raise ValueError("TRL's advantages need each prompt's k rows contiguous")
        grouped = rewards.view(-1, k)
        if aggregation == "normalize_then_sum":
            group_std = nanstd(grouped, dim=1).repeat_interleave(k)
            mean = torch.nanmean(grouped, dim=1).repeat_interleave(k)
            normalised = (rewards - mean) / (group_std + 1e-4)
            return (normalised - torch.nanmean(normalised)) / (nanstd(normalised) + 1e-4)
        adv = group_mean_advantages(inputs)
        if scale_rewards == "group":  # the standard deviation only where it divides (TRL logs it always)
            adv = adv / (nanstd(grouped, dim=1).repeat_interleave(k) + 1e-4)
        elif scale_rewards == "batch":
            adv = adv / (nanstd(rewards).expand_as(rewards) + 1e-4)
        return torch.nan_to_num(adv, nan=0.0)

    advantages.__name__ = f"trl_advantages_{scale_rewards}"
    return advantages


# --------------------------------------------------------------------------- building a check


def build(config: Configuration) -> tuple[Callable[..., Any], dict[str, Any]]:
    """TRL's loss of one configuration and ``check_trainer_loss``'s arguments for it."""
    defaults = config_defaults()
    checker_axes = {"off_policy", "micro_batches", "sampling_mismatch"}
    options = {
        name: _parse(value, defaults[name])
        for name, value in config.axes
        if name not in checker_axes
    }
    unknown = [name for name, _ in config.axes if name not in defaults and name not in checker_axes]
    if unknown:
        raise ValueError(f"not GRPOConfig fields: {', '.join(unknown)}")
    micro_batches = int(config.axis("micro_batches", "1"))
    off_policy = config.axis("off_policy") == "yes"
    vllm = config.axis("sampling_mismatch") == "yes"
    merged = {**defaults, **options}
    fn = trl_loss(options, micro_batches=micro_batches, off_policy=off_policy, vllm=vllm)
    kwargs: dict[str, Any] = {
        "checker": "trainer",
        **SETTINGS,
        "advantages": trl_advantages(
            {True: "group", False: "none"}.get(merged["scale_rewards"], merged["scale_rewards"]),
            merged["multi_objective_aggregation"],
        ),
        "micro_batches": micro_batches,
        "temperature": float(merged["temperature"]),
    }
    if merged["beta"]:
        kwargs["kl_coef"] = float(merged["beta"])
    if off_policy:
        kwargs["off_policy"] = True
    if vllm:
        kwargs["sampling_mismatch"] = True
    if micro_batches > 1:
        kwargs["against"] = "one-call"
        kwargs["group_sizes"] = ACCUM_GROUP_SIZES
    return fn, kwargs


__all__ = [
    "ACCUM_GROUP_SIZES",
    "ACCUM_MICRO_BATCHES",
    "BASE",
    "EXTRA",
    "KL_COEF",
    "LIBRARY",
    "PRECISION",
    "VLLM_CAP",
    "StubAccelerator",
    "build",
    "config_defaults",
    "configurations",
    "importance_sampling_levels",
    "loss_types",
    "scale_rewards_modes",
    "stub",
    "trl_advantages",
    "trl_loss",
    "trl_vllm_importance_sampling_ratio",
    "version",
    "vllm_importance_sampling_modes",
]
