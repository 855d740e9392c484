"""`ida-verify prove [CLAIM ...] [--json]`: print and check the symbolic proofs in :mod:`spec`.

With no CLAIM, every "proved" claim of ``CLAIMS.md`` is proved.  A named "refuted" claim
shows its known counterexample, confirmed exactly; a named "holds" claim is only stated
(it is checked by ``ida-verify claims``).  Exit status 0 only if every proof checks (and
every named refutation is confirmed), 1 otherwise, 2 for an unknown claim id.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from properties.cli.main import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of `ida-verify prove`."""
    parser.add_argument(
        "claims",
        nargs="*",
        metavar="CLAIM",
        help="claim ids from CLAIMS.md (default: every claim expected to be 'proved')",
    )
    parser.add_argument("--json", action="store_true", help='print {"proofs": [...]} as JSON')


def _select(ids: list[str]) -> list[Any]:
    from spec import CLAIMS

    unknown = [c for c in ids if c not in CLAIMS]
    if unknown:
        raise UsageError(
            f"ida-verify prove: unknown claim id {unknown[0]!r} (known: {', '.join(CLAIMS)})"
        )
    if not ids:
        return [c for c in CLAIMS.values() if c.provable]
    seen: dict[str, Any] = {}
    for claim_id in ids:
        seen.setdefault(claim_id, CLAIMS[claim_id])
    return list(seen.values())


def run(args: argparse.Namespace) -> int:
    """Run `ida-verify prove`; return the exit status."""
    claims = _select(list(args.claims))
    start = time.perf_counter()
    proofs: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    texts: list[str] = []
    all_ok = True
    for claim in claims:
        if claim.provable:
            proof = claim.prove()
            all_ok = all_ok and proof.ok
            proofs.append(proof.to_dict())
            texts.append(proof.render())
        elif claim.expected == "refuted":
            result = claim.refute()
            all_ok = all_ok and result.refutes
            others.append(
                {"claim": claim.id, "expected": claim.expected, "refutes": result.refutes,
                 "counterexample": result.report()}
            )
            texts.append(
                f"{claim.id}: {'REFUTED' if result.refutes else 'NOT REFUTED'} (no proof; "
                f"expected 'refuted')\n  statement: {claim.statement}\n  {result.report()}"
            )
        else:
            others.append({"claim": claim.id, "expected": claim.expected, "statement": claim.text})
            texts.append(
                f"{claim.id}: no symbolic proof (expected {claim.expected!r}; checked by "
                f"`ida-verify claims`)\n  statement: {claim.statement}"
            )
    total = time.perf_counter() - start
    if args.json:
        print(json.dumps({"ok": all_ok, "seconds": round(total, 3), "proofs": proofs,
                          "other": others}, indent=2))
    else:
        print("\n\n".join(texts))
        failed = [p["claim"] for p in proofs if not p["ok"]]
        summary = f"{len(proofs)} proof(s), {len(failed)} failed, {total:.2f} s total"
        if proofs:
            slowest = max(proofs, key=lambda p: float(p["seconds"]))
            summary += f"; slowest {slowest['claim']} ({slowest['seconds']:.2f} s)"
        print("\n" + summary + ("" if not failed else "; FAILED: " + ", ".join(failed)))
    return 0 if all_ok else 1
