"""`ida-verify prove` (not implemented yet)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of `ida-verify prove`."""


def run(args: argparse.Namespace) -> int:
    """Run `ida-verify prove`; return the exit status."""
    print("ida-verify prove: not implemented yet", file=sys.stderr)
    return 1
