"""The ``ida-verify`` command line.

Subcommands live in their own modules (``properties.cli.<name>``), each with
``add_arguments(parser)`` and ``run(args) -> int``; this module only dispatches.
Exit status: 0 success, 1 a verdict other than the expected one, 2 bad usage
(with one line on stderr saying what was wrong), 130 interrupted (Ctrl-C, or a
``KeyboardInterrupt`` raised by checked code; one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from properties._version import __version__

COMMANDS: dict[str, str] = {
    "claims": "check every claim of CLAIMS.md and print the ledger",
    "prove": "print and check the symbolic proofs in spec/",
    "check": "check a user's gradient estimator for bias (PATH.py:FUNC or module:FUNC)",
    "compare": "compare estimators on the same problems: verdict, constant, exact variance and MSE "
    "against REINFORCE",
    "report": "write the claims ledger and its figures as an HTML page (needs matplotlib)",
    "audit": "check every configuration of an installed RL library (verl) and print the matrix",
}


class UsageError(Exception):
    """Bad command-line usage: reported as one line on stderr, exit status 2."""


class Interrupted(Exception):
    """The run was interrupted (a ``KeyboardInterrupt`` in checked code): one line on stderr, exit 130."""


EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT, what shells report)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every subcommand's arguments."""
    parser = _Parser(
        prog="ida-verify",
        description="Verify the RL-vs-imitation equivalence claims of iterated amplification, "
        "and check REINFORCE-style gradient estimators for bias.",
    )
    parser.add_argument("--version", action="version", version=f"ida-verify {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"properties.cli.{name}")
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ida-verify`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError(
                "ida-verify: a command is required (one of: " + ", ".join(COMMANDS) + ")"
            )
        module = importlib.import_module(f"properties.cli.{args.command}")
        status: int = module.run(args)
        return status
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("ida-verify: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> NoReturn:  # pragma: no cover - thin wrapper for the console script
    try:
        status = main()
        sys.stdout.flush()
    except KeyboardInterrupt:  # a second Ctrl-C while main() was reporting the first
        status = EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (ida-verify ... | head): not an error of ours; keep Python
        # from complaining again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    sys.exit(status)
