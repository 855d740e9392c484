"""Mutation score of the suite (issue 9, "the suite's own bite"), per module, with survivors.

Run through ``bash benchmarks/mutation.sh`` (which makes the mutmut venv and runs this
under ``nice -n 19``), or directly with a Python that has mutmut and the test extras::

    .venv-mut/bin/python benchmarks/mutation.py [--keep] [--max-children N] [MUTANT_GLOB ...]

What is mutated and which tests run is configured in ``pyproject.toml`` (``[tool.mutmut]``);
mutmut 3 runs each mutant against only the selected tests that reached the mutated
function.  Survivors listed in ``benchmarks/mutation_equivalent.md`` (by mutant id *and*
the mutated line, so an entry goes stale rather than wrong when the code moves) count as
equivalent; the score of a module is

    (killed + timeout) / (total - equivalent),

and the command exits 1 if any module is below :data:`TARGET` or an equivalence entry is
stale.  ``--keep`` reuses ``mutants/`` (mutmut's cache) instead of starting afresh; a
glob such as ``'impl.policy.*'`` runs only those mutants (the others keep their old result
or count as not checked).  Without a glob, the mutants of :data:`SCOPE` run.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = ROOT / "benchmarks" / "mutation_equivalent.md"
TARGET = 0.90
"""Issue 9: at least 90% of the non-equivalent mutants killed in every mutated module."""

_ENTRY = re.compile(r"^- `(?P<id>[\w.ǁ]+__mutmut_\d+)` `(?P<line>[^`]+)`")
_RESULT = re.compile(r"^\s*(?P<id>\S+__mutmut_\d+): (?P<status>.+?)\s*$")
SCOPE = (
    "impl.*",
    "properties.judging.verdict.*",
    # _checker_problems: the evaluation and the tolerance (not the battery's contents,
    # the Hypothesis strategies or the constant pinning, which are problem generation)
    "properties.onestep.problems.x_evaluate*",
    "properties.onestep.problems.x_tolerance*",
    "properties.onestep.problems.xǁEvaluationǁ*",
    "properties.onestep.problems.x__tiny*",
    "properties.onestep.problems.x_max_n_for*",
    "properties.onestep.problems.x_battery_problems*",
)
"""The mutants run when no glob is given: issue 9's target, the four impl modules and the
checker's evaluation and judging code."""

KILLED = {"killed", "timeout"}
UNRUN = {"not checked", "skipped", "check was interrupted by user"}


def _mutmut(*args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=ROOT,
        text=True,
        capture_output=capture,
        check=False,
    )


def equivalents() -> dict[str, str]:
    """Mutant id -> the mutated source text it was judged equivalent for."""
    out: dict[str, str] = {}
    for line in EQUIVALENT_FILE.read_text(encoding="utf-8").splitlines():
        m = _ENTRY.match(line)
        if m:
            out[m["id"]] = m["line"]
    return out


def diff_of(mutant: str) -> list[str]:
    """The changed lines of one mutant (``-`` original, ``+`` mutated)."""
    shown = _mutmut("show", mutant).stdout.splitlines()
    return [ln for ln in shown if re.match(r"^[-+](?![-+])", ln)]


def module_of(mutant: str) -> str:
    return mutant.rsplit(".", 1)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="reuse mutants/ (mutmut's cache)")
    ap.add_argument("--max-children", type=int, default=1, help="parallel mutant runs (default 1)")
    ap.add_argument("globs", nargs="*", help="only these mutants, e.g. 'impl.policy.*' (default: SCOPE)")
    args = ap.parse_args(argv)
    globs = args.globs or list(SCOPE)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            capture_output=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           text=True, capture_output=True, check=False).stdout.strip()
    if not args.keep and (ROOT / "mutants").exists():
        shutil.rmtree(ROOT / "mutants")
    log = ROOT / "mutants" / "mutation-run.log"
    log.parent.mkdir(exist_ok=True)
    print(f"running mutmut (progress: tail -c 300 {log.relative_to(ROOT)})", flush=True)
    t0 = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        code = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children), *globs],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False,
        ).returncode
    wall = time.perf_counter() - t0
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:  # interrupted or broken: say so, and summarise what was checked
        print(log.read_text(encoding="utf-8")[-3000:])
        print(f"mutmut run failed (exit {code}); full log in {log}; the figures below are partial")

    status: dict[str, str] = {}
    for line in _mutmut("results", "--all", "true").stdout.splitlines():
        m = _RESULT.match(line)
        if m:
            status[m["id"]] = m["status"]
    equiv = equivalents()
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    stale: list[str] = []
    for mutant, st in sorted(status.items()):
        mod = module_of(mutant)
        counts[mod]["total"] += 1
        if st in UNRUN:
            counts[mod]["unrun"] += 1
            continue
        if st in KILLED:
            counts[mod]["killed"] += 1
            counts[mod]["timeout"] += st == "timeout"
            if mutant in equiv:
                stale.append(f"{mutant}: listed as equivalent but {st}")
            continue
        if mutant in equiv:
            if any(ln.startswith("+") and equiv[mutant] in ln for ln in diff_of(mutant)):
                counts[mod]["equivalent"] += 1
                continue
            stale.append(f"{mutant}: the mutant no longer contains `{equiv[mutant]}`")
        survivors[mod].append(f"{mutant} ({st})")
    for mutant in sorted(set(equiv) - set(status)):
        stale.append(f"{mutant}: listed as equivalent but no such mutant")

    print(f"mutation score at commit {commit}{' (+ uncommitted changes)' if dirty else ''}, "
          f"mutmut {_mutmut('--version').stdout.split()[-1]}")
    print(f"{'module':34s} {'killed':>6s} {'total':>6s} {'equiv':>6s} {'left':>5s} {'score':>7s}")
    below = []
    for mod in sorted(counts):
        c = counts[mod]
        if c["unrun"]:
            print(f"{mod:34s} {c['unrun']} of {c['total']} mutants not run (not selected, or interrupted)")
            if c["unrun"] == c["total"]:
                continue
        live = c["total"] - c["equivalent"] - c["unrun"]
        score = c["killed"] / live if live else 1.0
        below += [mod] if score < TARGET else []
        left = live - c["killed"]
        extra = f"  ({c['timeout']} by timeout)" if c["timeout"] else ""
        print(f"{mod:34s} {c['killed']:6d} {c['total']:6d} {c['equivalent']:6d} {left:5d} {score:7.1%}{extra}")
    print(f"runtime: {wall / 60:.1f} min wall, {(cpu.ru_utime + cpu.ru_stime) / 60:.1f} min CPU "
          f"(--max-children {args.max_children}, niceness {os.nice(0)})")
    for mod, names in sorted(survivors.items()):
        print(f"\nsurvivors in {mod} (not listed as equivalent):")
        for name in names:
            print(f"  {name}")
            for ln in diff_of(name.split()[0]):
                print(f"      {ln.strip()}")
    for msg in stale:
        print(f"stale equivalence entry: {msg}")
    if below:
        print(f"\nbelow the {TARGET:.0%} target: {', '.join(below)}")
    return 2 if code != 0 else 1 if below or stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
