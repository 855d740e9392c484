"""Throughput of the exact expectation engine (sample groups per second).

python benchmarks/bench_exact.py
"""

from __future__ import annotations

import time

import numpy as np

from impl import exact_expectation, reinforce, rloo


def bench(n: int, k: int, repeats: int = 20) -> None:
    rng = np.random.default_rng(0)
    theta, s = rng.normal(size=n), rng.normal(size=n)
    for name, est in (("reinforce", reinforce), ("rloo", rloo)):
        exact_expectation(est, theta, s, k)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            e = exact_expectation(est, theta, s, k)
            times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        print(
            f"n={n} k={k} {name:9s}: {e.groups} groups in {med * 1e3:.2f} ms (median of {repeats}) "
            f"= {e.groups / med:,.0f} groups/s"
        )


if __name__ == "__main__":
    for n, k in ((6, 4), (4, 3), (10, 5)):
        bench(n, k)
