"""`ida-verify claims` (not implemented yet)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of `ida-verify claims`."""


def run(args: argparse.Namespace) -> int:
    """Run `ida-verify claims`; return the exit status."""
    print("ida-verify claims: not implemented yet", file=sys.stderr)
    return 1
