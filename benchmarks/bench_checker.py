"""Benchmark the exact estimator checker against the usual hand-written Monte Carlo check.

Run:  PYTHONPATH=. python benchmarks/bench_checker.py [--seed 0] [--false-alarm-seeds 20]

For every entry of :mod:`impl.catalogue` (batched, group sizes ``min_k..4``):

* the checker (:func:`properties.check_estimator`): verdict, right/wrong against the
  catalogue's verdict (a "scaled" verdict must also get c_k right), seconds;
* the usual check: a seeded Monte Carlo mean over ``MC_GROUPS`` groups per k on one
  random problem, compared with the exact gradient by
  ``np.allclose(mean, grad, rtol=0.05, atol=0.01)``: it says "passes" or "fails" (an
  exception or NaN is "fails"); it is counted right when it passes exactly the
  unbiased entries (a generous reading: it cannot tell scaled, biased and error apart).

Figures printed: the median time to catch a non-unbiased entry (biased, and all
wrong ones), the median time to certify a correct one (unbiased or scaled), the
batched-path overhead (time in the checker's exact evaluation, guard and estimator
included, over the time inside the estimator; and, by problem size, one evaluate()
over one bare call of the estimator), where the time goes
(``EstimatorReport.timing``: battery and Hypothesis phases; inside the estimator, the
exact evaluation and guard, judging, Hypothesis generation, other) for the batched
catalogue and for a per-group NumPy REINFORCE (``--breakdown-only`` prints just that),
and optionally the number of false alarms on correct entries over
``--false-alarm-seeds`` seeds.  Run ``uptime`` alongside: the figures scale with load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import properties.onestep.checker as checker_module
from impl.catalogue import CATALOGUE, CatalogueEntry
from impl.catalogue import get as get_entry
from impl.policy import policy_gradient, softmax
from properties.onestep.checker import EstimatorReport, check_estimator

MC_GROUPS = 20_000
"""Groups in the hand-written Monte Carlo check (per k)."""

MC_RTOL, MC_ATOL = 0.05, 0.01
"""The hand-picked tolerances of the usual check."""

MC_N = 4
"""Answers in the Monte Carlo check's problem."""


def group_sizes(entry: CatalogueEntry) -> tuple[int, ...]:
    return tuple(range(entry.min_k, 5))


def checker_right(entry: CatalogueEntry, report: EstimatorReport) -> bool:
    if report.verdict != entry.expected:
        return False
    if entry.expected == "scaled":
        assert entry.scale is not None and report.scale is not None
        return all(
            abs(c - entry.scale(k)) <= 1e-9 * abs(entry.scale(k)) for k, c in report.scale.items()
        )
    return True


def monte_carlo_passes(fn: Callable[..., Any], ks: tuple[int, ...], seed: int) -> bool:
    """The usual test: seeded MC mean vs the exact gradient, np.allclose(rtol=0.05, atol=0.01)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=MC_N)
    scores = rng.uniform(size=MC_N)
    p = softmax(logits)
    grad = policy_gradient(logits, scores)
    for k in ks:
        samples = rng.choice(MC_N, p=p, size=(MC_GROUPS, k))
        try:
            with np.errstate(all="ignore"):
                g = np.asarray(fn(logits.copy(), samples, scores[samples]), dtype=np.float64)
        except KeyboardInterrupt:
            raise
        except BaseException:  # SystemExit from calls-sys-exit too: the usual check "fails"
            return False
        if g.shape != (MC_GROUPS, MC_N) or not np.all(np.isfinite(g)):
            return False
        if not np.allclose(g.mean(axis=0), grad, rtol=MC_RTOL, atol=MC_ATOL):
            return False
    return True


TIMING_KEYS = ("estimator", "evaluation", "judging", "generation", "other")
"""The parts of EstimatorReport.timing that add up to the report's seconds."""


def per_group_reinforce(logits: Any, samples: Any, rewards: Any) -> Any:
    """A per-group NumPy REINFORCE as users write it: (k,) in, (n,) out."""
    p = np.exp(logits - np.max(logits))
    p = p / p.sum()
    return np.mean(rewards[:, None] * (np.eye(p.size)[samples] - p), axis=0)


def breakdown(reports: list[EstimatorReport], label: str) -> None:
    """Print where the time of ``reports`` went, summed."""
    total = sum(r.seconds for r in reports)
    parts = {key: sum(r.timing.get(key, 0.0) for r in reports) for key in TIMING_KEYS}
    phases = {key: sum(r.timing.get(key, 0.0) for r in reports) for key in ("battery", "hypothesis")}
    outside = total - parts["estimator"]
    print(f"{label}: {total:.2f} s in all, {parts['estimator']:.2f} s inside the estimator, "
          f"{outside:.2f} s outside it ({outside / max(parts['estimator'], 1e-12):.2f}x inside)")
    print("  by kind : " + ", ".join(f"{k} {v:.2f} s ({100 * v / total:.0f}%)" for k, v in parts.items()))
    print("  by phase: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items())
          + f", rest {total - sum(phases.values()):.2f} s (round-off re-runs, report)")


def per_group_breakdown(repeat: int = 3) -> None:
    """The per-group protocol on a NumPy REINFORCE (issue 9: 48 s with 2.1 s inside it)."""
    reports = [check_estimator(per_group_reinforce) for _ in range(repeat)]
    assert all(r.verdict == "unbiased" for r in reports), reports[0].message
    r = reports[0]
    print(f"per-group NumPy REINFORCE, default settings ({r.problems_checked} problems, "
          f"{r.estimator_calls} calls), {repeat} runs:")
    breakdown(reports, "  per-group")
    print(f"  region: {r.region.describe()}")


def overhead_by_size() -> None:
    """Batched-path time / bare estimator time, per problem size (fixed costs vs n**k)."""
    from properties.onestep.guard import GuardedEstimator, all_groups
    from properties.onestep.problems import evaluate

    print("batched path overhead by problem size (evaluate() / bare estimator call, 200 reps):")
    rng = np.random.default_rng(0)
    for name in ("reinforce", "rloo", "grpo-std-normalised"):
        fn = get_entry(name).fn
        cells = []
        for n, k in ((4, 3), (5, 4), (6, 4), (8, 4)):
            theta, s = rng.normal(size=n), rng.normal(size=n)
            guard = GuardedEstimator(fn, batched=True)
            x = all_groups(n, k)
            r = s[x]
            for _ in range(3):
                evaluate(guard, theta, s, k, rtol=None, atol=0.0)
            t0 = time.perf_counter()
            for _ in range(200):
                evaluate(guard, theta, s, k, rtol=None, atol=0.0)
            t_eval = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(200):
                fn(theta, x, r)
            t_bare = time.perf_counter() - t0
            cells.append(f"{n}^{k}={n**k}: {t_eval / t_bare:.2f}x")
        print(f"  {name:22s} " + "  ".join(cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-examples", type=int, default=checker_module.DEFAULT_MAX_EXAMPLES)
    parser.add_argument(
        "--false-alarm-seeds",
        type=int,
        default=0,
        help="also count false alarms on correct entries over this many seeds",
    )
    parser.add_argument(
        "--overhead-only",
        action="store_true",
        help="print only the batched-overhead table by problem size",
    )
    parser.add_argument(
        "--breakdown-only",
        action="store_true",
        help="print only where the time goes for a per-group NumPy REINFORCE",
    )
    args = parser.parse_args()
    if args.overhead_only:
        overhead_by_size()
        return 0
    if args.breakdown_only:
        per_group_breakdown()
        return 0

    print(
        f"{'entry':34} {'expected':9} {'checker':9} {'ok':3} {'sec':>6}   {'MC check':8} {'ok':3} {'sec':>6}"
    )
    rows = []
    ratios = []
    for entry in CATALOGUE:
        ks = group_sizes(entry)
        start = time.perf_counter()
        report = check_estimator(
            entry.fn,
            batched=True,
            group_sizes=ks,
            seed=args.seed,
            max_examples=args.max_examples,
            name=entry.name,
        )
        check_s = time.perf_counter() - start
        if report.verdict in ("unbiased", "scaled"):
            evaluation = report.timing["evaluation"] + report.estimator_seconds
            ratios.append((entry.name, evaluation, check_s, report.estimator_seconds))
        start = time.perf_counter()
        mc_pass = monte_carlo_passes(entry.fn, ks, args.seed)
        mc_s = time.perf_counter() - start
        ok = checker_right(entry, report)
        mc_ok = mc_pass == (entry.expected == "unbiased")
        rows.append((entry, report, check_s, ok, mc_pass, mc_s, mc_ok))
        print(
            f"{entry.name:34} {entry.expected:9} {report.verdict:9} {'yes' if ok else 'NO':3} "
            f"{check_s:6.3f}   {'passes' if mc_pass else 'fails':8} {'yes' if mc_ok else 'NO':3} {mc_s:6.3f}"
        )

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    correct = [r for r in rows if r[0].expected in ("unbiased", "scaled")]
    biased = [r for r in rows if r[0].expected == "biased"]
    wrong = [r for r in rows if r[0].expected != "unbiased"]
    print()
    print(
        f"catalogue: {len(rows)} entries ({len(correct)} correct: unbiased or scaled; "
        f"{len(biased)} biased; {len(rows) - len(correct) - len(biased)} error)"
    )
    print(
        f"exact checker : right {sum(r[3] for r in rows):2d}, wrong {sum(not r[3] for r in rows):2d}; "
        f"total {sum(r[2] for r in rows):.2f} s"
    )
    print(
        f"Monte Carlo   : right {sum(r[6] for r in rows):2d}, wrong {sum(not r[6] for r in rows):2d}; "
        f"total {sum(r[5] for r in rows):.2f} s  (2e4 groups/k, allclose rtol=0.05 atol=0.01)"
    )
    mc_missed = [r[0].name for r in wrong if r[4]]
    mc_false = [r[0].name for r in rows if r[0].expected == "unbiased" and not r[4]]
    print(f"  MC passed {len(mc_missed)} wrong estimators: {', '.join(mc_missed) or '-'}")
    print(f"  MC failed {len(mc_false)} unbiased estimators: {', '.join(mc_false) or '-'}")
    print(
        f"median time to catch a biased estimator : {median([r[2] for r in biased]):.4f} s "
        f"(checker)  vs {median([r[5] for r in biased]):.4f} s (MC)"
    )
    print(f"median time to catch any wrong estimator: {median([r[2] for r in wrong]):.4f} s")
    print(
        f"median time to certify a correct one    : {median([r[2] for r in correct]):.4f} s "
        f"(checker, {args.max_examples} generated problems + battery)"
    )
    if ratios:
        total_eval = sum(r[1] for r in ratios)
        total_inside = sum(r[3] for r in ratios)
        in_situ = [r[1] / r[3] for r in ratios if r[3] > 0]
        print(
            f"batched path overhead, in the same run: exact evaluation (guard + engine + the "
            f"estimator) / time inside the estimator = {total_eval / total_inside:.2f}x overall, "
            f"median {median(in_situ):.2f}x, max {max(in_situ):.2f}x"
        )
        print(
            f"  (evaluation {total_eval:.2f} s of {sum(r[2] for r in ratios):.2f} s checking; the rest "
            "is Hypothesis generating problems and the judging)"
        )
    breakdown([r[1] for r in rows if r[0].expected in ("unbiased", "scaled")],
              "where the time goes, batched, correct entries")
    breakdown([r[1] for r in rows], "where the time goes, batched, whole catalogue")
    per_group_breakdown()

    overhead_by_size()

    if args.false_alarm_seeds:
        alarms = 0
        runs = 0
        for seed in range(args.false_alarm_seeds):
            for entry in CATALOGUE:
                if entry.expected not in ("unbiased", "scaled"):
                    continue
                report = check_estimator(
                    entry.fn,
                    batched=True,
                    group_sizes=group_sizes(entry),
                    seed=seed,
                    max_examples=args.max_examples,
                )
                runs += 1
                if not checker_right(entry, report):
                    alarms += 1
                    print(f"FALSE ALARM seed={seed} {entry.name}: {report.message.splitlines()[0]}")
        print(
            f"false alarms on correct entries: {alarms} of {runs} checks "
            f"({args.false_alarm_seeds} seeds x {runs // max(args.false_alarm_seeds, 1)} entries)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
