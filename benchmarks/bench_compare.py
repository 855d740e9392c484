"""Benchmark ``compare_estimators`` on three estimators: REINFORCE, RLOO, the group mean.

Run:  PYTHONPATH=. python benchmarks/bench_compare.py [--repeat 3] [--cli]

Prints the median wall-clock time of :func:`properties.compare_estimators` on
``[reinforce, rloo, group_mean_baseline]`` (batched, the default group sizes 2,3,4, the
default ``max_examples`` and the default 8 seeded problems), split into the three checks
(:func:`properties.check_estimator`) and the exact moments (enumeration on the comparison
problems, REINFORCE included), then the table itself.  The same for the per-group
(``batched=False``) forms of the three estimators.  With ``--cli``, also the time of
``ida-verify compare catalogue:reinforce catalogue:rloo catalogue:group-mean-baseline``
(three child processes); and :func:`properties.compare_sequence_losses` on three
PyTorch losses.  Run ``uptime`` alongside: the figures scale with load.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from impl.estimators import group_mean_baseline, reinforce, rloo
from properties import check_estimator, compare_estimators
from properties.onestep.checker import DEFAULT_GROUP_SIZES
from properties.onestep.variance import comparison_problems, estimator_moments

ESTIMATORS = (reinforce, rloo, group_mean_baseline)


def per_group(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The per-group form of a batched estimator."""

    def single(logits: Any, samples: Any, rewards: Any) -> Any:
        return fn(logits, samples[None, :], rewards[None, :])[0]

    single.__name__ = fn.__name__
    return single


def timed(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(batched: bool, repeat: int) -> None:
    fns = list(ESTIMATORS) if batched else [per_group(f) for f in ESTIMATORS]
    label = "batched" if batched else "per-group"
    problems = comparison_problems()
    total = timed(lambda: compare_estimators(fns, batched=batched), repeat)
    checks = timed(lambda: [check_estimator(f, batched=batched) for f in fns], repeat)
    moments = timed(
        lambda: [
            estimator_moments(f, problems, DEFAULT_GROUP_SIZES, batched=flag)
            for f, flag in [*((f, batched) for f in fns), (reinforce, True)]
        ],
        repeat,
    )
    print(
        f"compare_estimators, 3 {label} estimators: median {total:.2f} s over {repeat} runs "
        f"(checks {checks:.2f} s, exact moments {moments:.3f} s)"
    )


def bench_sequence(repeat: int) -> None:
    """The same for three PyTorch sequence losses (REINFORCE, RLOO, group mean), defaults."""
    from properties import compare_sequence_losses

    def reinforce_loss(b: Any) -> Any:
        return -(b.rewards[:, None] * b.log_probs * b.mask).sum() / b.rewards.shape[0]

    def rloo_loss(b: Any) -> Any:
        k = b.rewards.shape[0]
        loo = (b.rewards.sum() - b.rewards) / (k - 1)
        return -((b.rewards - loo)[:, None] * b.log_probs * b.mask).sum() / k

    def group_mean_loss(b: Any) -> Any:
        a = b.rewards - b.rewards.mean()
        return -(a[:, None] * b.log_probs * b.mask).sum() / b.rewards.shape[0]

    losses = [reinforce_loss, rloo_loss, group_mean_loss]
    seconds = timed(lambda: compare_sequence_losses(losses), repeat)
    print(f"compare_sequence_losses, 3 PyTorch losses (V=3, T=2, k=2,3): median {seconds:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cli", action="store_true", help="also time ida-verify compare")
    args = parser.parse_args()
    bench(True, args.repeat)
    bench(False, args.repeat)
    print(compare_estimators(list(ESTIMATORS), batched=True))
    bench_sequence(args.repeat)
    if args.cli:
        root = Path(__file__).resolve().parents[1]
        argv = [
            sys.executable, "-m", "properties.cli", "compare", "catalogue:reinforce",
            "catalogue:rloo", "catalogue:group-mean-baseline",
        ]
        seconds = timed(
            lambda: subprocess.run(argv, cwd=root, capture_output=True, check=True), args.repeat
        )
        print(f"ida-verify compare, 3 catalogue estimators (3 child processes): median {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
