"""Check TRL's own ``GRPOTrainer._compute_loss`` (trl 1.16.0) with ``check_trainer_loss``.

Needs trl (``pip install '.[trl]'``, or a separate venv:

    python3 -m venv .venv-trl && .venv-trl/bin/pip install torch==2.13.0
    .venv-trl/bin/pip install trl==1.16.0 hypothesis scipy tqdm -c <(echo torch==2.13.0)
    PYTHONPATH=. .venv-trl/bin/python benchmarks/trl_compute_loss.py dr_grpo dapo

A thin wrapper of :mod:`properties.audit.trl`, which holds the stub ``self`` (``stub``) and
the loss (``trl_loss``): ``_compute_loss`` is called unbound on ``object.__new__(GRPOTrainer)``
with the attributes it reads; the model is the checker's ``TabularCausalLM``, which TRL's own
``add_fused_lm_head`` patches.  TRL's fused head computes the log-probabilities in float32, so
the strict (float64) verdict is "biased" with a round-off note giving the verdict at float32
precision.  ``ida-verify audit trl`` runs every configuration; this script one loss type at a
time with TRL's advantages (``--scale-rewards``, default ``none``).
"""

from __future__ import annotations

import argparse
import time

from properties import check_trainer_loss
from properties.audit.trl import trl_advantages, trl_loss


def main() -> None:
    """Check each loss type given on the command line and print its verdict."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("loss_types", nargs="*", default=["dr_grpo"])
    parser.add_argument("--micro-batches", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--scale-rewards", default="none", choices=("none", "group", "batch"))
    parser.add_argument("--max-examples", type=int, default=5)
    parser.add_argument(
        "--tool-tokens", action="store_true",
        help="odd positions are a tool's output, passed as TRL's inputs['tool_mask']",
    )
    args = parser.parse_args()
    for loss_type in args.loss_types:
        start = time.perf_counter()
        options = {"loss_type": loss_type, "temperature": args.temperature,
                   "importance_sampling_level": "sequence" if loss_type == "luspo" else "token"}
        report = check_trainer_loss(
            trl_loss(options, args.micro_batches),
            advantages=trl_advantages(args.scale_rewards),
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
