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

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch  # type: ignore[import-not-found,unused-ignore]  # this module is imported lazily

from impl.types import FloatArray
from properties.judging.user_code import UserCodeError, name_of, safe_text, type_name
from properties.sequence.evaluation import Evaluation, Sandbox, SequenceFault
from properties.sequence.problems import SequenceProblem, ShapeData
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
    "group",
)
"""Per-row tensors of ``inputs`` (TRL's names): left-padded ``prompt_ids``/``prompt_mask``
``(B, W)`` (int64), ``completion_ids`` ``(B, T)`` right-padded with the EOS id,
``completion_mask`` ``(B, T)`` float64 1.0 on response tokens including EOS, ``rewards``
``(B,)``, the behaviour (``old``), reference and sampling-engine (``sampling``, equal to
``old`` here) per-token log-probabilities ``(B, T)``, the prompt index ``group`` ``(B,)``;
plus ``advantages`` ``(B,)`` when the check computes them."""

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
        "old_log_probs": 'inputs["old_per_token_logps"] (or "sampling_per_token_logps")',
        "ref_log_probs": 'inputs["ref_per_token_logps"]',
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

        def call() -> Any:
            return self._step(t, x, inputs, kl_coef)

        return call

    def _step(self, t: dict[str, Any], x: Any, inputs: TrainerInputs, kl_coef: float) -> Any:
        s = inputs.shape
        layout = inputs.layout
        model = TabularCausalLM(
            x.reshape(s.num_prompts, -1, s.vocab_size),
            layout,
            temperature=self.temperature,
            trainable=False,
        )
        rows: dict[str, Any] = {
            "prompt_ids": inputs.prompt_ids.clone(),
            "prompt_mask": inputs.prompt_mask.clone(),
            "completion_ids": t["tokens"],
            "completion_mask": t["mask"],
            "rewards": t["rewards"],
            "old_per_token_logps": t["old_log_probs"],
            "ref_per_token_logps": t["ref_log_probs"],
            "sampling_per_token_logps": t["old_log_probs"],
            "group": t["group"],
        }
        scalars: dict[str, Any] = {
            "num_items_in_batch": t["mask"].sum(),
            "batch_num_tokens": t["mask"].sum(),
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
        parts = self.dp_size * self.micro_batches
        if parts == 1:
            return self.fn(model, {**rows, **scalars})
        size = s.rows // parts
        total: Any = None
        for i in range(parts):
            part = {name: value[i * size : (i + 1) * size] for name, value in rows.items()}
            out = self.fn(model, {**part, **scalars})
            _static_check(out)
            term = out.reshape(()) / self.dp_size
            total = term if total is None else total + term
        return total

    def _advantages(self, inputs: dict[str, Any], rows: int) -> Any:
        """``advantage_fn(inputs)``, checked; a failure is blamed on it (:data:`ADVANTAGE_BLAME`), not the loss.

        Its non-finite values are caught on plain calls (under ``vmap`` a value cannot be
        tested: the non-finite loss there makes plain calls judge, which land here).
        """
        fn = self.advantage_fn
        assert fn is not None
        who = f"was checked with advantages={name_of(fn)}, which"
        try:
            adv = fn(inputs)
        except (KeyboardInterrupt, SequenceFault, UserCodeError):
            raise
        except BaseException as exc:
            err = UserCodeError(exc)
            raise SequenceFault(err.kind, f"{who} {err.describe}; {ADVANTAGE_BLAME}") from None
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


def _batched(t: Any) -> bool:
    """Whether ``t`` is a ``torch.func.vmap`` batched tensor (its values cannot be tested)."""
    probe = getattr(torch._C._functorch, "is_batchedtensor", None)
    return bool(probe(t)) if probe is not None else False


__all__ = ["ADVANTAGE_BLAME", "GLOBAL_FIELDS", "ROW_FIELDS", "TrainerInputs", "TrainerLoss"]
