"""The claims ledger: one executable property per claim of CLAIMS.md, and its verdict.

:func:`run_claim` checks one claim and returns its ledger row (:class:`ClaimResult`);
:func:`run_claims` checks several, reporting progress through an optional
``progress(i, total, claim_id)`` callback.  :data:`CLAIM_CHECKS` holds how each claim is
checked (:class:`ClaimSpec`), in ledger order.
"""

from __future__ import annotations

from properties.claims._common import ClaimResult, ClaimSpec, RunConfig
from properties.claims._runner import CLAIM_CHECKS, CLAIM_IDS, run_claim, run_claims

__all__ = [
    "CLAIM_CHECKS",
    "CLAIM_IDS",
    "ClaimResult",
    "ClaimSpec",
    "RunConfig",
    "run_claim",
    "run_claims",
]
