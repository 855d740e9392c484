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
# mutmut imports the mutated copies from mutants/; a PYTHONPATH would shadow them.
unset PYTHONPATH
exec nice -n 19 "$VENV/bin/python" benchmarks/mutation.py "$@"
