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
from properties.cli.isolation import (
    DEFAULT_CALL_SECONDS,
    DEFAULT_TOTAL_SECONDS,
    CheckRequest,
    IsolatedOutcome,
    Limits,
    run_isolated,
)
from properties.cli.loading import split_target
from properties.cli.main import Interrupted, UsageError
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
        default=",".join(map(str, DEFAULT_GROUP_SIZES)),
        metavar="K,K,...",
        help=f"comma-separated group sizes k (default {','.join(map(str, DEFAULT_GROUP_SIZES))})",
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


def _request(target: str, batched: bool, kwargs: dict[str, Any]) -> CheckRequest:
    """The child's request for one target (bad usage raises :class:`UsageError`)."""
    try:
        form, head, attr = split_target(target)
    except ValueError as exc:
        raise UsageError(f"{_PREFIX}{exc}") from None
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
        kind="variance", target=target, name=target if form != "file" else f"{head}:{attr}",
        kwargs=dict(kwargs, batched=batched),
    )


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
    ks = _group_sizes(args.group_sizes)
    kwargs: dict[str, Any] = {
        "group_sizes": ks,
        "seed": args.seed,
        "max_examples": args.max_examples,
        "num_problems": args.problems,
        "problem_seed": args.problem_seed,
    }
    requests = [_request(t, bool(args.batched), kwargs) for t in args.targets]
    profiles = []
    for request in requests:
        outcome = run_isolated(request, limits)
        if outcome.status == "usage":
            raise UsageError(f"{_PREFIX}{outcome.message}")
        if outcome.status == "interrupted":
            raise Interrupted(f"{_PREFIX}{outcome.message}")
        profiles.append(_profile(outcome, request.name))
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
