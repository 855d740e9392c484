r"""A brute-force oracle for trainer losses ``fn(model, inputs)`` (test code only).

It extends :mod:`sequence_oracle` (whose problems, batches, behaviour probabilities, exact
:math:`\nabla J` and verdicts it reuses) to the trainer protocol, and shares no code with
``properties.trainer``: its causal LM (:class:`OracleLM`) reads every context by a plain Python
loop over the attended ids, and its inputs (:func:`trainer_inputs`) are assembled from the
oracle's :class:`~properties.sequence.batch.SequenceBatch` by the documented conventions alone
(``properties.trainer.evaluation.ROW_FIELDS``/``GLOBAL_FIELDS``, TRL's names):

* prompt ``p`` is the id ``V + p`` repeated ``2 + p % 2`` times, left-padded with 0 (mask 0);
* the logits at position ``i`` are ``temperature * theta[p, node]`` where position ``i`` is
  attended and the attended ids up to ``i`` are the whole prompt ``p`` followed by a live prefix
  (the node), else the row's after-the-end node (``properties.trainer.model``'s documented
  convention); the ids of the prompts get the constant logit ``PROMPT_LOGIT``;
* ``completion_mask`` is 1.0 up to and including the first EOS (no holes); with tool tokens
  ``tool_mask`` is 0.0 at the tool's positions of the response and 1.0 elsewhere;
* the batch of ``B`` rows is split into ``dp_size * micro_batches`` contiguous parts, the
  gradient is summed over a rank's parts and averaged over ranks: ``g = -(1/D) sum grad``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sequence_oracle import (  # noqa: E402
    OracleResult,
    Problem,
    Space,
    _expectation,
    _Fault,
    build_batch,
    make_space,
)

PROMPT_LOGIT = -1.0e4
"""The logit of a prompt id at every position (impossible under any policy)."""


def prompt_ids(vocab_size: int, num_prompts: int, p: int) -> tuple[list[int], list[int]]:
    """Prompt ``p``'s left-padded ids and mask, padded to the longest prompt of the batch."""
    width = max(2 + q % 2 for q in range(num_prompts))
    n = 2 + p % 2
    return [0] * (width - n) + [vocab_size + p] * n, [0] * (width - n) + [1] * n


class OracleLM:
    """``theta`` ``(P, N+1, V)`` as a causal LM, one context at a time."""

    def __init__(self, theta: Any, space: Space, num_prompts: int, temperature: float) -> None:
        self.theta, self.space, self.num_prompts, self.temperature = theta, space, num_prompts, temperature

    def _node(self, context: list[int], p: int) -> int:
        """The node a context of prompt ``p``'s row reads."""
        v = self.space.vocab_size
        n = 2 + p % 2
        head, rest = context[:n], context[n:]
        live = (
            head == [v + p] * n
            and all(1 <= i < v for i in rest)
            and len(rest) < self.space.max_len
        )
        return self.space.node_index(tuple(rest)) if live else self.space.after_the_end

    def __call__(self, input_ids: Any = None, attention_mask: Any = None, logits_to_keep: int = 0, **_: Any) -> Any:
        ids = input_ids.tolist()
        mask = [[1] * len(r) for r in ids] if attention_mask is None else attention_mask.tolist()
        prompt_of, node_of = [], []
        v = self.space.vocab_size
        for row, row_mask in zip(ids, mask, strict=True):
            # the row's prompt: the prompt id it attends to (its after-the-end node if none)
            p = max([int(i) - v for i, m in zip(row, row_mask, strict=True) if m and i >= v], default=0)
            p = min(p, self.num_prompts - 1)
            context: list[int] = []
            ns = []
            for i, m in zip(row, row_mask, strict=True):
                if m:
                    context.append(int(i))
                # a position whose own id is masked reads the after-the-end node (as documented)
                ns.append(self._node(context, p) if m else self.space.after_the_end)
            prompt_of.append([p] * len(row))
            node_of.append(ns)
        logits = self.theta[torch.tensor(prompt_of), torch.tensor(node_of)] * self.temperature
        fixed = torch.full((*logits.shape[:-1], self.num_prompts), PROMPT_LOGIT, dtype=logits.dtype)
        logits = torch.cat([logits, fixed], dim=-1)
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        return SimpleNamespace(logits=logits)


def trainer_inputs(
    problem: Problem, space: Space, rows: Sequence[int], *, micro_batches: int, dp_size: int, temperature: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The per-row and the global inputs of the batch ``rows`` (see the module docstring)."""
    batch = build_batch(problem, space, rows, torch.tensor(problem.theta, dtype=torch.float64))
    group = batch.group.tolist()
    prompts = [prompt_ids(problem.vocab_size, problem.num_prompts, p) for p in group]
    attention = torch.tensor([space.mask(r) for r in rows], dtype=torch.float64)
    per_row: dict[str, Any] = {
        "prompt_ids": torch.tensor([ids for ids, _ in prompts], dtype=torch.int64),
        "prompt_mask": torch.tensor([m for _, m in prompts], dtype=torch.int64),
        "completion_ids": batch.tokens,
        "completion_mask": attention,
        "rewards": batch.rewards,
        "old_per_token_logps": batch.old_log_probs,
        "ref_per_token_logps": batch.ref_log_probs,
        "sampling_per_token_logps": batch.sampling_log_probs,
        "values": batch.values,
        "group": batch.group,
    }
    if problem.tool_tokens:
        per_row["tool_mask"] = 1.0 - attention + batch.mask  # 0 at the holes of the loss mask
    total = batch.mask.sum()  # the loss mask's tokens (TRL's num_items_in_batch)
    scalars = {
        "num_items_in_batch": total,
        "batch_num_tokens": total,
        "global_batch_size": len(rows),
        "num_prompts": problem.num_prompts,
        "group_size": problem.group_size,
        "max_completion_length": problem.max_len,
        "current_gradient_accumulation_steps": micro_batches,
        "dp_size": dp_size,
        "temperature": temperature,
        "beta": problem.kl_coef,
    }
    return per_row, scalars


def _step_gradient(
    fn: Callable[..., Any],
    problem: Problem,
    space: Space,
    rows: Sequence[int],
    *,
    micro_batches: int,
    dp_size: int,
    temperature: float,
    advantages: Callable[..., Any] | None,
) -> np.ndarray:
    per_row, scalars = trainer_inputs(
        problem, space, rows, micro_batches=micro_batches, dp_size=dp_size, temperature=temperature
    )
    if advantages is not None:
        per_row["advantages"] = advantages({**per_row, **scalars}).detach()
    parts = micro_batches * dp_size
    size = len(rows) // parts
    g = np.zeros(problem.theta.shape)
    for i in range(parts):
        theta = torch.tensor(problem.theta, dtype=torch.float64, requires_grad=True)
        model = OracleLM(theta, space, problem.num_prompts, temperature)
        part = {name: value[i * size : (i + 1) * size].clone() for name, value in per_row.items()}
        try:
            loss = fn(model, {**part, **scalars})
        except Exception as exc:
            raise _Fault(f"raised {type(exc).__name__}") from exc
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
            raise _Fault(f"returned {type(loss).__name__} {getattr(loss, 'shape', '')}, not a differentiable scalar")
        (grad,) = torch.autograd.grad(loss.reshape(()), theta, allow_unused=True)
        if grad is not None:
            g -= grad.numpy() / dp_size
    if not np.all(np.isfinite(g)):
        raise _Fault("non-finite gradient")
    return g


def trainer_expectation(
    fn: Callable[..., Any],
    problem: Problem,
    *,
    micro_batches: int = 1,
    dp_size: int = 1,
    temperature: float = 1.0,
    advantages: Callable[..., Any] | None = None,
) -> OracleResult:
    """``E[g]`` of the trainer step over every batch, one autograd call per part of each batch."""
    space = make_space(problem.vocab_size, problem.max_len)
    return _expectation(
        lambda rows: _step_gradient(
            fn, problem, space, rows, micro_batches=micro_batches, dp_size=dp_size,
            temperature=temperature, advantages=advantages,
        ),
        problem,
    )
