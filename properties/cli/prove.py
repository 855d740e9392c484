"""`ida-verify prove [CLAIM ...] [--json]`: print and check the symbolic proofs in :mod:`spec`.

With no CLAIM, every "proved" claim of ``CLAIMS.md`` is proved, then the sequence-level
identities behind the sequence checker (``sequence-score-function``,
``sequence-kl-gradient``, :mod:`spec.sequence`).  A named "refuted" claim shows its
documented counterexample, confirmed exactly; a named "holds" claim is only stated (it is
checked by ``ida-verify claims``).  Exit status 0 only if every proof checks for every
size (a proof whose steps are bounded only is "CHECKED only for n <= N", not proved) and
every named refutation is confirmed exactly, 1 otherwise, 2 for an unknown claim id.
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
        help="claim ids from CLAIMS.md, or sequence-score-function / sequence-kl-gradient "
        "(default: every claim expected to be 'proved' and both sequence proofs)",
    )
    parser.add_argument("--json", action="store_true", help='print {"proofs": [...]} as JSON')


def _select(ids: list[str]) -> list[Any]:
    """The claims and sequence-proof ids to show, in order (default: everything provable)."""
    from spec import CLAIMS
    from spec.sequence import SEQUENCE_PROOFS

    known = [*CLAIMS, *SEQUENCE_PROOFS]
    unknown = [c for c in ids if c not in known]
    if unknown:
        raise UsageError(
            f"ida-verify prove: unknown claim id {unknown[0]!r} (known: {', '.join(known)})"
        )
    if not ids:
        return [c for c in CLAIMS.values() if c.provable] + list(SEQUENCE_PROOFS)
    return [CLAIMS.get(claim_id, claim_id) for claim_id in dict.fromkeys(ids)]


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _summary(proofs: list[dict[str, Any]], others: list[dict[str, Any]], total: float) -> str:
    """One line: what was proved, what was only checked, what failed; refutations; time."""
    parts: list[str] = []
    if proofs:
        failed = [p["claim"] for p in proofs if not p["ok"]]
        bounded = [p["claim"] for p in proofs if p["ok"] and not p["proved"]]
        text = f"{_plural(len(proofs), 'proof', 'proofs')}, {len(failed)} failed"
        if bounded:
            text += f", {len(bounded)} checked only for bounded sizes ({', '.join(bounded)})"
        parts.append(text)
    refuted = [o for o in others if "refutes" in o]
    if refuted:
        confirmed = sum(bool(o["refutes"]) for o in refuted)
        text = f"{_plural(len(refuted), 'refuted claim', 'refuted claims')}, " + (
            f"{confirmed} counterexample(s) confirmed exactly"
        )
        if confirmed < len(refuted):
            text += f", {len(refuted) - confirmed} NOT confirmed"
        parts.append(text)
    stated = len(others) - len(refuted)
    if stated:
        parts.append(f"{_plural(stated, 'claim', 'claims')} stated only (no symbolic proof)")
    parts.append(f"{total:.2f} s total")
    if proofs:
        slowest = max(proofs, key=lambda p: float(p["seconds"]))
        parts[-1] += f"; slowest {slowest['claim']} ({slowest['seconds']:.2f} s)"
    failed_ids = [p["claim"] for p in proofs if not p["proved"]]
    failed_ids += [o["claim"] for o in refuted if not o["refutes"]]
    return "; ".join(parts) + ("" if not failed_ids else "; FAILED: " + ", ".join(failed_ids))


def run(args: argparse.Namespace) -> int:
    """Run `ida-verify prove`; return the exit status."""
    from spec.sequence import SEQUENCE_PROOFS

    claims = _select(list(args.claims))
    start = time.perf_counter()
    proofs: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    texts: list[str] = []
    all_ok = True
    for claim in claims:
        if isinstance(claim, str) or claim.provable:
            proof = SEQUENCE_PROOFS[claim]() if isinstance(claim, str) else claim.prove()
            all_ok = all_ok and proof.proved
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
        print("\n" + _summary(proofs, others, total))
    return 0 if all_ok else 1
