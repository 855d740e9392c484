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
        "sequence-level losses (token sequences: masks, padding, aggregation, KL, ratios)",
        "--vocab-size, --max-len, --kl-coef, --off-policy, --diagnose, --tool-tokens, "
        "--sampling-mismatch and --values need --sequence or --weights (without them they are "
        "bad usage, never ignored)",
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
        default=None,
        metavar="V",
        help=f"largest vocabulary tried, EOS included (default {DEFAULT_VOCAB_SIZE}; 2 is tried too)",
    )
    group.add_argument(
        "--max-len",
        type=int,
        default=None,
        metavar="T",
        help=f"largest response length cap tried (default {DEFAULT_MAX_LEN}; 1..T are tried)",
    )
    group.add_argument(
        "--kl-coef",
        type=float,
        default=None,
        metavar="BETA",
        help="beta of the objective E[R] - beta KL(pi || pi_ref) (default 0)",
    )
    group.add_argument(
        "--off-policy",
        action="store_true",
        help="responses drawn from a behaviour policy pi_old != pi (batch.old_log_probs)",
    )
    group.add_argument(
        "--diagnose",
        action="store_true",
        help="on a biased or scaled verdict, name every cause that holds (targeted probes that "
        f"re-run the loss: {DIAGNOSIS_MEDIAN_SECONDS} s median on real library losses)",
    )
    group.add_argument(
        "--tool-tokens",
        action="store_true",
        help="every odd position of a response is a tool's output: a hole in batch.mask, no "
        "gradient in J (a multi-turn rollout)",
    )
    group.add_argument(
        "--sampling-mismatch",
        action="store_true",
        help="responses drawn by an inference engine whose policy differs slightly from the "
        "behaviour policy; batch.sampling_log_probs holds its log-probs",
    )
    group.add_argument(
        "--values",
        default=None,
        metavar="random|exact",
        help="fill batch.values with a critic's values per prefix: a random table (a wrong "
        "critic) or the current policy's exact values",
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


DIAGNOSIS_MEDIAN_SECONDS = 3.0
"""The diagnosis's median time over the 40 biased or scaled losses of the library corpus
(tests/corpus.py; measured on 2 shared CPU cores: 3.0 s median, 5.4 s the slowest; 0.13 s
median over the sequence catalogue's simpler losses): more than the second a check may add
unasked, so ``--diagnose`` is opt-in."""

FIELD_OPTIONS = ("--tool-tokens", "--sampling-mismatch", "--values")
"""The options of the fields libraries pass (``tool_tokens``, ``sampling_mismatch``, ``values``)."""

SEQUENCE_ONLY_OPTIONS = (
    "--vocab-size",
    "--max-len",
    "--kl-coef",
    "--off-policy",
    "--diagnose",
    *FIELD_OPTIONS,
)
"""Options that only a sequence check reads (``--sequence`` or ``--weights``)."""

VALUES_CHOICES = ("random", "exact")
"""What ``--values`` accepts (``check_sequence_loss(values=...)``)."""


def sequence_only_given(args: argparse.Namespace) -> list[str]:
    """The sequence-only options given on the command line (their defaults are ``None``/``False``)."""
    given = {
        "--vocab-size": args.vocab_size is not None,
        "--max-len": args.max_len is not None,
        "--kl-coef": args.kl_coef is not None,
        "--off-policy": bool(args.off_policy),
        "--diagnose": bool(args.diagnose),
        "--tool-tokens": bool(args.tool_tokens),
        "--sampling-mismatch": bool(args.sampling_mismatch),
        "--values": args.values is not None,
    }
    return [option for option in SEQUENCE_ONLY_OPTIONS if given[option]]


def field_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``tool_tokens``, ``sampling_mismatch`` and ``values`` as given (only those set: the
    keyword arguments of every other check stay as they were); bad usage raises :class:`UsageError`."""
    if args.values is not None and args.values not in VALUES_CHOICES:
        raise UsageError(f"{_PREFIX}--values must be random or exact but got {args.values!r}")
    given = [o for o in FIELD_OPTIONS if o in sequence_only_given(args)]
    if args.diagnose and given:
        raise UsageError(
            f"{_PREFIX}--diagnose does not model {' and '.join(given)} (its probes have no such "
            f"batches): drop --diagnose or {' and '.join(given)}"
        )
    out: dict[str, Any] = {}
    if args.tool_tokens:
        out["tool_tokens"] = True
    if args.sampling_mismatch:
        out["sampling_mismatch"] = True
    if args.values is not None:
        out["values"] = args.values
    return out


def check_option_kinds(args: argparse.Namespace) -> None:
    """Refuse, as bad usage, an option that the requested kind of check would ignore.

    A sequence option without ``--sequence``/``--weights`` (a user who sets ``--kl-coef``
    believes a KL term was checked), and ``--batched`` with ``--sequence`` alone (a loss is
    evaluated on many batches at once already; ``--batched`` shapes the arrays of
    ``--weights`` and of one-step estimators).
    """
    sequence = bool(args.sequence or args.weights)
    given = sequence_only_given(args)
    if given and not sequence:
        raise UsageError(
            f"{_PREFIX}{' and '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} to "
            "sequence checks: add --sequence "
            f"(a PyTorch loss) or --weights (NumPy token weights), or drop {' and '.join(given)}"
        )
    if args.sequence and args.batched and not args.weights:
        raise UsageError(
            f"{_PREFIX}--batched does not apply to --sequence losses (they are evaluated on "
            "many batches at once already): drop --batched, or use --weights --batched"
        )


TORCH_HINT = "pip install 'ida-verify[torch]' (from a clone: pip install '.[torch]')"
"""How to install PyTorch, the extra ``--sequence`` needs (the wording of the README)."""


def require_torch() -> None:
    """Bad usage (one line) when PyTorch cannot be found, before any child process starts.

    Looks the module up without importing it (importing torch takes seconds); a torch that
    is found but fails to import is reported by the checker itself, also as bad usage.
    """
    import importlib.util

    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise UsageError(f"{_PREFIX}--sequence needs PyTorch, which is not installed: {TORCH_HINT}")


def sequence_kwargs(args: argparse.Namespace, group_sizes: tuple[int, ...]) -> dict[str, Any]:
    """The keyword arguments of the sequence checkers from the command line (bad usage: :class:`UsageError`)."""
    from properties.sequence.checker import (
        DEFAULT_MAX_EXAMPLES,
        DEFAULT_MAX_LEN,
        DEFAULT_VOCAB_SIZE,
    )
    from properties.sequence.options import (
        MAX_LEN_LIMIT,
        MAX_MAX_EXAMPLES,
        MAX_NUM_PROMPTS,
        MAX_SEED,
        batch_budget,
        smallest_over_budget,
    )

    vocab_size = DEFAULT_VOCAB_SIZE if args.vocab_size is None else args.vocab_size
    max_len = DEFAULT_MAX_LEN if args.max_len is None else args.max_len
    kl_coef = 0.0 if args.kl_coef is None else args.kl_coef
    if not 2 <= vocab_size <= MAX_VOCAB:
        raise UsageError(
            f"{_PREFIX}--vocab-size must be between 2 and {MAX_VOCAB} but got {vocab_size}"
        )
    if not 1 <= max_len <= MAX_LEN_LIMIT:
        raise UsageError(
            f"{_PREFIX}--max-len must be between 1 and {MAX_LEN_LIMIT} but got {max_len}"
        )
    max_examples = DEFAULT_MAX_EXAMPLES if args.max_examples is None else args.max_examples
    if max_examples > MAX_MAX_EXAMPLES:
        raise UsageError(
            f"{_PREFIX}--max-examples must be at most {MAX_MAX_EXAMPLES} for sequence checks but got {max_examples}"
        )
    if args.seed > MAX_SEED:
        raise UsageError(f"{_PREFIX}--seed must be at most {MAX_SEED} for sequence checks but got {args.seed}")
    if not (math.isfinite(kl_coef) and kl_coef >= 0):
        raise UsageError(f"{_PREFIX}--kl-coef must be a finite number >= 0 but got {kl_coef!r}")
    prompts = int_list(
        "1" if args.num_prompts is None else args.num_prompts, "--num-prompts", 1, MAX_NUM_PROMPTS
    )
    weights, batched = bool(args.weights), bool(args.batched)
    if not weights:
        require_torch()
    budget = batch_budget(weights=weights, batched=batched)
    over = smallest_over_budget(group_sizes, prompts, budget)
    if over is not None:
        k, p, batches = over
        raise UsageError(
            f"{_PREFIX}--group-sizes {','.join(map(str, group_sizes))} with --num-prompts "
            f"{','.join(map(str, prompts))} fits no shape in the batch budget ({budget} batches "
            f"per problem): the smallest, V=2, T=1, k={k}, P={p}, has {batches} batches; "
            "use smaller group sizes or fewer prompts"
        )
    out: dict[str, Any] = {
        "group_sizes": group_sizes,
        "vocab_size": vocab_size,
        "max_len": max_len,
        "kl_coef": kl_coef,
        "off_policy": bool(args.off_policy),
        "num_prompts": prompts,
        "seed": args.seed,
        "max_examples": max_examples,
        "diagnose": bool(args.diagnose),
        **field_kwargs(args),
    }
    if weights:
        out["batched"] = batched
    return out


__all__ = [
    "SEQUENCE_ONLY_OPTIONS",
    "TORCH_HINT",
    "add_sequence_arguments",
    "check_option_kinds",
    "require_torch",
    "sequence_kwargs",
]
