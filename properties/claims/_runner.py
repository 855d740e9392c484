r"""Run the claims: the ordered registry of how each claim is checked, and its verdict.

:data:`CLAIM_CHECKS` gathers the :class:`~properties.claims._common.ClaimSpec` of every
claim from the family modules (:mod:`properties.claims.estimators`, ``rl``,
``imitation``, ``indicator``, ``search``, ``amplification``), in ledger order; the
statements and proofs of a family ``F`` are in ``spec/claims/F.py``.

Verdicts (never hard-coded; each comes from what the checks found):

* expected ``proved``: ``proved`` iff the SymPy derivation in :mod:`spec` checks, holds
  for every size (scope ``general``: a proof whose steps are bounded only is a finite
  check, "checked only for n <= N") **and** no numeric property finds a violation;
  otherwise ``failed``.
* expected ``holds``: ``holds`` iff no property finds a violation; otherwise ``failed``.
* expected ``refuted``: ``refuted`` iff Hypothesis finds a counterexample to the
  claimed equivalence, shrinks it, and :mod:`spec` confirms it exactly in
  rationals; otherwise ``holds`` (which differs from the expectation).
* whatever the expectation: ``error`` if a property missed its planted violation (or has
  none, or a statistical property ran no test), or a counterexample search or its
  confirmation accepts a case where the claim holds (:mod:`properties.claims._planted`):
  a check that checks nothing is not a pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from properties.claims import amplification, estimators, imitation, indicator, rl
from properties.claims import search as search_family
from properties.claims._common import ClaimResult, ClaimSpec, RunConfig, Verdict
from properties.claims._planted import planted_rows
from properties.claims._violations import SearchOutcome, search

FAMILIES: tuple[ModuleType, ...] = (estimators, rl, imitation, indicator, search_family, amplification)
"""The family modules, in ledger order; each defines ``CHECKS``, its claims in ledger order.

Their names are the families of :data:`spec.claims.FAMILIES` (a test holds the two to the
same claims in the same order; :mod:`spec` is not imported here, to keep SymPy out of the
start-up of ``ida-verify``)."""

CLAIM_CHECKS: tuple[ClaimSpec, ...] = tuple(c for module in FAMILIES for c in module.CHECKS)
"""How each claim is checked, in ledger order."""

CLAIM_IDS: tuple[str, ...] = tuple(c.id for c in CLAIM_CHECKS)
"""Every claim id, in ledger order."""


def _spec_proof(claim_id: str) -> tuple[bool, dict[str, Any], Any]:
    """Run the SymPy proof of a claim (spec/), returning (ok, evidence, spec claim)."""
    import spec

    claim = spec.get_claim(claim_id)
    proof = claim.prove()
    info = _proof_row(proof)
    # a bounded-only proof is a finite check, not a proof: the claim is not "proved"
    return bool(proof.proved), info, claim


def _proof_row(proof: Any) -> dict[str, Any]:
    """The ledger's evidence of one SymPy proof: ok, proved (general), scope, steps, time."""
    info: dict[str, Any] = {
        "kind": "sympy derivation",
        "ok": proof.ok,
        "proved": proof.proved,
        "scope": proof.scope,
        "bounds": list(proof.bounds),
        "steps": len(proof.steps),
        "seconds": round(proof.seconds, 3),
    }
    if not proof.ok:
        info["failed_steps"] = [s.description for s in proof.failed]
    elif not proof.proved:
        info["not_proved"] = "checked only for " + "; ".join(proof.bounds) + ": no general derivation"
    return info


SEQUENCE_PROOF_IDS: tuple[str, ...] = ("sequence-score-function", "sequence-kl-gradient")
"""The sequence-level proofs behind the sequence checker (:data:`spec.sequence.SEQUENCE_PROOFS`,
named here so that the ledger's start-up does not import SymPy; a test holds the two equal)."""


def run_sequence_proofs(ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Prove the sequence-level identities (:mod:`spec.sequence`); one ledger row each.

    A row's ``verdict`` is ``"proved"`` only for a proof that checks for every size.
    """
    from spec.sequence import SEQUENCE_PROOFS

    rows = []
    for proof_id in ids if ids is not None else SEQUENCE_PROOF_IDS:
        info = _proof_row(SEQUENCE_PROOFS[proof_id]())
        verdict = "proved" if info["proved"] else "failed"
        rows.append({"id": proof_id, "verdict": verdict, "expected": "proved", "proof": info})
    return rows


def _statement(claim_id: str) -> str:
    import spec

    return str(spec.get_claim(claim_id).text)


def run_claim(claim_id: str, config: RunConfig | None = None) -> ClaimResult:
    """Check one claim and return its ledger row.

    >>> run_claim("self-inclusive-baseline-scales", RunConfig(max_examples=5)).verdict
    'proved'
    """
    config = config or RunConfig()
    spec_claim = {c.id: c for c in CLAIM_CHECKS}.get(claim_id)
    if spec_claim is None:
        raise KeyError(f"unknown claim {claim_id!r}; known: {', '.join(CLAIM_IDS)}")
    start = time.perf_counter()
    evidence: dict[str, Any] = {}
    counterexample: dict[str, Any] | None = None
    failed = False

    if spec_claim.expected == "proved":
        ok, info, _ = _spec_proof(claim_id)
        evidence["proof"] = info
        failed |= not ok

    outcomes: list[SearchOutcome[Any]] = []
    for prop in spec_claim.properties:
        n = max(1, round(config.max_examples * prop.examples_factor))
        out = search(prop.name, prop.strategy, prop.check, max_examples=n, seed=config.seed)
        outcomes.append(out)
        if out.found and counterexample is None:
            assert out.violation is not None
            counterexample = {
                "property": prop.name,
                "violation": out.violation.message,
                **out.violation.details,
            }
            failed = True
    evidence["properties"] = [
        {
            "name": o.name,
            "examples": o.examples,
            "seconds": round(o.seconds, 3),
            "violated": o.found,
        }
        for o in outcomes
    ]
    stat_rows = []
    for sp in spec_claim.statistical:
        t0 = time.perf_counter()
        so = sp.run(config.seed)
        stat_rows.append(
            {
                "name": sp.name,
                "tests": so.tests,
                "rejections": so.rejections,
                "family_alpha": so.alpha,
                "power": so.power,
                "detail": so.detail,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        if so.rejections and counterexample is None:
            counterexample = {
                "property": sp.name,
                **(so.counterexample or {}),
                "note": (
                    f"a calibrated sampling test: when the claim is true it rejects in at most "
                    f"{so.alpha:g} of seeds, so rerun with other --seed values before treating "
                    f"this as a real failure (this run: --seed {config.seed})"
                ),
            }
            failed = True
    if stat_rows:
        evidence["statistical"] = stat_rows

    # every property must catch its planted violation, or its silence proves nothing
    planted = planted_rows(spec_claim, config.seed)
    planted += [
        {"property": row["name"], "planted": None, "caught": False, "problem": "ran no test"}
        for row in stat_rows
        if row["tests"] == 0
    ]
    evidence["planted"] = planted
    vacuous = [row for row in planted if row["problem"] is not None]

    verdict: Verdict
    if spec_claim.counterexample is not None:
        prop = spec_claim.counterexample
        out = search(
            prop.name,
            prop.strategy,
            prop.check,
            max_examples=max(1, round(config.max_examples * prop.examples_factor)),
            seed=config.seed,
        )
        evidence["counterexample_search"] = {
            "name": prop.name,
            "examples": out.examples,
            "seconds": round(out.seconds, 3),
        }
        if out.found and out.violation is not None:
            assert spec_claim.confirm is not None  # ClaimSpec requires it with a counterexample
            confirmed, exact = spec_claim.confirm(out.case)
            evidence["exact_confirmation"] = exact
            counterexample = {"search": out.violation.message, **out.violation.details}
            verdict = "refuted" if confirmed and not failed else "failed"
        else:
            verdict = "failed" if failed else "holds"
    else:
        verdict = "failed" if failed else spec_claim.expected
    if vacuous:
        verdict = "error"
        counterexample = {
            "vacuous property": vacuous[0]["property"],
            "problem": vacuous[0]["problem"],
            **({} if counterexample is None else {"also found": counterexample}),
        }
    evidence["seconds"] = round(time.perf_counter() - start, 3)
    return ClaimResult(
        claim_id, _statement(claim_id), spec_claim.expected, verdict, evidence, counterexample
    )


def run_claims(
    ids: Sequence[str] | None = None,
    config: RunConfig | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[ClaimResult]:
    """Check the claims ``ids`` (default: all, in CLAIMS.md order)."""
    chosen = list(ids) if ids else list(CLAIM_IDS)
    results = []
    for i, cid in enumerate(chosen):
        if progress is not None:
            progress(i, len(chosen), cid)
        results.append(run_claim(cid, config))
    if progress is not None:
        progress(len(chosen), len(chosen), "")
    return results


__all__ = [
    "CLAIM_CHECKS",
    "CLAIM_IDS",
    "SEQUENCE_PROOF_IDS",
    "ClaimResult",
    "ClaimSpec",
    "RunConfig",
    "run_claim",
    "run_claims",
    "run_sequence_proofs",
]
