"""`ida-verify check` (not implemented yet)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of `ida-verify check`."""


def run(args: argparse.Namespace) -> int:
    """Run `ida-verify check`; return the exit status."""
    print("ida-verify check: not implemented yet", file=sys.stderr)
    return 1
