r"""The trainer protocol's diagnosis: :class:`TrainerProber`, registered as ``"trainer"``.

:func:`properties.sequence.diagnosis.diagnose` ``(fn, kwargs, protocol="trainer")`` runs the
sequence diagnosis's probes on a trainer loss ``fn(model, inputs)``: every probe that only
reads :math:`E[g]` (the reward statistics, the constant's factors, pooling, the KL part,
off-policy, the after-the-end node's gradient) runs through
:class:`~properties.trainer.evaluation.TrainerLoss` with the check's own ``micro_batches``,
``dp_size``, ``temperature`` and ``advantages``, on groups whose ``P k`` rows split into the
``M D`` parts (the smallest group size at least the sequence probe's: ``k = 3`` becomes 4 for
``M D = 2``).  Two probes rewrite the loss, and get a trainer version here:

* **token weights** (:func:`as_sequence_loss`).  A trainer loss's per-batch gradient is the
  gradient of the model's table, where the rows of a batch that share a prefix share a node:
  the weight of each ``(row, position)`` cannot be read from it.  So the loss is re-expressed
  as a sequence loss ``batch -> loss`` on a model in which **every row of the batch has its
  own prompt** (prompt id ``V + b`` for row ``b``, the layout of ``B`` prompts) and so its own
  table, whose node on row ``b``'s path at position ``t`` holds ``batch.logits[b, t]`` (every
  other node, the after-the-end node included, holds the constant 0).  The diagnosis then
  routes those logits through ``batch.log_probs`` as for any sequence loss that reads its
  logits (:func:`properties.sequence.rewrites.logits_via_log_probs`), which gives the token
  weights :math:`w_{bt} = -\partial L/\partial \log\pi(y_{bt})`.  The re-expression is kept only
  when it is *faithful*: its :math:`E[g]` must equal the trainer evaluation's on the same
  problem (to :data:`~properties.sequence.rewrites.FAITHFUL_RTOL`); a loss that groups rows by
  comparing ``prompt_ids``, reads the after-the-end node or the whole distribution (an entropy
  bonus) changes it, and the token-weight causes are then listed as not looked for.
* **padding tokens** (:func:`pad_with_token`): ``inputs["completion_ids"]`` gets token 1 where
  ``completion_mask`` is 0 (after EOS).  The model ignores those ids when the loss passes the
  attention mask (a masked position, and every position after EOS, reads the after-the-end
  node, as a real model's masked positions carry no information); a loss that builds its mask
  from ``completion_ids != pad`` changes.

``against="one-call"`` is refused: the diagnosis names causes against :math:`\nabla J`,
whereas such a check asks whether the split changes the one-call loss's :math:`E[g]`; diagnose
the loss with ``against="objective"`` (its causes against :math:`\nabla J`, split or not).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from impl.errors import InvalidArgument, describe
from properties.judging.seam import wrap_evaluator
from properties.sequence.diagnosis import PROBERS, _Prober
from properties.sequence.evaluation import Sandbox
from properties.sequence.results import SequenceReport


@dataclass(frozen=True)
class TrainerOptions:
    """The trainer keywords of ``check_trainer_loss`` the probes use."""

    micro_batches: int = 1
    dp_size: int = 1
    temperature: float = 1.0
    advantages: Callable[..., Any] | None = None

    @property
    def parts(self) -> int:
        """``M D``: the parts a batch is split into (its rows must divide evenly)."""
        return self.micro_batches * self.dp_size


def trainer_options(kwargs: Mapping[str, Any] | None) -> TrainerOptions:
    """The :class:`TrainerOptions` of a check's keywords (or its report's ``settings``).

    >>> trainer_options({"micro_batches": 2, "against": "objective"}).parts
    2
    >>> trainer_options({"against": "one-call"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    impl.errors.InvalidArgument: diagnose(protocol='trainer') names causes against grad J, but ...
    """
    kw = dict(kwargs or {})
    if kw.get("against", "objective") != "objective":
        raise InvalidArgument(
            "diagnose(protocol='trainer') names causes against grad J, but the check was "
            f"{describe('against', kw['against'])}: a one-call check asks whether the split changes "
            "the loss's E[g], which no probe isolates; diagnose with against='objective' instead"
        )
    m, d = kw.get("micro_batches", 1), kw.get("dp_size", 1)
    temp = kw.get("temperature", 1.0)
    adv = kw.get("advantages")
    for name, value in (("micro_batches", m), ("dp_size", d)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"Expected an integer >= 1 but got {describe(name, value)}")
    if isinstance(temp, bool) or not isinstance(temp, int | float) or not (math.isfinite(temp) and temp > 0):
        raise InvalidArgument(f"Expected a finite temperature > 0 but got {describe('temperature', temp)}")
    if adv is not None and not callable(adv):
        raise InvalidArgument(f"Expected a callable or None but got {describe('advantages', adv)}")
    return TrainerOptions(int(m), int(d), float(temp), adv)


def trainer_evaluator(fn: Callable[..., Any], opts: TrainerOptions, sandbox: Any) -> Any:
    """The :class:`~properties.trainer.evaluation.TrainerLoss` of ``fn`` with the check's options."""
    from properties.trainer.evaluation import TrainerLoss

    return TrainerLoss(
        fn,
        sandbox=sandbox,
        micro_batches=opts.micro_batches,
        dp_size=opts.dp_size,
        temperature=opts.temperature,
        advantage_fn=opts.advantages,
    )


def as_sequence_loss(fn: Callable[..., Any], opts: TrainerOptions) -> Callable[..., Any]:
    r"""``fn(model, inputs)`` as a sequence loss ``batch -> loss`` with one table per row.

    Row ``b`` is given prompt ``b`` of a layout of ``B`` prompts; the table
    ``(B, N+1, V)`` is 0 except on row ``b``'s path, where node :math:`n_{bt}` (the context
    of position ``t < |y_b|``) holds ``batch.logits[b, t]``, so that
    :math:`\partial L/\partial\,\mathrm{logits}[b, t]` is the gradient of row ``b`` alone.
    The trainer step (split, advantages, global counts) is
    :meth:`~properties.trainer.evaluation.TrainerLoss._step`'s, on the batch's own fields.
    """
    import torch  # type: ignore[import-not-found,unused-ignore]

    from impl.sequence import response_space
    from properties.sequence.problems import Shape
    from properties.trainer.model import PromptLayout, TabularCausalLM

    stepper = trainer_evaluator(fn, opts, Sandbox())

    def wrapped(batch: Any) -> Any:
        b, t = int(batch.tokens.shape[0]), int(batch.max_len)
        v = int(batch.vocab_size)
        layout = PromptLayout(v, t, b)
        rows = response_space(v, t).num_rows
        own = torch.arange(b)
        prompt_ids = torch.from_numpy(layout.prompt_ids(own.numpy()))
        prompt_mask = torch.from_numpy(layout.prompt_mask(own.numpy()))
        width = layout.prompt_width
        blank = TabularCausalLM(torch.zeros(b, rows, v, dtype=torch.float64), layout, trainable=False)
        ids = torch.cat([prompt_ids, batch.tokens], dim=1)
        seen = torch.cat([prompt_mask, torch.ones_like(batch.tokens)], dim=1)
        nodes = blank.nodes(ids, seen)[:, width - 1 : width - 1 + t]  # (B, T): the context of each token
        live = batch.mask > 0
        end = (own * rows + blank.end_node)[:, None].expand(b, t)
        index = torch.where(live, nodes, end).reshape(-1)
        values = (batch.logits * live[..., None].to(batch.logits.dtype)).reshape(-1, v)
        table = torch.zeros(b * rows, v, dtype=batch.logits.dtype).index_add(0, index, values)
        model = TabularCausalLM(table.reshape(b, rows, v), layout, temperature=opts.temperature, trainable=False)
        fields = {
            "tokens": batch.tokens,
            "mask": batch.mask,
            "rewards": batch.rewards,
            "old_log_probs": batch.old_log_probs,
            "ref_log_probs": batch.ref_log_probs,
            "sampling_log_probs": batch.sampling_log_probs,
            "values": batch.values,
            "group": batch.group,
        }
        counts = batch.mask.sum()
        fresh = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
                 "num_items_in_batch": counts, "batch_num_tokens": counts}
        shape = Shape(v, t, int(batch.group_size), int(batch.num_prompts))
        return stepper._step(fields, fresh, model, shape, float(batch.kl_coef))

    wrapped.__name__ = getattr(fn, "__name__", "loss")
    return wrapped


def pad_with_token(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` on inputs whose ``completion_ids`` hold token 1, not the EOS id, where ``completion_mask`` is 0."""

    def wrapped(model: Any, inputs: dict[str, Any]) -> Any:
        import torch  # type: ignore[import-not-found,unused-ignore]

        ids = inputs["completion_ids"]
        padded = torch.where(inputs["completion_mask"] > 0, ids, torch.ones_like(ids))
        return fn(model, {**inputs, "completion_ids": padded})

    wrapped.__name__ = getattr(fn, "__name__", "loss")
    return wrapped


class TrainerProber(_Prober):
    """The diagnosis's prober for ``fn(model, inputs)``: :class:`~properties.trainer.evaluation.TrainerLoss`
    with the check's options (``settings``: its keywords or its report), groups that split into
    ``M D`` parts, :func:`pad_with_token` and :func:`as_sequence_loss`.  A report's ``settings``
    (JSON) do not hold the ``advantages`` function: diagnose a check that had one from its
    keywords (without them a loss that reads ``inputs["advantages"]`` fails every probe, and
    each is listed in ``skipped``)."""

    def __init__(
        self, loss_fn: Callable[..., Any], protocol: str = "trainer", batched: bool = False, settings: Any = None
    ) -> None:
        super().__init__(loss_fn, "trainer", batched)  # "trainer-loss", a report's protocol, is the same
        given = settings.settings if isinstance(settings, SequenceReport) else settings
        self.options = trainer_options(given if isinstance(given, Mapping) else None)
        self.parts = self.options.parts

    def _new_evaluator(self, fn: Callable[..., Any], protocol: str, sandbox: Sandbox) -> Any:
        if protocol == "trainer":
            return wrap_evaluator(trainer_evaluator(fn, self.options, sandbox), sandbox)
        return super()._new_evaluator(fn, protocol, sandbox)

    def padded(self, fn: Callable[..., Any]) -> Callable[..., Any] | None:
        return pad_with_token(fn)

    def per_row_loss(self) -> Callable[..., Any] | None:
        return as_sequence_loss(self.loss_fn, self.options)


PROBERS["trainer"] = PROBERS["trainer-loss"] = TrainerProber  # the name, and a report's protocol

__all__ = [
    "TrainerOptions",
    "TrainerProber",
    "as_sequence_loss",
    "pad_with_token",
    "trainer_evaluator",
    "trainer_options",
]
