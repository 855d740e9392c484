#!/usr/bin/env bash
# Mutation testing of the suite (issue 9): the score per module and the survivors.
#
#   bash benchmarks/mutation.sh [--keep] [--max-children N] [MUTANT_GLOB ...]
#
# Makes a private venv .venv-mut (mutmut and the test extras, `pip install -e .[test,mutation]`)
# on first use, then runs benchmarks/mutation.py there under `nice -n 19`, so it takes only
# idle CPU.  Configuration: [tool.mutmut] in pyproject.toml; equivalent mutants:
# benchmarks/mutation_equivalent.md.  Not part of CI (it takes tens of minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MUTATION_VENV:-.venv-mut}
if [ ! -x "$VENV/bin/mutmut" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet -e ".[test,mutation]"
fi
# Tests that run Python in a subprocess (the isolated CLI, the seed-reproducibility test)
# inherit MUTANT_UNDER_TEST; in mutmut's "stats" pass the subprocess's trampolines would
# look for pyproject.toml in its own working directory and fail.  Their hits are lost to
# mutmut anyway, so such a subprocess runs the original code (a mutant run still passes
# the mutant's name on, and the subprocess runs the mutant).
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo 'import os; os.environ.get("MUTANT_UNDER_TEST") == "stats" and os.environ.pop("MUTANT_UNDER_TEST")' \
    > "$SITE/mutmut_stats_in_subprocesses.pth"
# mutmut imports the mutated copies from mutants/; a PYTHONPATH would shadow them.
unset PYTHONPATH
exec nice -n 19 "$VENV/bin/python" benchmarks/mutation.py "$@"
