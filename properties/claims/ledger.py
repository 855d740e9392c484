"""Render the claims ledger as a table or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from properties.claims import ClaimResult


def _evidence_line(r: ClaimResult) -> str:
    return _evidence_text(r.evidence)


def _evidence_text(ev: dict[str, Any]) -> str:
    parts = []
    proof = ev.get("proof")
    if proof:
        steps = f"{proof['steps']} steps"
        if not proof["ok"]:
            scope = "general n" if proof["scope"] == "general" else "bounded: " + "; ".join(proof["bounds"])
            parts.append(f"sympy FAILED ({steps}, {scope})")
        elif proof["scope"] == "general":
            parts.append(f"sympy ok ({steps}, general n)")
        else:
            bounds = "; ".join(proof["bounds"])
            parts.append(f"sympy checked only for {bounds} ({steps}, bounded: NOT a proof)")
    props = ev.get("properties", [])
    if props:
        examples = sum(p["examples"] for p in props)
        parts.append(f"{len(props)} {'property' if len(props) == 1 else 'properties'}, {examples} examples")
    for st in ev.get("statistical", []):
        parts.append(
            f"{st['tests']} calibrated tests, {st['rejections']} rejections (family alpha {st['family_alpha']})"
        )
    planted = ev.get("planted", [])
    if planted:
        caught = sum(bool(row["caught"]) for row in planted)
        text = f"{caught}/{len(planted)} planted violations caught"
        missed = [row["property"] for row in planted if not row["caught"]]
        parts.append(text if not missed else f"{text} (VACUOUS: {missed[0]})")
    search = ev.get("counterexample_search")
    if search:
        parts.append(f"counterexample after {search['examples']} examples")
    exact = ev.get("exact_confirmation")
    if exact:
        parts.append("confirmed exactly" if exact["refutes"] else "NOT confirmed exactly")
    parts.append(f"{ev.get('seconds', proof['seconds'] if proof else 0.0):.2f} s")
    return "; ".join(parts)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)


def render_table(
    results: Sequence[ClaimResult],
    *,
    seconds: float,
    sequence: Sequence[dict[str, Any]] = (),
) -> str:
    """The human-readable ledger: one row per claim, the sequence proofs, the counterexamples."""
    width = max([len(r.id) for r in results] + [len(row["id"]) for row in sequence])
    lines = [f"{'claim':<{width}}  {'verdict':<8}  {'expected':<8}  evidence", "-" * (width + 80)]
    for r in results:
        mark = "" if r.as_expected else "   <-- differs from CLAIMS.md"
        lines.append(f"{r.id:<{width}}  {r.verdict:<8}  {r.expected:<8}  {_evidence_line(r)}{mark}")
    if sequence:
        lines.append("")
        lines.append("Sequence-level proofs (the identities behind `check --sequence`, spec/sequence.py):")
        for row in sequence:
            mark = "" if row["verdict"] == row["expected"] else "   <-- not proved"
            text = _evidence_text({"proof": row["proof"]})
            lines.append(f"{row['id']:<{width}}  {row['verdict']:<8}  {row['expected']:<8}  {text}{mark}")
    shown = [r for r in results if r.counterexample is not None]
    if shown:
        lines.append("")
        lines.append("Counterexamples (shrunk by Hypothesis):")
        from properties.claims._violations import readable

        for r in shown:
            assert r.counterexample is not None
            lines.append(f"  {r.id} [{r.verdict}]")
            for key, value in readable(r.counterexample).items():
                lines.append(f"      {key}: {_format_value(value)}")
            exact = r.evidence.get("exact_confirmation")
            if exact:
                lines.append(f"      exact (spec/): {exact['report']}")
    ok = sum(r.as_expected for r in results)
    lines.append("")
    summary = f"{ok}/{len(results)} claims have their expected verdict"
    if sequence:
        proved = sum(row["verdict"] == "proved" for row in sequence)
        summary += f"; {proved}/{len(sequence)} sequence proofs proved"
    lines.append(f"{summary} ({seconds:.1f} s)")
    return "\n".join(lines)


def render_json(
    results: Sequence[ClaimResult],
    *,
    seconds: float,
    config: dict[str, Any],
    sequence: Sequence[dict[str, Any]] | None = None,
) -> str:
    """``{"claims": [...], "seconds": ..., "config": {...}}``, and ``"sequence_proofs"`` if run."""
    data: dict[str, Any] = {"claims": [r.to_dict() for r in results]}
    if sequence is not None:
        data["sequence_proofs"] = list(sequence)
    data.update({"seconds": round(seconds, 3), "config": config})
    return json.dumps(data, indent=2)


__all__ = ["render_json", "render_table"]
