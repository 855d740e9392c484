"""Check TRL's own ``GRPOTrainer._compute_loss`` (trl 1.16.0) with ``check_trainer_loss``.

Needs trl, which the project does not depend on: install it in a separate venv, e.g.

    python3 -m venv .venv-trl && .venv-trl/bin/pip install torch==2.13.0
    .venv-trl/bin/pip install trl==1.16.0 hypothesis scipy tqdm -c <(echo torch==2.13.0)
    PYTHONPATH=. .venv-trl/bin/python benchmarks/trl_compute_loss.py dr_grpo dapo

``_compute_loss`` is called unbound on a stub ``self`` (``object.__new__(GRPOTrainer)`` with the
attributes it reads, :func:`stub`); the model is the checker's ``TabularCausalLM``, which is
also a backbone (one-hot node embedding) and a linear LM head (the table), so that TRL's own
``add_fused_lm_head`` patches it and ``_get_per_token_logps_and_entropies`` runs unchanged.
TRL's fused head computes the log-probabilities in float32, so the strict (float64) verdict
is "biased" with a round-off note giving the verdict at float32 precision.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import types
from collections import defaultdict
from typing import Any

from trl import GRPOTrainer
from trl.trainer.utils import add_fused_lm_head

from impl.trainer_catalogue import group_mean_advantages
from properties import check_trainer_loss


class _Accelerator:
    """What ``_compute_loss`` asks of ``self.accelerator``: one process's view of ``D`` ranks."""

    def __init__(self, num_processes: int) -> None:
        self.num_processes = num_processes
        self.sync_gradients = True
        self.is_main_process = True

    def autocast(self) -> Any:
        return contextlib.nullcontext()

    def gather(self, x: Any) -> Any:
        return x

    def gather_for_metrics(self, x: Any) -> Any:
        return x

    def reduce(self, x: Any, reduction: str = "sum") -> Any:
        return x


def stub(loss_type: str, micro_batches: int, dp_size: int, temperature: float, beta: float = 0.0) -> Any:
    """A ``GRPOTrainer`` with only the attributes ``_compute_loss`` reads (no ``__init__``)."""
    trainer = object.__new__(GRPOTrainer)
    trainer.__dict__.update(
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=beta,
        loss_type=loss_type,
        epsilon_low=0.2,
        epsilon_high=0.2,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        temperature=temperature,
        accelerator=_Accelerator(dp_size),
        current_gradient_accumulation_steps=micro_batches,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        model=types.SimpleNamespace(training=True),
        args=types.SimpleNamespace(
            delta=None, use_bias_correction_kl=False, steps_per_generation=micro_batches
        ),
    )
    return trainer


def trl_loss(loss_type: str, micro_batches: int = 1, dp_size: int = 1, temperature: float = 1.0) -> Any:
    """``fn(model, inputs)``: TRL's ``_compute_loss`` with ``max_completion_length = T``."""
    trainer = stub(loss_type, micro_batches, dp_size, temperature)

    def fn(model: Any, inputs: dict[str, Any]) -> Any:
        trainer.max_completion_length = inputs["max_completion_length"]
        add_fused_lm_head(model, temperature=trainer.temperature, outputs=("log_probs", "entropy"))
        return GRPOTrainer._compute_loss(trainer, model, dict(inputs))

    fn.__name__ = f"trl_{loss_type}"
    return fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loss_types", nargs="*", default=["dr_grpo"])
    parser.add_argument("--micro-batches", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-examples", type=int, default=5)
    parser.add_argument(
        "--tool-tokens", action="store_true",
        help="odd positions are a tool's output, passed as TRL's inputs['tool_mask']",
    )
    args = parser.parse_args()
    for loss_type in args.loss_types:
        start = time.perf_counter()
        report = check_trainer_loss(
            trl_loss(loss_type, args.micro_batches, 1, args.temperature),
            advantages=group_mean_advantages,
            group_sizes=(2, 4),
            micro_batches=args.micro_batches,
            temperature=args.temperature,
            max_examples=args.max_examples,
            tool_tokens=args.tool_tokens,
        )
        note = report.counterexample.roundoff if report.counterexample else None
        print(
            f"{loss_type} M={args.micro_batches} temperature={args.temperature}"
            + (" tool_tokens" if args.tool_tokens else "") + f": {report.verdict}"
            f" ({time.perf_counter() - start:.0f} s, mode {report.run.mode})"
            + (f"; at float32 precision: {note.verdict} {note.scale}" if note else "")
        )


if __name__ == "__main__":
    main()
