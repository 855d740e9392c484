"""``ida-verify report --out DIR``: the claims ledger and the figures, as an HTML page.

Writes ``DIR/index.html`` with its PNGs and the JSON they were drawn from
(:func:`properties.report.page.write_report`), atomically.  Exit status: 0 when every verdict
equals its expected one, 1 otherwise (the report is written either way), 2 for bad usage,
an ``--out`` that must not be replaced, or a missing matplotlib (one line on stderr).
"""

from __future__ import annotations

import argparse

from properties.cli.claims import add_search_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``ida-verify report``."""
    parser.add_argument(
        "claim", nargs="*", metavar="CLAIM", help="claim ids for the ledger (default: all)"
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        type=_out_dir,
        help="directory to write (new, empty, or a previous report, which is replaced "
        "only once the new one is complete)",
    )
    add_search_arguments(parser)


def _size(path: object) -> int:
    from pathlib import Path

    return sum(f.stat().st_size for f in Path(str(path)).iterdir() if f.is_file())


def run(args: argparse.Namespace) -> int:
    """Write the report; exit 0 iff every verdict equals its expected verdict."""
    import json
    import time

    from impl.errors import InvalidArgument
    from properties.claims import CLAIM_IDS, RunConfig
    from properties.cli.main import UsageError
    from properties.cli.progress import progress_bar
    from properties.report.page import ReportUnavailable, write_report

    unknown = [c for c in args.claim if c not in CLAIM_IDS]
    if unknown:
        raise UsageError(
            f"ida-verify report: unknown claim {unknown[0]!r} (known: {', '.join(CLAIM_IDS)})"
        )
    config = RunConfig(max_examples=args.max_examples, seed=args.seed)
    start = time.perf_counter()
    try:
        with progress_bar("report") as progress:
            out = write_report(
                args.out, config=config, claim_ids=args.claim or None, progress=progress
            )
    except (ReportUnavailable, InvalidArgument) as exc:
        raise UsageError(f"ida-verify report: {exc}".replace("\n", " ")) from None
    seconds = time.perf_counter() - start
    claims = json.loads((out / "ledger.json").read_text(encoding="utf-8"))["claims"]
    ok = sum(c["verdict"] == c["expected"] for c in claims)
    print(
        f"wrote {out / 'index.html'} ({ok}/{len(claims)} claims as expected; "
        f"{_size(out) / 1e6:.2f} MB; {seconds:.1f} s)"
    )
    return 0 if ok == len(claims) else 1


def _out_dir(text: str) -> str:
    """argparse ``type`` of ``--out DIR``: a ``DIR`` that must not be replaced is bad usage, in
    the option's words (not the API's ``out_dir=... (type=str)``)."""
    from properties.cli.main import UsageError
    from properties.report.page import out_dir_problem

    problem = out_dir_problem(text, "--out")
    if problem is not None:
        raise UsageError(f"ida-verify report: {problem}")
    return text


def report_dir(text: str) -> str:
    """argparse ``type`` of ``--report DIR`` (``ida-verify check``): fail before the work starts.

    Refuses, as a usage error (one line naming ``--report``), a missing matplotlib and a
    ``DIR`` that must not be replaced.
    """
    from properties.cli.main import UsageError
    from properties.report.figures import require_matplotlib
    from properties.report.page import ReportUnavailable, out_dir_problem

    try:
        require_matplotlib()
    except ReportUnavailable as exc:
        raise UsageError(f"ida-verify check: --report: {exc}".replace("\n", " ")) from None
    problem = out_dir_problem(text, "--report")
    if problem is not None:
        raise UsageError(f"ida-verify check: {problem}")
    return text
