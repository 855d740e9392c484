"""``ida-verify check TARGET``: check a gradient estimator for bias, exactly, in a child process.

``TARGET`` is one of

* ``path/to/file.py:FUNC`` (a file; ``FUNC`` may be dotted, ``file.py:Class.method``),
* ``package.module:FUNC`` (an importable module),
* ``catalogue:NAME`` (an entry of :mod:`impl.catalogue`; always batched, and its group
  sizes default to ``min_k..4`` so that ``k = 1`` is checked where the entry allows it;
  an entry of ``MULTI_PROMPT_CATALOGUE`` is checked with its ``num_prompts``).

``--num-prompts 1,2`` (without ``--sequence``) checks the multi-prompt protocol of
:func:`properties.check_estimator` (``FUNC(logits, samples, rewards, group)``, ``P``
prompts of ``k`` responses pooled in one call); it does not combine with ``--batched``.

The user's code is imported and checked in a child process (:mod:`properties.cli.isolation`)
under two wall-clock limits: ``--call-timeout`` for one call into the estimator (default
30 s) and ``--timeout`` for the whole check, start-up and import included (default 600 s).
A hang, an exit (``sys.exit``, ``os._exit``) or a crash of user code is the ``"error"``
verdict (kinds ``timeout``, ``exited``), and so is an import that raises
(``import-failed``); whatever user code prints goes to stderr, so stdout carries only the
report (``--json`` stays parseable).

``module:FUNC`` is imported as ``python -m`` would, the current directory first on
``sys.path``.  ``--max-examples`` defaults to the API's: ``check_estimator``'s for one-step
estimators, ``check_sequence_loss``'s with ``--sequence`` or ``--weights``.

Exit status: 0 for ``unbiased`` (only ever after a finished check that covered all that
was asked), 1 for any other verdict or a partial check, 2 for bad usage (no such file,
module, function or catalogue entry, with the closest names; not callable; bad options; an
option the requested check would ignore, such as ``--kl-coef`` without ``--sequence``; a
``FUNC`` whose signature fits another protocol than the one asked for, with the option it
needs; ``--sequence`` without PyTorch; sizes that fit no shape in the sequence checker's
batch budget; a *partial* check, whose report has ``"partial": true``, exits 1), 130 when
interrupted (Ctrl-C, or ``KeyboardInterrupt`` raised by user code),
with one line on stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from impl.errors import InvalidArgument
from properties.cli.check_sequence import (
    add_sequence_arguments,
    check_option_kinds,
    int_list,
    sequence_kwargs,
)
from properties.cli.isolation import run_isolated
from properties.cli.loading import no_catalogue_entry, split_target
from properties.cli.main import Interrupted, UsageError
from properties.cli.request import (
    DEFAULT_CALL_SECONDS,
    DEFAULT_TOTAL_SECONDS,
    CheckRequest,
    Limits,
)
from properties.onestep.checker import DEFAULT_GROUP_SIZES, DEFAULT_MAX_EXAMPLES, MAX_GROUP_SIZE

_PREFIX = "ida-verify check: "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``ida-verify check``."""
    parser.add_argument(
        "target",
        metavar="TARGET",
        help="PATH.py:FUNC, module:FUNC, or catalogue:NAME (an impl.catalogue entry)",
    )
    parser.add_argument(
        "--group-sizes",
        default=None,
        metavar="K,K,...",
        help=f"comma-separated group sizes k to check (default {','.join(map(str, DEFAULT_GROUP_SIZES))}; "
        "for catalogue:NAME, min_k..4)",
    )
    parser.add_argument(
        "--batched",
        action="store_true",
        help="FUNC takes samples/rewards of shape (B, k) and returns (B, n) (faster)",
    )
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default 0)")
    from properties.sequence.checker import DEFAULT_MAX_EXAMPLES as SEQUENCE_MAX_EXAMPLES

    parser.add_argument(
        "--max-examples",
        type=int,
        default=None,
        metavar="N",
        help=f"generated problems after the fixed battery (default {DEFAULT_MAX_EXAMPLES}, and "
        f"{SEQUENCE_MAX_EXAMPLES} with --sequence or --weights: the defaults of check_estimator "
        "and check_sequence_loss)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    from properties.cli.report import report_dir

    parser.add_argument(
        "--report",
        metavar="DIR",
        type=report_dir,
        default=None,
        help="also write an HTML report with figures into DIR (needs matplotlib)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TOTAL_SECONDS,
        metavar="SECONDS",
        help=f"wall-clock limit for the whole check, start-up and import included "
        f"(default {DEFAULT_TOTAL_SECONDS:g}); past it the verdict is error (timeout)",
    )
    parser.add_argument(
        "--call-timeout",
        type=float,
        default=DEFAULT_CALL_SECONDS,
        metavar="SECONDS",
        help=f"wall-clock limit for one call into the estimator (default {DEFAULT_CALL_SECONDS:g})",
    )
    add_sequence_arguments(parser)


def _group_sizes(text: str) -> tuple[int, ...]:
    return int_list(text, "--group-sizes", 1, MAX_GROUP_SIZE, "2,3,4")


def _num_prompts(text: str, ks: tuple[int, ...]) -> tuple[int, ...]:
    """``--num-prompts`` of a one-step check: ``1 <= P <= MAX_NUM_PROMPTS`` and ``k*P <= 10``."""
    from properties.onestep.prompts import MAX_NUM_PROMPTS, MAX_SAMPLES_PER_BATCH

    values = int_list(text, "--num-prompts", 1, MAX_NUM_PROMPTS)
    if max(ks) * max(values) > MAX_SAMPLES_PER_BATCH:
        raise UsageError(
            f"{_PREFIX}--num-prompts {text} with group sizes up to {max(ks)} makes k*P > "
            f"{MAX_SAMPLES_PER_BATCH} (2**(k*P) calls per problem); use fewer prompts or smaller groups"
        )
    return tuple(sorted(set(values)))


def _seconds(value: float, option: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{_PREFIX}{option} must be a number of seconds > 0 but got {value!r}")
    return value


def _request(args: argparse.Namespace) -> CheckRequest:
    """What the child process is to check, from the command line (bad usage raises UsageError).

    Only what needs no user code is checked here: the form of TARGET, that a file exists,
    that a catalogue entry exists.  A missing module or function is found by the child.
    To add a kind of check (``--sequence`` ...), register it in
    ``properties.cli.isolation.CHECK_KINDS`` and return ``CheckRequest(kind=..., kwargs=...)``
    for it here.
    """
    try:
        form, head, attr = split_target(args.target)
    except ValueError as exc:
        raise UsageError(f"{_PREFIX}{exc}") from None
    check_option_kinds(args)
    batched = bool(args.batched)
    default_ks: tuple[int, ...] = DEFAULT_GROUP_SIZES
    min_k = 1  # a catalogue entry's smallest group size
    target, name = args.target, attr
    prompts_text: str | None = args.num_prompts
    if form == "catalogue":
        from impl.catalogue import MULTI_PROMPT_CATALOGUE, get

        pooled = {e.name: e for e in MULTI_PROMPT_CATALOGUE}
        if attr in pooled:
            if args.batched:
                raise UsageError(f"{_PREFIX}catalogue:{attr} uses the multi-prompt protocol; drop --batched")
            found = pooled[attr]
            batched, default_ks, name = False, tuple(range(found.min_k, 5)), f"catalogue:{found.name}"
            min_k = found.min_k
            if prompts_text is None:
                prompts_text = ",".join(str(p) for p in found.num_prompts)
        else:
            try:
                entry = get(attr)
            except InvalidArgument:
                raise UsageError(f"{_PREFIX}{no_catalogue_entry(attr)}") from None
            if prompts_text is not None and not (args.sequence or args.weights):
                raise UsageError(
                    f"{_PREFIX}catalogue:{attr} is a batched estimator; --num-prompts needs an "
                    "estimator of the multi-prompt protocol"
                )
            batched, default_ks, name = True, tuple(range(entry.min_k, 5)), f"catalogue:{entry.name}"
            min_k = entry.min_k
    elif form == "file":
        path = Path(head)
        if not path.is_file():
            raise UsageError(f"{_PREFIX}no such file {head!r}")
        target = f"{path.resolve()}:{attr}"
    ks = _group_sizes(args.group_sizes) if args.group_sizes is not None else default_ks
    if args.sequence or args.weights:
        if form == "catalogue":
            option = "--weights" if args.weights else "--sequence"
            raise UsageError(f"{_PREFIX}catalogue:NAME names a one-step estimator; drop {option}")
        return CheckRequest(
            kind="token-weights" if args.weights else "sequence",
            target=target,
            name=name,
            kwargs=sequence_kwargs(args, ks),
            report_dir=None if args.report is None else str(Path(args.report).resolve()),
            progress=_show_progress(args),
        )
    if min(ks) < min_k:
        raise UsageError(
            f"{_PREFIX}{name} is defined for group sizes k >= {min_k} only (the catalogue's "
            f"min_k): drop {','.join(str(k) for k in ks if k < min_k)} from --group-sizes"
        )
    kwargs: dict[str, Any] = {
        "group_sizes": ks,
        "seed": args.seed,
        "max_examples": DEFAULT_MAX_EXAMPLES if args.max_examples is None else args.max_examples,
        "batched": batched,
    }
    if prompts_text is not None:
        if args.report is not None:
            raise UsageError(f"{_PREFIX}--report is not available for --num-prompts checks yet")
        if batched:
            raise UsageError(
                f"{_PREFIX}--num-prompts and --batched cannot be combined: the multi-prompt "
                "protocol calls FUNC(logits, samples, rewards, group) once per pooled batch"
            )
        kwargs["num_prompts"] = _num_prompts(prompts_text, ks)
    return CheckRequest(
        kind="estimator",
        target=target,
        name=name,
        kwargs=kwargs,
        report_dir=None if args.report is None else str(Path(args.report).resolve()),
        progress=_show_progress(args),
    )


def _show_progress(args: argparse.Namespace) -> bool:
    """A progress bar only on a terminal, never with ``--json``."""
    from properties.cli.progress import interactive

    return not args.json and interactive()


def run(args: argparse.Namespace) -> int:
    """Run ``ida-verify check``; return the exit status (0 unbiased and full, 1 otherwise, 2 usage)."""
    if args.max_examples is not None and args.max_examples < 0:
        raise UsageError(f"{_PREFIX}--max-examples must be >= 0 but got {args.max_examples}")
    if args.seed < 0:
        raise UsageError(f"{_PREFIX}--seed must be >= 0 but got {args.seed}")
    limits = Limits(
        total_seconds=_seconds(args.timeout, "--timeout"),
        call_seconds=_seconds(args.call_timeout, "--call-timeout"),
    )
    outcome = run_isolated(_request(args), limits)
    if outcome.status == "usage":
        raise UsageError(f"{_PREFIX}{outcome.message}")
    if outcome.status == "interrupted":
        raise Interrupted(f"{_PREFIX}{outcome.message}")
    print(outcome.to_json() if args.json else outcome.message)
    if args.report is not None:
        sys.stdout.flush()
        if outcome.report_error is not None:
            raise UsageError(f"{_PREFIX}--report: {outcome.report_error}")
        print(f"{_PREFIX}wrote {Path(args.report) / 'index.html'}", file=sys.stderr)
    partial = bool((outcome.report or {}).get("partial", False))  # less checked than asked
    return 0 if outcome.verdict == "unbiased" and not partial else 1
