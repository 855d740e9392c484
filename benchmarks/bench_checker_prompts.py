"""Benchmark the one-step checker's multi-prompt protocol on the multi-prompt catalogue.

Run:  PYTHONPATH=. python benchmarks/bench_checker_prompts.py [--seed 0] [--max-examples 100]
      [--false-alarm-seeds 0]

For every entry of :data:`impl.catalogue.MULTI_PROMPT_CATALOGUE` (group sizes
``min_k..4``, the entry's ``num_prompts``): the verdict, right/wrong against the
catalogue (a "scaled" verdict must also get every ``c(k, P)`` right), seconds, the
number of calls into the estimator and the seconds inside it, and which phase decided
(battery or Hypothesis).  Figures printed: the median time to certify a correct entry
(unbiased or scaled) and to catch a wrong one, calls per second, and optionally the false
alarms on correct entries over ``--false-alarm-seeds`` seeds.  Run ``uptime`` alongside:
the figures scale with load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from impl.catalogue import MULTI_PROMPT_CATALOGUE, PromptEntry
from properties.onestep.checker import (
    DEFAULT_MAX_EXAMPLES,
    EstimatorCheckFailure,
    EstimatorReport,
    assert_scaled,
    check_estimator,
)


def check(entry: PromptEntry, seed: int, max_examples: int) -> EstimatorReport:
    """The checker on one entry with its own group sizes and prompts."""
    return check_estimator(
        entry.fn,
        group_sizes=tuple(range(entry.min_k, 5)),
        num_prompts=entry.num_prompts,
        seed=seed,
        max_examples=max_examples,
        name=entry.name,
    )


def right(entry: PromptEntry, report: EstimatorReport) -> bool:
    """The verdict is the catalogue's (and a scaled one has the catalogue's constants)."""
    if report.verdict != entry.expected:
        return False
    if entry.expected == "scaled" and entry.scale is not None:
        scale = entry.scale
        try:
            assert_scaled(report, lambda k, p: scale(k, p), allow_partial=True)
        except EstimatorCheckFailure:
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-examples", type=int, default=DEFAULT_MAX_EXAMPLES)
    parser.add_argument("--false-alarm-seeds", type=int, default=0)
    args = parser.parse_args()

    print(f"{'entry':<32} {'expected':<9} {'verdict':<9} ok  {'seconds':>7} {'calls':>7} "
          f"{'inside':>7}  decided by")
    certify: list[float] = []
    catch: list[float] = []
    calls_per_second: list[float] = []
    wrong = 0
    for entry in MULTI_PROMPT_CATALOGUE:
        start = time.perf_counter()
        report = check(entry, args.seed, args.max_examples)
        seconds = time.perf_counter() - start
        ok = right(entry, report)
        wrong += not ok
        (certify if entry.expected in ("unbiased", "scaled") else catch).append(seconds)
        if report.estimator_calls and seconds > 0:
            calls_per_second.append(report.estimator_calls / seconds)
        by = (
            report.counterexample.found_by
            if report.counterexample is not None
            else report.error.found_by
            if report.error is not None
            else "battery + hypothesis"
        )
        print(f"{entry.name:<32} {entry.expected:<9} {report.verdict:<9} {'yes' if ok else 'NO ':<3} "
              f"{seconds:>7.2f} {report.estimator_calls:>7} {report.estimator_seconds:>7.2f}  {by}")
    print()
    print(f"wrong verdicts: {wrong} of {len(MULTI_PROMPT_CATALOGUE)}")
    print(f"median time to certify a correct entry: {statistics.median(certify):.2f} s "
          f"({len(certify)} entries, max_examples={args.max_examples})")
    print(f"median time to catch a wrong entry: {statistics.median(catch):.2f} s ({len(catch)} entries)")
    print(f"median calls per second (estimator and checker): {statistics.median(calls_per_second):.0f}")
    if args.false_alarm_seeds:
        alarms = 0
        correct = [e for e in MULTI_PROMPT_CATALOGUE if e.expected in ("unbiased", "scaled")]
        for seed in range(args.false_alarm_seeds):
            for entry in correct:
                alarms += not right(entry, check(entry, seed, args.max_examples))
        print(f"false alarms on the {len(correct)} correct entries over {args.false_alarm_seeds} "
              f"seeds: {alarms}")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
