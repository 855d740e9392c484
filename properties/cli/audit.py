"""``ida-verify audit LIBRARY``: every configuration of an installed RL library, judged.

Exit status (a biased row is a finding about the library, not a failure of the audit):

* without ``--expect``: 0 when every configuration got a verdict (``unbiased``, ``scaled`` or
  ``biased``); 1 when any row is ``error`` or ``not checked`` (the audit covered less than the
  library offers, and says so);
* with ``--expect FILE`` (a previous ``--json`` output, or ``{"name": "verdict", ...}``): 0 when
  every selected configuration's verdict (``not checked`` and ``error`` included) equals the
  expected one; 1 otherwise, naming each difference on stderr (a configuration the file records
  and ``--only`` selects but the library no longer offers is a difference).  An ``error`` passes only where
  the file expects it (verl's ``clip_cov`` draws random tokens, so the checker's verdict on it is
  ``error``: nondeterministic).  This is the form for CI: record
  the matrix once, and a new release that changes a verdict fails the job;
* 2 for bad usage: an unknown library, a missing one (one line naming the extra to install),
  an unreadable ``--expect`` file, an ``--only`` that selects nothing, a ``--report`` directory
  that holds something other than a report, ``--ray`` without ray installed or with an address
  that is unreachable or does not answer as Ray within the time limit.

The printed matrix groups the rows that agree (:mod:`properties.audit.groups`; ``--no-group``
prints one row per configuration); ``--json`` gives each configuration's row with its group.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

LOCAL_RAY = "<local>"
"""``--ray`` without an address: start a local Ray instance."""


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
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="check only the configurations NAME ..., or the names starting with NAME when it ends "
        "in ':' or '*' (several names, or --only repeated)",
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
    parser.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL_RAY,
        default=None,
        metavar="ADDRESS",
        help="run the configurations as Ray tasks on the cluster at ADDRESS (as ray.init takes it: "
        "auto, HOST:PORT, ray://HOST:PORT); without ADDRESS, on a local Ray instance of --jobs CPUs",
    )
    parser.add_argument(
        "--report",
        metavar="DIR",
        help="also write the matrix as an HTML page (index.html, audit.json) into DIR",
    )
    parser.add_argument(
        "--no-group",
        dest="group",
        action="store_false",
        help="print one row per configuration instead of one per group of rows that agree",
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


def _summary(rows: list[Any], seconds: float, where: str) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    return f"{summary}; {seconds:.0f} s wall {where}"


def _count(n: int, noun: str) -> str:
    """``n noun``, plural unless one.

    >>> _count(1, "group"), _count(3, "configuration")
    ('1 group', '3 configurations')
    """
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _time(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds else "-"


def _precisions(rows: list[Any]) -> list[str]:
    """The precisions the rows were judged at, once each (``[]``: all strict float64)."""
    return sorted({r.precision for r in rows if r.precision})


def _precision_lines(rows: list[Any]) -> list[str]:
    """``judged at float32: rtol ..., atol ... (why)`` when the library declares the precision its
    code computes in (``PRECISION``, :mod:`properties.audit.core`): its rows are not strict float64."""
    return [f"judged at {p}" for p in _precisions(rows)]


def _table(rows: list[Any], library: str, version: str, seconds: float, where: str) -> str:
    """One row per configuration (``--no-group``)."""
    headers = ("configuration", "verdict", "constant", "time", "cause")
    cells = [(r.name, r.verdict, r.constant, _time(r.seconds), r.cause) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers[:4])]
    lines = [f"{library} {version}: {_count(len(rows), 'configuration')}", *_precision_lines(rows)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers[:4], widths, strict=True)) + "  cause")
    for c in cells:
        lines.append("  ".join(x.ljust(w) for x, w in zip(c[:4], widths, strict=True)) + "  " + c[4])
    lines.append(_summary(rows, seconds, where))
    return "\n".join(lines)


def _grouped_table(rows: list[Any], library: str, version: str, seconds: float, where: str) -> str:
    """One entry per group of rows that agree (:mod:`properties.audit.groups`): a line listing
    its configurations, then its verdict, constant, time (all its rows) and cause."""
    from properties.audit.groups import group_rows

    groups = group_rows(rows)
    lines = [
        f"{library} {version}: {_count(len(rows), 'configuration')} in "
        f"{_count(len(groups), 'group')} of rows that agree (--no-group: one row per configuration)",
        *_precision_lines(rows),
    ]
    width = len(str(len(groups)))
    for g in groups:
        lines.append(f"{g.number:>{width}}. {', '.join(g.names)}")
        parts = [g.verdict, g.constant, _time(g.seconds), g.cause]
        lines.append(" " * (width + 2) + "  ".join(p for p in parts if p))
    lines.append(_summary(rows, seconds, where))
    return "\n".join(lines)


def _connect_ray(args: argparse.Namespace, jobs: int) -> Any:
    from properties.audit import core

    address = None if args.ray == LOCAL_RAY else args.ray
    return core.RayCluster(address, num_cpus=jobs, connect_timeout=core.RAY_CONNECT_TIMEOUT)


def _payload(rows: list[Any], library: str, version: str, jobs: int, where: str,
             seconds: float) -> dict[str, Any]:
    """The ``--json`` output: one object per configuration (with its ``group``), the groups."""
    from properties.audit.groups import group_numbers, group_rows

    numbers = group_numbers(rows)
    return {
        "library": library,
        "version": version,
        "jobs": jobs,
        "runner": where,
        "seconds": round(seconds, 3),
        "precision": _precisions(rows),
        "rows": [{**r.to_dict(), "group": n} for r, n in zip(rows, numbers, strict=True)],
        "groups": [
            {"group": g.number, "verdict": g.verdict, "constant": g.constant, "cause": g.cause,
             "configurations": list(g.names)}
            for g in group_rows(rows)
        ],
    }


EXIT_TERMINATED = 128 + 15
"""Exit status after SIGTERM (what shells report)."""


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """SIGTERM (a CI timeout, ``kill``) exits with one line and :data:`EXIT_TERMINATED`, through
    the pool's clean-up, which stops its workers (killed outright, the parent left them running)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, frame: Any) -> None:
        print("ida-verify audit: terminated", file=sys.stderr)
        raise SystemExit(EXIT_TERMINATED)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    """Audit the library; the exit status is the module docstring's."""
    from properties.audit.core import NOT_CHECKED, RayUnavailable, library_module, run_audit
    from properties.cli.main import UsageError

    module = library_module(args.library)
    if args.report:
        from properties.report.page import out_dir_problem

        problem = out_dir_problem(args.report, "--report")
        if problem is not None:
            raise UsageError(f"ida-verify audit: {problem}")
    try:
        version = module.version()
    except ImportError as exc:
        raise UsageError(
            f"ida-verify audit: {args.library} cannot be imported ({exc}); "
            f"install it with: pip install 'ida-verify[{module.EXTRA}]'"
        ) from None
    expect = _load_expect(args.expect) if args.expect else None
    configs = [c for c in module.configurations() if _selected(c.name, args.only)]
    if not configs:
        raise UsageError(f"ida-verify audit: --only {' '.join(args.only)} selects no configuration")
    if args.list:
        if args.json:
            listed = [
                {"name": c.name, "axes": dict(c.axes), "not_checked": c.not_checked} for c in configs
            ]
            print(json.dumps({"library": args.library, "version": version, "configurations": listed},
                             indent=2))
            return 0
        for c in configs:
            print(c.name if c.not_checked is None else f"{c.name}  ({NOT_CHECKED}: {c.not_checked})")
        return 0
    jobs = args.jobs or os.cpu_count() or 1
    ray = None
    if args.ray is not None:
        ray = _connect_ray(args, jobs)
        where = f"on Ray ({'a local instance' if ray.address is None else ray.address})"
        in_flight = args.jobs or len(configs)
    else:
        where = f"with --jobs {jobs}"
        in_flight = min(jobs, len(configs))
    from properties.cli.progress import progress_bar

    start = time.perf_counter()
    with progress_bar(f"audit {args.library}", enabled=False if args.json else None) as progress:
        finished: list[str] = []

        def on_row(row: Any) -> None:
            finished.append(row.name)
            progress(len(finished), len(configs), row.name)

        progress(0, len(configs), "")
        try:
            with _terminate_cleanly():
                rows = run_audit(configs, version, jobs=in_flight, on_row=on_row, ray=ray,
                                 diagnose=args.diagnose)
        except RayUnavailable as exc:
            raise UsageError(f"ida-verify audit: {exc}") from None
    seconds = time.perf_counter() - start
    payload = _payload(rows, args.library, version, jobs, where, seconds)
    if args.json:
        print(json.dumps(payload, indent=2))
    elif args.group:
        print(_grouped_table(rows, args.library, version, seconds, where))
    else:
        print(_table(rows, args.library, version, seconds, where))
    if args.report:
        from properties.report.audit_page import write_audit_report

        out = write_audit_report(args.report, payload)
        print(f"wrote {out / 'index.html'}", file=sys.stderr if args.json else sys.stdout)
    if expect is None:
        status = 1 if any(r.verdict in ("error", NOT_CHECKED) for r in rows) else 0
    else:
        differences = [
            f"{r.name}: {r.verdict}, expected {expect.get(r.name, 'no entry')}"
            for r in rows
            if expect.get(r.name) != r.verdict
        ]
        # a recorded configuration the library no longer has is a change too (when selected)
        offered = {c.name for c in module.configurations()}
        differences += [
            f"{name}: no longer a configuration of {args.library} {version}, expected {verdict}"
            for name, verdict in expect.items()
            if name not in offered and _selected(name, args.only)
        ]
        for line in differences:
            print(f"ida-verify audit: {line}", file=sys.stderr)
        status = 1 if differences else 0
    return status
