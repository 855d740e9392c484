r"""The registry of the claims of ``CLAIMS.md``, keyed by their identifiers.

:data:`FAMILIES` maps every claim id to its family ``F``; the claim's :class:`Claim`
(statement, SymPy form, assumptions, expected verdict) and its proof live together in
``spec/claims/F.py``.  "proved" claims have a ``prove()`` that rebuilds and checks the
derivation; "refuted" claims have ``refute()`` that confirms a known counterexample
exactly (see :mod:`spec.counterexamples`); "holds" claims are checked by the property
tests and here only stated.

>>> len(CLAIMS), sorted({c.expected for c in CLAIMS.values()})
(14, ['holds', 'proved', 'refuted'])
>>> get_claim("iterated-amplification-converges").prove().ok
True
>>> get_claim("iterated-amplification-converges").prove(
...     amplify=lambda a, k: 1 - (1 - a) ** (k - 1)).ok
False
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType, ModuleType

from spec._core import Proof, SpecError
from spec.claims import amplification, estimators, imitation, indicator, rl, search
from spec.claims._claim import Claim

_MODULES: tuple[ModuleType, ...] = (estimators, rl, imitation, indicator, search, amplification)
"""The family modules, in ledger order; each defines ``CLAIMS``, its claims in ledger order."""


def _collect() -> dict[str, Claim]:
    out: dict[str, Claim] = {}
    for module in _MODULES:
        for claim in module.CLAIMS:
            if claim.id in out:
                raise SpecError(f"claim {claim.id!r} is defined twice (again in {module.__name__})")
            out[claim.id] = claim
    return out


CLAIMS: Mapping[str, Claim] = MappingProxyType(_collect())
"""Every claim of ``CLAIMS.md`` by identifier, in the order of ``CLAIMS.md`` (read-only)."""

FAMILIES: Mapping[str, str] = MappingProxyType(
    {c.id: m.__name__.rsplit(".", 1)[1] for m in _MODULES for c in m.CLAIMS}
)
"""Every claim id, in ledger order, and its family ``F``: the claim's statement and proof
live in ``spec/claims/F.py``, its properties in ``properties/claims/F.py``."""


def get_claim(claim_id: str) -> Claim:
    """The claim with identifier ``claim_id``; :class:`SpecError` naming the known ids otherwise.

    >>> get_claim("reinforce-unbiased").expected
    'proved'
    """
    try:
        return CLAIMS[claim_id]
    except (KeyError, TypeError):
        raise SpecError(
            f"Unknown claim id claim_id={claim_id!r} (type={type(claim_id).__name__}); "
            f"known: {', '.join(CLAIMS)}"
        ) from None


def prove_all() -> tuple[Proof, ...]:
    """Prove every "proved" claim (in ``CLAIMS.md`` order), rebuilding each derivation."""
    return tuple(c.prove() for c in CLAIMS.values() if c.prover is not None)


__all__ = ["CLAIMS", "FAMILIES", "get_claim", "prove_all"]
