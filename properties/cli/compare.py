"""``ida-verify compare TARGET TARGET ...``: several estimators on the same problems, one table.

Each ``TARGET`` is a one-step estimator as for ``ida-verify check`` (``PATH.py:FUNC``,
``module:FUNC`` or ``catalogue:NAME``; a catalogue entry is always batched, ``--batched``
applies to the others; the multi-prompt entries are not accepted).  Each is checked and
evaluated in **its own child process** (:mod:`properties.cli.isolation`, kind
``variance``: :func:`properties.onestep.compare.profile_estimator`), under the same time
limits as ``check`` (``--timeout`` and ``--call-timeout`` apply to each estimator).  The
parent then evaluates plain REINFORCE (our own code) on the same problems and prints the
table of :class:`properties.onestep.compare.Comparison`: verdict, constant :math:`c_k`,
variance ratio and MSE ratio per ``k`` (geometric means over the problems).

``--sequence`` (PyTorch losses) and ``--weights`` (NumPy token weights) compare sequence
losses instead (:func:`properties.sequence.compare.compare_sequence_losses`, engine
``profile_sequence_loss`` in the child, the ``--reference`` REINFORCE in the parent), on
``--problems`` seeded problems of one shape (``--vocab-size``, ``--max-len``).

``--report DIR`` also writes the HTML page of the comparison
(:func:`properties.report.compare_page.write_compare_report`: variance and MSE ratios
against ``k``), in the parent (it runs no user code).

Exit status: 0 when every estimator got a verdict and a variance at every ``k``; 1 when
some did not (an ``"error"`` verdict, a hang, an import failure: the table says which);
2 for bad usage (one line on stderr); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from impl.errors import InvalidArgument
from properties.cli.isolation import run_isolated
from properties.cli.loading import split_target
from properties.cli.main import Interrupted, UsageError
from properties.cli.request import (
    DEFAULT_CALL_SECONDS,
    DEFAULT_TOTAL_SECONDS,
    CheckRequest,
    IsolatedOutcome,
    Limits,
)
from properties.onestep.checker import DEFAULT_GROUP_SIZES, DEFAULT_MAX_EXAMPLES, MAX_GROUP_SIZE
from properties.onestep.compare import (
    MAX_PROBLEMS,
    EstimatorProfile,
    comparison_from_profiles,
    describe_source,
)
from properties.onestep.variance import DEFAULT_NUM_PROBLEMS, comparison_problems

_PREFIX = "ida-verify compare: "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``ida-verify compare``."""
    parser.add_argument(
        "targets",
        metavar="TARGET",
        nargs="+",
        help="PATH.py:FUNC, module:FUNC, or catalogue:NAME (an impl.catalogue entry)",
    )
    parser.add_argument(
        "--group-sizes",
        default=None,
        metavar="K,K,...",
        help=f"comma-separated group sizes k (default {','.join(map(str, DEFAULT_GROUP_SIZES))}; "
        "with --sequence 2,3)",
    )
    parser.add_argument(
        "--batched",
        action="store_true",
        help="the FUNCs take samples/rewards of shape (B, k) and return (B, n)",
    )
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis seed of the checks (default 0)")
    parser.add_argument(
        "--max-examples",
        type=int,
        default=DEFAULT_MAX_EXAMPLES,
        help=f"generated problems per check after the battery (default {DEFAULT_MAX_EXAMPLES})",
    )
    parser.add_argument(
        "--problems",
        type=int,
        default=DEFAULT_NUM_PROBLEMS,
        metavar="N",
        help=f"seeded problems the variance is measured on (default {DEFAULT_NUM_PROBLEMS})",
    )
    parser.add_argument(
        "--problem-seed", type=int, default=0, help="seed of those problems (default 0)"
    )
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    group = parser.add_argument_group("sequence losses (properties.sequence.compare)")
    group.add_argument(
        "--sequence", action="store_true",
        help="the FUNCs are PyTorch losses FUNC(batch: properties.SequenceBatch) -> scalar",
    )
    group.add_argument(
        "--weights", action="store_true",
        help="the FUNCs are NumPy token weights FUNC(rewards, mask, log_probs) (implies --sequence)",
    )
    group.add_argument(
        "--reference", default="sum", metavar="AGG",
        help="aggregation of the REINFORCE reference: sum, token-mean or max-len (default sum)",
    )
    group.add_argument("--vocab-size", type=int, default=3, metavar="V", help="tokens (default 3)")
    group.add_argument("--max-len", type=int, default=2, metavar="T", help="length cap (default 2)")
    group.add_argument("--kl-coef", type=float, default=0.0, metavar="BETA", help="beta (default 0)")
    from properties.cli.report import report_dir

    parser.add_argument(
        "--report",
        metavar="DIR",
        type=report_dir,
        default=None,
        help="also write an HTML page with the variance and MSE against k into DIR (needs matplotlib)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TOTAL_SECONDS,
        metavar="SECONDS",
        help=f"wall-clock limit per estimator, start-up included (default {DEFAULT_TOTAL_SECONDS:g})",
    )
    parser.add_argument(
        "--call-timeout",
        type=float,
        default=DEFAULT_CALL_SECONDS,
        metavar="SECONDS",
        help=f"wall-clock limit for one call into an estimator (default {DEFAULT_CALL_SECONDS:g})",
    )


def _group_sizes(text: str) -> tuple[int, ...]:
    from properties.cli.check_sequence import int_list

    try:
        values = int_list(text, "--group-sizes", 1, MAX_GROUP_SIZE, "2,3,4")
    except UsageError as exc:
        raise UsageError(str(exc).replace("ida-verify check: ", _PREFIX, 1)) from None
    return tuple(sorted(set(values)))


def _seconds(value: float, option: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{_PREFIX}{option} must be a number of seconds > 0 but got {value!r}")
    return value


def _request(target: str, batched: bool, kwargs: dict[str, Any], kind: str = "variance") -> CheckRequest:
    """The child's request for one target (bad usage raises :class:`UsageError`)."""
    try:
        form, head, attr = split_target(target)
    except ValueError as exc:
        raise UsageError(f"{_PREFIX}{exc}") from None
    if form == "catalogue" and kind != "variance":
        raise UsageError(f"{_PREFIX}catalogue:NAME names a one-step estimator; drop --sequence")
    if form == "catalogue":
        from impl.catalogue import MULTI_PROMPT_CATALOGUE, get

        if any(e.name == attr for e in MULTI_PROMPT_CATALOGUE):
            raise UsageError(
                f"{_PREFIX}catalogue:{attr} uses the multi-prompt protocol; compare takes "
                "one-step estimators"
            )
        try:
            get(attr)
        except InvalidArgument as exc:
            raise UsageError(f"{_PREFIX}{exc}") from None
        batched = True
    elif form == "file":
        path = Path(head)
        if not path.is_file():
            raise UsageError(f"{_PREFIX}no such file {head!r}")
        target = f"{path.resolve()}:{attr}"
    return CheckRequest(
        kind=kind, target=target, name=target if form != "file" else f"{head}:{attr}",
        kwargs=dict(kwargs, batched=batched),
    )


def _sequence_shape(args: argparse.Namespace, ks: tuple[int, ...]) -> dict[str, Any]:
    """The sequence comparison's shape from the command line (bad values: :class:`UsageError`)."""
    from properties.sequence.compare import validate_arguments

    if not math.isfinite(args.kl_coef) or args.kl_coef < 0:
        raise UsageError(f"{_PREFIX}--kl-coef must be a finite number >= 0 but got {args.kl_coef!r}")
    try:
        validate_arguments(
            "sequence-loss", args.reference, ks, args.vocab_size, args.max_len, args.problems,
            args.problem_seed,
        )
    except InvalidArgument as exc:
        raise UsageError(f"{_PREFIX}{exc}") from None
    return {
        "group_sizes": ks, "vocab_size": args.vocab_size, "max_len": args.max_len,
        "kl_coef": float(args.kl_coef), "num_problems": args.problems,
        "problem_seed": args.problem_seed,
    }


def _profile(outcome: IsolatedOutcome, name: str) -> EstimatorProfile:
    """The child's profile; a report that is not one (an error report of the isolation:
    timeout, exit, import failure) becomes a profile without variance."""
    try:
        return EstimatorProfile.from_dict(outcome.report)
    except ValueError:
        error = (outcome.report or {}).get("error") or {}
        kind, detail = error.get("kind", "unknown"), error.get("detail", outcome.message)
        return EstimatorProfile(
            name, "error", None, outcome.message, None,
            f"no variance: the check ended in an error ({kind}): {detail}",
        )


def run(args: argparse.Namespace) -> int:
    """Run ``ida-verify compare``; 0 when the table is complete, 1 otherwise, 2 usage."""
    for option, value, low in (
        ("--max-examples", args.max_examples, 0),
        ("--seed", args.seed, 0),
        ("--problem-seed", args.problem_seed, 0),
        ("--problems", args.problems, 1),
    ):
        if value < low:
            raise UsageError(f"{_PREFIX}{option} must be >= {low} but got {value}")
    if args.problems > MAX_PROBLEMS:
        raise UsageError(f"{_PREFIX}--problems must be <= {MAX_PROBLEMS} but got {args.problems}")
    limits = Limits(
        total_seconds=_seconds(args.timeout, "--timeout"),
        call_seconds=_seconds(args.call_timeout, "--call-timeout"),
    )
    sequence = bool(args.sequence or args.weights)
    default = "2,3" if sequence else ",".join(map(str, DEFAULT_GROUP_SIZES))
    ks = _group_sizes(default if args.group_sizes is None else args.group_sizes)
    kwargs: dict[str, Any] = {
        "group_sizes": ks,
        "seed": args.seed,
        "max_examples": args.max_examples,
        "num_problems": args.problems,
        "problem_seed": args.problem_seed,
    }
    kind = "variance"
    if sequence:
        if args.batched and not args.weights:
            raise UsageError(f"{_PREFIX}--batched applies to --weights (a PyTorch loss gets one batch)")
        kind = "weights-variance" if args.weights else "sequence-variance"
        shape = _sequence_shape(args, ks)
        kwargs |= shape
        kwargs["protocol"] = "token-weights" if args.weights else "sequence-loss"
    elif args.reference != "sum":
        raise UsageError(f"{_PREFIX}--reference needs --sequence or --weights")
    requests = [_request(t, bool(args.batched), kwargs, kind) for t in args.targets]
    profiles = []
    for request in requests:
        outcome = run_isolated(request, limits)
        if outcome.status == "usage":
            raise UsageError(f"{_PREFIX}{outcome.message}")
        if outcome.status == "interrupted":
            raise Interrupted(f"{_PREFIX}{outcome.message}")
        profiles.append(_profile(outcome, request.name))
    if sequence:
        from properties.sequence.compare import sequence_comparison

        result = sequence_comparison(profiles, reference=args.reference, **shape)
    else:
        problems = comparison_problems(args.problems, args.problem_seed)
        source = describe_source(problems, args.problem_seed)
        result = comparison_from_profiles(profiles, ks, problems, source=source)
    print(result.to_json() if args.json else result.table())
    if args.report is not None:
        sys.stdout.flush()
        from properties.report.compare_page import write_compare_report
        from properties.report.figures import ReportUnavailable

        try:
            out = write_compare_report(args.report, result)
        except (ReportUnavailable, InvalidArgument, OSError) as exc:
            raise UsageError(f"{_PREFIX}--report: {str(exc).splitlines()[0]}") from None
        print(f"{_PREFIX}wrote {out / 'index.html'}", file=sys.stderr)
    return 0 if result.complete else 1
