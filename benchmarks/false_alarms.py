"""Measure the false-alarm rate of the statistical tier over many seeds.

Every statistical property of the claims ledger is run with seeds 0..N-1; since
every claim it tests is true, every rejection is a false alarm.  Each property is
Bonferroni-corrected to a family-wise rate of FAMILY_ALPHA, so the expected count is
at most N * FAMILY_ALPHA per property.

    python benchmarks/false_alarms.py [N]
"""

from __future__ import annotations

import sys
import time

from properties.claims import CLAIM_CHECKS
from properties.claims._common import FAMILY_ALPHA


def main(seeds: int) -> None:
    print(f"statistical tier: {seeds} seeds, family-wise alpha {FAMILY_ALPHA} per property")
    total_runs = total_alarms = 0
    for claim in CLAIM_CHECKS:
        for sp in claim.statistical:
            start = time.perf_counter()
            alarms = tests = 0
            for seed in range(seeds):
                out = sp.run(seed)
                tests += out.tests
                alarms += int(out.rejections > 0)
            total_runs += seeds
            total_alarms += alarms
            print(
                f"  {claim.id}: {sp.name}: {alarms} false alarms in {seeds} runs "
                f"({tests} tests; expected <= {seeds * FAMILY_ALPHA:.2f}); {time.perf_counter() - start:.1f} s"
            )
    print(f"total: {total_alarms} false alarms in {total_runs} family runs")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
