"""The sequence options of ``ida-verify check`` (``--sequence``, ``--weights``, ...), kept apart.

``ida-verify check file.py:fn --sequence`` checks a PyTorch loss ``fn(batch) -> scalar``
with :func:`properties.check_sequence_loss`; ``--weights`` checks a NumPy token-weight
function with :func:`properties.check_token_weights` (``--batched``: it takes ``(G, B, ...)``
arrays).  :func:`sequence_kwargs` turns the options into the checker's keyword arguments
(plain values, which the child process of :mod:`properties.cli.isolation` receives; the kinds
``sequence`` and ``token-weights`` are registered in its ``CHECK_KINDS``).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from impl.sequence import MAX_VOCAB
from properties.cli.main import UsageError

_PREFIX = "ida-verify check: "


def add_sequence_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``--sequence``, ``--weights``, ``--vocab-size``, ``--max-len``, ``--kl-coef``, ... ."""
    from properties.sequence.checker import DEFAULT_MAX_LEN, DEFAULT_VOCAB_SIZE

    group = parser.add_argument_group(
        "sequence-level losses (token sequences: masks, padding, aggregation, KL, ratios)"
    )
    group.add_argument(
        "--sequence",
        action="store_true",
        help="FUNC is a PyTorch loss FUNC(batch: properties.SequenceBatch) -> scalar (minimised)",
    )
    group.add_argument(
        "--weights",
        action="store_true",
        help="FUNC is NumPy token weights FUNC(rewards (B,), mask (B,T), log_probs (B,T)) -> "
        "(B,T) (implies --sequence; with --batched: a leading axis of G batches)",
    )
    group.add_argument(
        "--vocab-size",
        type=int,
        default=DEFAULT_VOCAB_SIZE,
        metavar="V",
        help=f"largest vocabulary tried, EOS included (default {DEFAULT_VOCAB_SIZE}; 2 is tried too)",
    )
    group.add_argument(
        "--max-len",
        type=int,
        default=DEFAULT_MAX_LEN,
        metavar="T",
        help=f"largest response length cap tried (default {DEFAULT_MAX_LEN}; 1..T are tried)",
    )
    group.add_argument(
        "--kl-coef",
        type=float,
        default=0.0,
        metavar="BETA",
        help="beta of the objective E[R] - beta KL(pi || pi_ref) (default 0)",
    )
    group.add_argument(
        "--off-policy",
        action="store_true",
        help="responses drawn from a behaviour policy pi_old != pi (batch.old_log_probs)",
    )
    group.add_argument(
        "--num-prompts",
        default=None,
        metavar="P,P,...",
        help="comma-separated numbers of prompts per batch (default 1; e.g. 1,2); without "
        "--sequence: check FUNC(logits, samples, rewards, group) pooling P prompts per call",
    )


def int_list(text: str, option: str, low: int, high: int, example: str = "1,2") -> tuple[int, ...]:
    """``text`` as comma-separated integers in ``low..high`` (bad usage raises :class:`UsageError`)."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(
            f"{_PREFIX}{option} must be comma-separated integers like {example} but got {text!r}"
        ) from None
    if not values or not all(low <= v <= high for v in values):
        raise UsageError(
            f"{_PREFIX}{option} must be integers between {low} and {high} but got {text!r}"
        )
    return values


def sequence_kwargs(args: argparse.Namespace, group_sizes: tuple[int, ...]) -> dict[str, Any]:
    """The keyword arguments of the sequence checkers from the command line (bad usage: :class:`UsageError`)."""
    from properties.sequence.checker import MAX_LEN_LIMIT, MAX_NUM_PROMPTS

    if not 2 <= args.vocab_size <= MAX_VOCAB:
        raise UsageError(
            f"{_PREFIX}--vocab-size must be between 2 and {MAX_VOCAB} but got {args.vocab_size}"
        )
    if not 1 <= args.max_len <= MAX_LEN_LIMIT:
        raise UsageError(
            f"{_PREFIX}--max-len must be between 1 and {MAX_LEN_LIMIT} but got {args.max_len}"
        )
    if not (math.isfinite(args.kl_coef) and args.kl_coef >= 0):
        raise UsageError(
            f"{_PREFIX}--kl-coef must be a finite number >= 0 but got {args.kl_coef!r}"
        )
    out: dict[str, Any] = {
        "group_sizes": group_sizes,
        "vocab_size": args.vocab_size,
        "max_len": args.max_len,
        "kl_coef": args.kl_coef,
        "off_policy": bool(args.off_policy),
        "num_prompts": int_list(
            "1" if args.num_prompts is None else args.num_prompts, "--num-prompts", 1, MAX_NUM_PROMPTS
        ),
        "seed": args.seed,
        "max_examples": args.max_examples,
    }
    if args.weights:
        out["batched"] = bool(args.batched)
    return out


__all__ = ["add_sequence_arguments", "sequence_kwargs"]
