"""``ida-verify audit LIBRARY``: every configuration of an installed RL library, judged.

Exit status (a biased row is a finding about the library, not a failure of the audit):

* without ``--expect``: 0 when every configuration got a verdict (``unbiased``, ``scaled`` or
  ``biased``); 1 when any row is ``error`` or ``not checked`` (the audit covered less than the
  library offers, and says so);
* with ``--expect FILE`` (a previous ``--json`` output, or ``{"name": "verdict", ...}``): 0 when
  every selected configuration's verdict (``not checked`` and ``error`` included) equals the
  expected one; 1 otherwise, naming each difference on stderr.  An ``error`` passes only where
  the file expects it (verl's ``clip_cov`` draws random tokens, so the checker's verdict on it is
  ``error``: nondeterministic).  This is the form for CI: record
  the matrix once, and a new release that changes a verdict fails the job;
* 2 for bad usage: an unknown library, a missing one (one line naming the extra to install),
  an unreadable ``--expect`` file, an ``--only`` that selects nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer but got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer but got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``ida-verify audit``."""
    from properties.audit.core import LIBRARIES

    parser.add_argument("library", choices=sorted(LIBRARIES), help="the installed library to audit")
    parser.add_argument("--json", action="store_true", help="print the matrix as JSON")
    parser.add_argument(
        "--jobs",
        type=_jobs,
        default=None,
        help="configurations checked at once, each in its own process (default: the number of cores)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="check only the configuration NAME, or the names starting with NAME when it ends in "
        "':' or '*' (repeatable)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the configurations and check nothing"
    )
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="name each biased or scaled row's cause with the diagnosis (several seconds a row)",
    )
    parser.add_argument(
        "--expect",
        metavar="FILE",
        help="JSON of expected verdicts (a previous --json output): exit 0 iff every verdict matches",
    )


def _selected(name: str, patterns: list[str]) -> bool:
    if not patterns:
        return True
    return any(
        name.startswith(p.rstrip("*")) if p.endswith(("*", ":")) else name == p for p in patterns
    )


def _load_expect(path: str) -> dict[str, str]:
    from properties.cli.main import UsageError

    try:
        with open(path, encoding="utf-8") as handle:
            data: Any = json.load(handle)
    except (OSError, ValueError) as exc:
        raise UsageError(f"ida-verify audit: cannot read --expect {path}: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = {r.get("name"): r.get("verdict") for r in data["rows"] if isinstance(r, dict)}
    if not (
        isinstance(data, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
    ):
        raise UsageError(
            f"ida-verify audit: --expect {path} must map configuration names to verdicts"
        )
    return data


def _table(rows: list[Any], library: str, version: str, seconds: float, jobs: int) -> str:
    headers = ("configuration", "verdict", "constant", "time", "cause")
    cells = [
        (r.name, r.verdict, r.constant, f"{r.seconds:.1f}s" if r.seconds else "-", r.cause)
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers[:4])]
    lines = [f"{library} {version}: {len(rows)} configurations"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers[:4], widths, strict=True)) + "  cause")
    for c in cells:
        lines.append("  ".join(x.ljust(w) for x, w in zip(c[:4], widths, strict=True)) + "  " + c[4])
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    lines.append(f"{summary}; {seconds:.0f} s wall with --jobs {jobs}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Audit the library; the exit status is the module docstring's."""
    from properties.audit.core import NOT_CHECKED, library_module, run_audit
    from properties.cli.main import UsageError

    module = library_module(args.library)
    try:
        version = module.version()
    except ImportError as exc:
        raise UsageError(
            f"ida-verify audit: {args.library} is not installed ({exc}); "
            f"install it with: pip install 'ida-verify[{module.EXTRA}]'"
        ) from None
    expect = _load_expect(args.expect) if args.expect else None
    configs = [c for c in module.configurations() if _selected(c.name, args.only)]
    if not configs:
        raise UsageError(f"ida-verify audit: --only {' '.join(args.only)} selects no configuration")
    if args.list:
        for c in configs:
            print(c.name if c.not_checked is None else f"{c.name}  ({NOT_CHECKED}: {c.not_checked})")
        return 0
    jobs = args.jobs or os.cpu_count() or 1
    from properties.cli.progress import progress_bar

    start = time.perf_counter()
    with progress_bar(f"audit {args.library}", enabled=False if args.json else None) as progress:
        finished: list[str] = []

        def on_row(row: Any) -> None:
            finished.append(row.name)
            progress(len(finished), len(configs), row.name)

        progress(0, len(configs), "")
        rows = run_audit(configs, version, jobs=min(jobs, len(configs)), on_row=on_row,
                         diagnose=args.diagnose)
    seconds = time.perf_counter() - start
    if args.json:
        payload = {
            "library": args.library,
            "version": version,
            "jobs": jobs,
            "seconds": round(seconds, 3),
            "rows": [r.to_dict() for r in rows],
        }
        print(json.dumps(payload, indent=2))
    else:
        print(_table(rows, args.library, version, seconds, jobs))
    if expect is None:
        status = 1 if any(r.verdict in ("error", NOT_CHECKED) for r in rows) else 0
    else:
        differences = [
            f"{r.name}: {r.verdict}, expected {expect.get(r.name, 'no entry')}"
            for r in rows
            if expect.get(r.name) != r.verdict
        ]
        for line in differences:
            print(f"ida-verify audit: {line}", file=sys.stderr)
        status = 1 if differences else 0
    return status
