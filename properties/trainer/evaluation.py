r"""The trainer-loss protocol: ``fn(model, inputs) -> loss`` on every batch, with accumulation (private).

:class:`TrainerLoss` is the sequence checker's PyTorch-loss evaluator
(:class:`properties.sequence.torch_loss.TorchLoss`: ``vmap`` over batches, the one-call-per-batch
fallback, the probe, the mutation, finiteness and determinism checks) with another leaf: each
batch gets its own copy of ``theta`` ``(P (N+1), V)``, the parameter of a
:class:`~properties.trainer.model.TabularCausalLM`, and the gradient of the loss with respect to
it *is* the batch's estimate (negated), whatever positions, masks and shifts the loss used.

**The trainer step.**  A batch of ``B = P k`` rows is split into ``dp_size * micro_batches``
contiguous parts of equal size (rank ``r`` holds parts ``r M .. r M + M - 1``); ``fn`` is
called once per part, and the optimiser's gradient is

.. math::

    g = -\frac1D \sum_{r<D} \sum_{m<M} \nabla_\theta\,\mathrm{loss}_{r,m}

(gradients summed over a rank's micro-batches, averaged over ranks, as gradient
accumulation and data-parallel all-reduce do); a loss that wants the mean over
micro-batches divides by ``inputs["current_gradient_accumulation_steps"]`` itself.  Each
part's ``inputs`` holds its rows of :data:`ROW_FIELDS` and the global counts of
:data:`GLOBAL_FIELDS`; ``advantages`` (when the check is given an advantage function) are
computed on the whole batch before the split, as trainers do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch  # type: ignore[import-not-found,unused-ignore]  # this module is imported lazily

from impl.sequence import response_space
from impl.types import FloatArray
from properties.judging.user_code import UserCodeError, name_of, safe_text, type_name
from properties.sequence.evaluation import Evaluation, Sandbox, SequenceFault
from properties.sequence.problems import SequenceProblem, Shape, ShapeData
from properties.sequence.torch_loss import Inputs, TorchLoss
from properties.trainer.model import PromptLayout, TabularCausalLM

ROW_FIELDS = (
    "prompt_ids",
    "prompt_mask",
    "completion_ids",
    "completion_mask",
    "rewards",
    "old_per_token_logps",
    "ref_per_token_logps",
    "sampling_per_token_logps",
    "values",
    "group",
)
"""Per-row tensors of ``inputs`` (TRL's names): left-padded ``prompt_ids``/``prompt_mask``
``(B, W)`` (int64), ``completion_ids`` ``(B, T)`` right-padded with the EOS id,
``completion_mask`` ``(B, T)`` float64 1.0 on response tokens including EOS, ``rewards``
``(B,)``, the behaviour (``old``), reference and inference-engine (``sampling``: the
engine's log-probabilities, equal to ``old`` unless the check has ``sampling_mismatch=True``)
per-token log-probabilities ``(B, T)``, a critic's ``values`` ``(B, T)`` (verl's name,
``data.batch["values"]``: the value of the prefix each position continues, 0 on padding;
0 everywhere unless the check has ``values="random"`` or ``"exact"``), the prompt index
``group`` ``(B,)``; plus ``advantages`` ``(B,)`` when the check computes them, and, with
``tool_tokens=True``, :data:`TOOL_FIELD`."""

TOOL_FIELD = "tool_mask"
"""With ``tool_tokens=True`` (a tool's output at every odd position), ``inputs["tool_mask"]``
``(B, T)`` float64 is 0.0 on the tool's tokens and 1.0 elsewhere, as TRL's ``GRPOTrainer``
passes it: ``completion_mask`` stays the attention mask (no holes: the model must attend to the
tool's output) and the loss mask is ``completion_mask * tool_mask``.  ``num_items_in_batch``
and ``batch_num_tokens`` count that loss mask, as TRL does."""

GLOBAL_FIELDS = (
    "num_items_in_batch",
    "batch_num_tokens",
    "global_batch_size",
    "num_prompts",
    "group_size",
    "max_completion_length",
    "current_gradient_accumulation_steps",
    "dp_size",
    "temperature",
    "beta",
)
"""Scalars of ``inputs``, the same in every part: ``num_items_in_batch`` (TRL) and
``batch_num_tokens`` (verl), the response tokens of the whole step over all ranks (a 0-d
float64 tensor); ``global_batch_size`` the rows of the step (``B``); ``num_prompts``,
``group_size`` (``k``), ``max_completion_length`` (``T``),
``current_gradient_accumulation_steps`` (``M``), ``dp_size`` (``D``), the sampling
``temperature`` and ``beta`` (the objective's KL coefficient)."""


class TrainerInputs(Inputs):
    """Every batch's tensors, with a per-batch copy of ``theta`` as the leaf ``x``."""

    def __init__(self, problems: list[SequenceProblem], data: ShapeData) -> None:
        super().__init__(problems, data)
        s = data.shape
        g = data.batches.shape[0]
        self.x = np.concatenate(
            [
                np.broadcast_to(pr.theta.reshape(-1, s.vocab_size), (g, *pr.theta.reshape(-1, s.vocab_size).shape))
                for pr in problems
            ]
        )
        self.layout = PromptLayout(s.vocab_size, s.max_len, s.num_prompts)
        self.prompt_ids = torch.from_numpy(self.layout.prompt_ids(data.prompt))
        self.prompt_mask = torch.from_numpy(self.layout.prompt_mask(data.prompt))


def _static_check(out: Any) -> None:
    """What can be checked of one micro-batch's loss without reading its value (works under vmap)."""
    if out is None:
        raise SequenceFault("returned-none", "returned None instead of a loss tensor on a micro-batch")
    if not isinstance(out, torch.Tensor):
        raise SequenceFault(
            "bad-type",
            f"returned {safe_text(out, limit=120)} (type={type(out).__name__}) instead of a scalar "
            "tensor on a micro-batch; a Python number or NumPy value carries no gradient",
        )
    if out.numel() != 1:
        raise SequenceFault(
            "wrong-shape",
            f"returned a tensor of shape {tuple(out.shape)} instead of a scalar on a micro-batch",
        )
    if not out.dtype.is_floating_point:
        raise SequenceFault("bad-type", f"returned a {out.dtype} tensor; a loss must be floating-point")


class _Models:
    """Fresh :class:`TabularCausalLM` s for the calls of a chunk, each a copy of one template.

    Building one costs ``nn.Module.__init__`` and six ``nn.Module.__setattr__`` (about 0.3 ms a
    call, measured: a tenth of a fallback call of a trainer loss).  A copy gets the template's
    attributes, its own copy of every container (parameters, buffers, hooks: empty) and of
    every tensor (the node offsets and prompt lengths), and the batch's ``table``: what one
    call does to its model (an attribute set, a hook registered, an in-place write) reaches no
    other call's model, as with a model built per call
    (``tests/test_trainer.py::test_models_are_independent_copies``).
    """

    def __init__(self, layout: PromptLayout, temperature: float) -> None:
        space_shape = (layout.num_prompts, -1, layout.vocab_size)
        rows = response_space(layout.vocab_size, layout.max_len).num_rows
        theta = torch.zeros(layout.num_prompts * rows * layout.vocab_size, dtype=torch.float64)
        self.state = TabularCausalLM(
            theta.reshape(space_shape), layout, temperature=temperature, trainable=False
        ).__dict__

    def __call__(self, table: Any) -> TabularCausalLM:
        model: TabularCausalLM = object.__new__(TabularCausalLM)
        state = model.__dict__
        for name, value in self.state.items():
            if isinstance(value, torch.Tensor):
                value = value.clone()
            elif isinstance(value, dict | set | list):
                value = value.copy()
            state[name] = value
        state["table"] = table
        return model


class TrainerLoss(TorchLoss):
    """``fn(model, inputs) -> scalar`` behind the sandbox, with the trainer's split and sums.

    ``advantage_fn(inputs) -> (B,)``, if given, runs on the whole batch's ``inputs`` before
    the split; its result is ``inputs["advantages"]``.  ``against`` is ``"objective"`` (judge
    against :math:`\nabla J`) or ``"one-call"`` (against the same loss without the split).
    """

    input_names: ClassVar[dict[str, str]] = {
        "tokens": 'inputs["completion_ids"]',
        "mask": 'inputs["completion_mask"]',
        "rewards": 'inputs["rewards"]',
        "old_log_probs": 'inputs["old_per_token_logps"]',
        "ref_log_probs": 'inputs["ref_per_token_logps"]',
        "sampling_log_probs": 'inputs["sampling_per_token_logps"]',
        "values": 'inputs["values"]',
        "group": 'inputs["group"]',
        "table": "the reward table",
    }
    mutation_advice = (
        "a trainer loss must not modify the inputs it is given (copy first: "
        'adv = inputs["rewards"] - baseline, not inputs["rewards"] -= baseline)'
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        sandbox: Sandbox,
        micro_batches: int = 1,
        dp_size: int = 1,
        temperature: float = 1.0,
        advantage_fn: Callable[..., Any] | None = None,
        against: str = "objective",
        use_vmap: bool = True,
    ) -> None:
        super().__init__(fn, sandbox=sandbox, use_vmap=use_vmap)
        self.micro_batches = micro_batches
        self.dp_size = dp_size
        self.temperature = temperature
        self.advantage_fn = advantage_fn
        self.against = against

    def _new_inputs(self, problems: list[SequenceProblem], data: ShapeData) -> Inputs:
        return TrainerInputs(problems, data)

    def _prepare(
        self, t: dict[str, Any], x: Any, lp: Any, inputs: Inputs, kl_coef: float
    ) -> Callable[[], Any]:
        assert isinstance(inputs, TrainerInputs)
        s = inputs.shape
        fresh = {
            "prompt_ids": inputs.prompt_ids.clone(),
            "prompt_mask": inputs.prompt_mask.clone(),
            "num_items_in_batch": t["mask"].sum(),
            "batch_num_tokens": t["mask"].sum(),
        }
        model = TabularCausalLM(
            x.reshape(s.num_prompts, -1, s.vocab_size),
            inputs.layout,
            temperature=self.temperature,
            trainable=False,
        )

        def call() -> Any:
            return self._step(t, fresh, model, inputs.shape, kl_coef)

        return call

    def _calls(
        self, t: dict[str, Any], x: Any, lp: Any, inputs: Inputs, kl_coef: float
    ) -> list[Callable[[], Any]]:
        """:meth:`_prepare` for every batch of a chunk, with the per-call work done per chunk:
        the tensors each call owns are rows of one chunk tensor (a write stays in its row), and
        the models are copies of one (:class:`_Models`)."""
        assert isinstance(inputs, TrainerInputs)
        s = inputs.shape
        n = x.shape[0]
        names = (
            "tokens", "mask", "rewards", "old_log_probs", "ref_log_probs", "sampling_log_probs", "values"
        )
        columns = [t[name].unbind(0) for name in names]
        owned = {
            "prompt_ids": inputs.prompt_ids.expand(n, *inputs.prompt_ids.shape).clone(),
            "prompt_mask": inputs.prompt_mask.expand(n, *inputs.prompt_mask.shape).clone(),
            "num_items_in_batch": t["mask"].sum((1, 2)),
            "batch_num_tokens": t["mask"].sum((1, 2)),
        }
        owned_rows = [owned[name].unbind(0) for name in owned]
        tables = x.reshape(n, s.num_prompts, -1, s.vocab_size).unbind(0)
        models = _Models(inputs.layout, self.temperature)
        step, group = self._step, t["group"]
        out: list[Callable[[], Any]] = []
        for table, row, own in zip(
            tables, zip(*columns, strict=True), zip(*owned_rows, strict=True), strict=True
        ):
            tb = dict(zip(names, row, strict=True))
            tb["group"] = group
            fresh = dict(zip(owned, own, strict=True))
            out.append(functools.partial(step, tb, fresh, models(table), inputs.shape, kl_coef))
        return out

    def _step(
        self,
        t: dict[str, Any],
        fresh: dict[str, Any],
        model: TabularCausalLM,
        s: Shape,
        kl_coef: float,
    ) -> Any:
        """One trainer step on one batch of shape ``s``: ``fresh`` holds the tensors this call
        owns (its ``prompt_ids``, ``prompt_mask`` and token counts), ``model`` the batch's model."""
        rows: dict[str, Any] = {
            "prompt_ids": fresh["prompt_ids"],
            "prompt_mask": fresh["prompt_mask"],
            "completion_ids": t["tokens"],
            "completion_mask": t["mask"],
            "rewards": t["rewards"],
            "old_per_token_logps": t["old_log_probs"],
            "ref_per_token_logps": t["ref_log_probs"],
            "sampling_per_token_logps": t["sampling_log_probs"],
            "values": t["values"],
            "group": t["group"],
        }
        if s.tool_tokens:  # TRL's convention: completion_mask without holes, times tool_mask
            is_eos = (t["tokens"] == 0).to(t["mask"].dtype)
            live = ((torch.cumsum(is_eos, -1) - is_eos) == 0).to(t["mask"].dtype)
            rows["completion_mask"] = live
            rows[TOOL_FIELD] = 1.0 - live + t["mask"]
        scalars: dict[str, Any] = {
            "num_items_in_batch": fresh["num_items_in_batch"],
            "batch_num_tokens": fresh["batch_num_tokens"],
            "global_batch_size": s.rows,
            "num_prompts": s.num_prompts,
            "group_size": s.k,
            "max_completion_length": s.max_len,
            "current_gradient_accumulation_steps": self.micro_batches,
            "dp_size": self.dp_size,
            "temperature": self.temperature,
            "beta": kl_coef,
        }
        if self.advantage_fn is not None:
            rows["advantages"] = self._advantages({**rows, **scalars}, s.rows)
        # the tensors this call owns are not in the chunk's mutation check: their version
        # counters are (a write to a row of a chunk tensor would otherwise surface as autograd's
        # "modified by an inplace operation" at the backward, or not at all)
        versions = _versions(fresh)
        parts = self.dp_size * self.micro_batches
        if parts == 1:
            total = self.fn(model, {**rows, **scalars})
        else:
            size = s.rows // parts
            total = None
            for i in range(parts):
                part = {name: value[i * size : (i + 1) * size] for name, value in rows.items()}
                out = self.fn(model, {**part, **scalars})
                _static_check(out)
                term = out.reshape(()) / self.dp_size
                total = term if total is None else total + term
        which = _written(fresh, versions)
        if which:
            raise SequenceFault("mutated-input", f"changed {which} in place; {self.mutation_advice}")
        return total

    def _advantages(self, inputs: dict[str, Any], rows: int) -> Any:
        """``advantage_fn(inputs)``, checked; a failure is blamed on it (:data:`ADVANTAGE_BLAME`), not the loss.

        Its non-finite values are caught on plain calls (under ``vmap`` a value cannot be
        tested: the non-finite loss there makes plain calls judge, which land here).
        """
        fn = self.advantage_fn
        assert fn is not None
        who = f"was checked with advantages={name_of(fn)}, which"
        # a write shows in a version counter on plain calls (under vmap the loss's mutation
        # check catches it, and its plain re-calls of the batch land here and name this function)
        versions = _versions(inputs)
        try:
            adv = fn(inputs)
        except (KeyboardInterrupt, SequenceFault, UserCodeError):
            raise
        except BaseException as exc:
            err = UserCodeError(exc)
            raise SequenceFault(err.kind, f"{who} {err.describe}; {ADVANTAGE_BLAME}") from None
        which = _written(inputs, versions)
        if which:
            raise SequenceFault(
                "mutated-input",
                f"{who} changed {which} in place (the loss is given the same tensors: copy first, "
                f"r = inputs['rewards'] - mean, not inputs['rewards'] -= mean); {ADVANTAGE_BLAME}",
            )
        if not isinstance(adv, torch.Tensor):
            raise SequenceFault(
                "bad-type",
                f"{who} returned {safe_text(adv, limit=80)} (type={type_name(type(adv))}) instead of "
                f"a tensor of shape ({rows},); {ADVANTAGE_BLAME}",
            )
        if tuple(adv.shape) != (rows,):
            raise SequenceFault(
                "wrong-shape",
                f"{who} returned a tensor of shape {tuple(adv.shape)}, expected ({rows},) (one "
                f"advantage per row of the batch); {ADVANTAGE_BLAME}",
            )
        if not _batched(adv) and not bool(torch.isfinite(adv).all()):
            raise SequenceFault(
                "non-finite",
                f"{who} returned non-finite advantages {safe_text(adv, limit=80)}; {ADVANTAGE_BLAME}",
            )
        return adv

    def evaluate(
        self,
        problems: list[SequenceProblem],
        *,
        rtol: float | None,
        atol: float,
        check_determinism: bool,
    ) -> list[Evaluation]:
        """One :class:`Evaluation` per problem; with ``against="one-call"`` its target is the
        same loss's :math:`E[g]` called once on each whole batch (``M = D = 1``)."""
        out = super().evaluate(problems, rtol=rtol, atol=atol, check_determinism=check_determinism)
        if self.against == "one-call":
            split = (self.micro_batches, self.dp_size)
            self.micro_batches = self.dp_size = 1
            try:
                whole = super().evaluate(problems, rtol=rtol, atol=atol, check_determinism=False)
            finally:
                self.micro_batches, self.dp_size = split
            for ev, ref in zip(out, whole, strict=True):
                ev.target = ref.mean
        return out

    def _per_batch(self, data: ShapeData, gx: Any, problems: int) -> FloatArray:
        s = data.shape
        out: FloatArray = (-gx).numpy().reshape(gx.shape[0], s.num_prompts, -1, s.vocab_size)
        return out

    def _token_weights(self, glp: FloatArray) -> FloatArray | None:
        return None

    def _reads_directly(self, x: Any, tokens: Any, gx: Any, glp: Any) -> bool:
        return False


ADVANTAGE_BLAME = "the advantage function failed, not the loss"
"""How a fault of ``advantages=`` ends: the loss is not to blame (issue 15, F5)."""


def _versions(tensors: Mapping[str, Any]) -> dict[str, int]:
    """The version counter of each plain tensor of ``tensors`` (an in-place write moves it;
    under vmap a batched tensor's does not, and the chunk's own mutation check sees the write)."""
    return {
        n: v._version for n, v in tensors.items() if isinstance(v, torch.Tensor) and not _batched(v)
    }


def _written(tensors: Mapping[str, Any], versions: Mapping[str, int]) -> str:
    """``inputs['a'] and inputs['b']``: the tensors whose counter moved since ``versions`` ('' if none)."""
    return " and ".join(f"inputs[{n!r}]" for n, before in versions.items() if tensors[n]._version != before)


def _batched(t: Any) -> bool:
    """Whether ``t`` is a ``torch.func.vmap`` batched tensor (its values cannot be tested)."""
    probe = getattr(torch._C._functorch, "is_batchedtensor", None)
    return bool(probe(t)) if probe is not None else False


__all__ = ["ADVANTAGE_BLAME", "GLOBAL_FIELDS", "ROW_FIELDS", "TOOL_FIELD", "TrainerInputs", "TrainerLoss"]
