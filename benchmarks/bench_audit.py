"""Benchmark ``ida-verify audit LIBRARY``: the whole matrix's wall time, and the time per configuration.

Run:  PYTHONPATH=. python benchmarks/bench_audit.py [verl] [--jobs 2] [--json OUT]

Runs the command as a user would (``python -m properties.cli audit LIBRARY --jobs N --json``)
and prints the library's version, the wall time of the whole command (imports included) and of
the audit itself, and the median and maximum seconds per checked configuration, separately for
the rows that found a bias or an error (time to find) and the certified ones (unbiased or
scaled: time to certify), with the verdict counts and the number of groups of rows that
agree.  Targets (issue 17): the verl matrix in at most 10 minutes on the 2-core machine, a
median of at most 2 s per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def main() -> int:
    """Run the audit once and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", nargs="?", default="verl")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", metavar="OUT", help="also write the audit's JSON here")
    args = parser.parse_args()
    command = [sys.executable, "-m", "properties.cli", "audit", args.library,
               "--jobs", str(args.jobs), "--json"]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    wall = time.perf_counter() - start
    if done.returncode == 2:
        print(done.stderr.strip(), file=sys.stderr)
        return 2
    payload = json.loads(done.stdout)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
    rows = payload["rows"]
    checked = [r for r in rows if r["verdict"] != "not checked"]
    times = [r["seconds"] for r in checked]
    found = [r["seconds"] for r in checked if r["verdict"] in ("biased", "error")]
    certified = [r["seconds"] for r in checked if r["verdict"] in ("unbiased", "scaled")]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    slowest = max(checked, key=lambda r: r["seconds"])
    print(f"{args.library} {payload['version']}, --jobs {args.jobs}, load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} at the end")
    print(f"  {len(rows)} configurations: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
          + f"; {len(payload['groups'])} groups of rows that agree")
    print(f"  wall: {wall:.0f} s the whole command, {payload['seconds']:.0f} s the audit")
    print(f"  per configuration: median {statistics.median(times):.1f} s, max {max(times):.0f} s "
          f"({slowest['name']})")
    for label, values in (("to find a bias or error", found), ("to certify", certified)):
        if values:
            print(f"  {label}: median {statistics.median(values):.1f} s, max {max(values):.0f} s "
                  f"({len(values)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
