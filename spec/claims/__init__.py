r"""The claims of ``CLAIMS.md``: their statements and checked proofs, by identifier.

The registry (:mod:`spec.claims._registry`) holds every claim by identifier;
``get_claim(id).prove()`` rebuilds that claim's derivation and checks every step.

>>> get_claim("reinforce-unbiased").expected
'proved'
"""

from __future__ import annotations

from spec.claims._claim import Claim, Counterexample, Verdict
from spec.claims._registry import CLAIMS, FAMILIES, get_claim, prove_all

__all__ = ["CLAIMS", "FAMILIES", "Claim", "Counterexample", "Verdict", "get_claim", "prove_all"]
