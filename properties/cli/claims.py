"""``ida-verify claims``: check every claim of CLAIMS.md and print the ledger (or, with
``--markdown``, print CLAIMS.md itself)."""

from __future__ import annotations

import argparse
import sys
import time


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer but got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer but got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a non-negative integer seed but got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer seed but got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``ida-verify claims``."""
    parser.add_argument(
        "claim",
        nargs="*",
        metavar="CLAIM",
        help="claim ids, or sequence-score-function / sequence-kl-gradient (default: every "
        "claim and both sequence proofs)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the ledger as JSON")
    output.add_argument(
        "--markdown",
        action="store_true",
        help="print CLAIMS.md (every claim, its statement and where it lives) and check nothing",
    )
    add_search_arguments(parser)


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """``--max-examples`` and ``--seed``, shared by ``claims`` and ``report``."""
    parser.add_argument(
        "--max-examples",
        type=_positive,
        default=60,
        help="Hypothesis examples per property (default 60)",
    )
    parser.add_argument(
        "--seed", type=_seed, default=0, help="seed of every search and sample (default 0)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the ledger; exit 0 iff every verdict equals its expected verdict."""
    from properties.claims import (
        CLAIM_IDS,
        SEQUENCE_PROOF_IDS,
        RunConfig,
        run_claims,
        run_sequence_proofs,
    )
    from properties.claims.ledger import render_json, render_table
    from properties.cli.main import UsageError
    from properties.cli.progress import progress_bar

    if args.markdown:
        from properties.claims import claims_markdown

        if args.claim:
            raise UsageError("ida-verify claims: --markdown prints every claim; it takes no CLAIM")
        sys.stdout.write(claims_markdown())
        return 0
    known = (*CLAIM_IDS, *SEQUENCE_PROOF_IDS)
    unknown = [c for c in args.claim if c not in known]
    if unknown:
        raise UsageError(
            f"ida-verify claims: unknown claim {unknown[0]!r} (known: {', '.join(known)})"
        )
    claim_ids = [c for c in args.claim if c in CLAIM_IDS]
    proof_ids = [c for c in args.claim if c in SEQUENCE_PROOF_IDS]
    config = RunConfig(max_examples=args.max_examples, seed=args.seed)
    start = time.perf_counter()
    # a bar on stderr only when stdout and stderr are terminals, never with --json
    with progress_bar("claims", enabled=False if args.json else None) as progress:
        results = run_claims(claim_ids, config, progress) if claim_ids or not args.claim else []
    sequence = run_sequence_proofs(proof_ids or (None if not args.claim else []))
    seconds = time.perf_counter() - start
    if args.json:
        print(
            render_json(
                results,
                seconds=seconds,
                config={"max_examples": config.max_examples, "seed": config.seed},
                sequence=sequence,
            )
        )
    else:
        print(render_table(results, seconds=seconds, sequence=sequence))
    proved = all(row["verdict"] == row["expected"] for row in sequence)
    return 0 if all(r.as_expected for r in results) and proved else 1
