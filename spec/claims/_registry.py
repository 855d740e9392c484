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
from spec.claims import amplification, dynamics, estimators, indicator, optima, search
from spec.claims._claim import Claim

FAMILIES: Mapping[str, str] = MappingProxyType(
    {
        "reinforce-unbiased": "estimators",
        "baseline-invariant": "estimators",
        "self-inclusive-baseline-scales": "estimators",
        "reinforce-raises-above-average": "estimators",
        "rl-optimum-is-xstar": "optima",
        "rl-converges-to-xstar": "dynamics",
        "imitation-optimum-is-demonstrator": "optima",
        "imitation-converges-to-xstar": "dynamics",
        "indicator-reward-is-imitation": "indicator",
        "indicator-reward-stochastic-demonstrator": "indicator",
        "limited-search-imitation": "search",
        "rl-equals-imitation-under-limited-search": "search",
        "unbounded-search-limit": "search",
        "iterated-amplification-converges": "amplification",
    }
)
"""Every claim id, in ledger order, and its family ``F``: the claim's statement and proof
live in ``spec/claims/F.py``, its properties in ``properties/claims/F.py``."""

_MODULES: Mapping[str, ModuleType] = MappingProxyType(
    {
        "estimators": estimators,
        "optima": optima,
        "dynamics": dynamics,
        "indicator": indicator,
        "search": search,
        "amplification": amplification,
    }
)


def _collect() -> dict[str, Claim]:
    """Each claim from the module :data:`FAMILIES` names; every module claim registered once."""
    out: dict[str, Claim] = {}
    for cid, family in FAMILIES.items():
        found = [c for c in _MODULES[family].CLAIMS if c.id == cid]
        if len(found) != 1:
            raise SpecError(f"claim {cid!r}: {len(found)} definitions in spec.claims.{family}")
        out[cid] = found[0]
    stray = [c.id for m in _MODULES.values() for c in m.CLAIMS if c.id not in out]
    if stray:
        raise SpecError(f"claims defined in a family module but not in FAMILIES: {stray}")
    return out


CLAIMS: Mapping[str, Claim] = MappingProxyType(_collect())
"""Every claim of ``CLAIMS.md`` by identifier, in the order of ``CLAIMS.md`` (read-only)."""


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
