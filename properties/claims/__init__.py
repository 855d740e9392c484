"""The claims ledger: one executable property per claim of CLAIMS.md, and its verdict.

:func:`run_claim` checks one claim and returns its ledger row (:class:`ClaimResult`);
:func:`run_claims` checks several, reporting progress through an optional
``progress(i, total, claim_id)`` callback; :func:`run_sequence_proofs` proves the
sequence-level identities of :mod:`spec.sequence` (the ledger runs them after the
claims).  Every property must first catch its planted violation
(:mod:`properties.claims._planted`).  :data:`CLAIM_CHECKS` holds how each claim is
checked (:class:`ClaimSpec`), in ledger order, gathered from one module per claim family:

* :mod:`properties.claims.estimators`, :mod:`properties.claims.rl`,
  :mod:`properties.claims.imitation`, :mod:`properties.claims.indicator`,
  :mod:`properties.claims.search`, :mod:`properties.claims.amplification`

(the statements and proofs of family ``F`` are in ``spec/claims/F.py``;
``spec.claims.FAMILIES`` maps a claim id to its family).  :func:`claims_markdown` is the
text of ``CLAIMS.md`` (``ida-verify claims --markdown``).
"""

from __future__ import annotations

from properties.claims._common import ClaimResult, ClaimSpec, RunConfig
from properties.claims._markdown import claims_markdown
from properties.claims._runner import (
    CLAIM_CHECKS,
    CLAIM_IDS,
    SEQUENCE_PROOF_IDS,
    run_claim,
    run_claims,
    run_sequence_proofs,
)

__all__ = [
    "CLAIM_CHECKS",
    "CLAIM_IDS",
    "SEQUENCE_PROOF_IDS",
    "ClaimResult",
    "ClaimSpec",
    "RunConfig",
    "claims_markdown",
    "run_claim",
    "run_claims",
    "run_sequence_proofs",
]
