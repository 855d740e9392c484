r"""The registry of the claims of ``CLAIMS.md``, keyed by their identifiers.

Every claim carries its one-line statement, a SymPy form of it, its assumptions and
its expected verdict.  "proved" claims have a ``prove()`` that rebuilds and checks the
derivation (see :mod:`spec.proofs`); "refuted" claims have ``refute()`` that confirms a
known counterexample exactly (see :mod:`spec.counterexamples`); "holds" claims are
checked by the property tests and here only stated.

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
from fractions import Fraction
from types import MappingProxyType

import sympy
from sympy import (
    Derivative,
    Eq,
    Function,
    IndexedBase,
    Limit,
    Sum,
    Symbol,
    log,
    oo,
)

from spec import proofs
from spec._core import Proof, SpecError
from spec.claims import dynamics, estimators, indicator, optima
from spec.claims._claim import Claim
from spec.counterexamples import (
    confirm_limited_search_counterexample,
)
from spec.symbols import general_p, i, k, n, s, vartheta

# --------------------------------------------------------------------------- SymPy forms

_J = Sum(general_p(i) * s[i], (i, 0, n - 1))
_score = Derivative(log(general_p(i)), vartheta)
_argmax = Function("argmax")
_t = Symbol("t", integer=True, nonnegative=True)
_a = Function("a")
_pt = Function("p_t")
_Q = Symbol("q(A*)", positive=True)
_c = Symbol("c", integer=True)
_P = IndexedBase("P", nonnegative=True)
_b = IndexedBase("b", real=True)
_R = Symbol("R", integer=True, positive=True)
_Eg = Symbol("E[g_groupmean]")
_sup = Symbol("sup_theta J")
_maxs = Symbol("max s")
_astar_mass = Function("B_k(q)(A*)")
_rl_mass = Symbol("lim RL p(A*)")

_CLAIMS: tuple[Claim, ...] = (
    Claim(
        "limited-search-imitation",
        "imitating best-of-k search with proposal q converges to B_k(q), which gives A* mass "
        "1-(1-q(A*))^k < 1 when 0 < q(A*) < 1",
        "proved",
        Eq(_astar_mass(_Q, k), 1 - (1 - _Q) ** k),
        ("k iid candidates from q", "tie rule: at equal score the lowest index wins"),
        prover=proofs.prove_limited_search_imitation,
    ),
    Claim(
        "rl-equals-imitation-under-limited-search",
        "'RL on the score and imitation of a limited-search M2 reach the same model' "
        "(RL -> A*, imitation -> B_k(q))",
        "refuted",
        Eq(_rl_mass, 1 - (1 - _Q) ** k),
        ("best-of-k overseer with proposal q",),
        counterexample=lambda: confirm_limited_search_counterexample(
            [0, 1], [Fraction(1, 2), Fraction(1, 2)], 2
        ),
    ),
    Claim(
        "unbounded-search-limit",
        "B_k(q)(A*) -> 1 as k -> infinity when q(A*) > 0; exhaustive search gives X* exactly",
        "proved",
        Eq(Limit(1 - (1 - _Q) ** k, k, oo), 1),
        ("q(A*) > 0", "tie rule: at equal score the lowest index wins"),
        prover=proofs.prove_unbounded_search_limit,
    ),
    Claim(
        "iterated-amplification-converges",
        "p_{t+1} = B_k(p_t), a_{t+1} = 1-(1-a_t)^k strictly increasing to 1 for k >= 2, "
        "0 < a_0 < 1",
        "proved",
        sympy.And(
            Eq(_a(_t + 1), 1 - (1 - _a(_t)) ** k), Eq(Limit(_a(_t), _t, oo), 1)
        ),
        ("k >= 2", "0 < a_0 < 1", "distillation reaches the imitation optimum"),
        prover=proofs.prove_iterated_amplification_converges,
    ),
)

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

_BY_ID = {c.id: c for c in (*estimators.CLAIMS, *optima.CLAIMS, *dynamics.CLAIMS, *indicator.CLAIMS, *_CLAIMS)}

CLAIMS: Mapping[str, Claim] = MappingProxyType({cid: _BY_ID[cid] for cid in FAMILIES})
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
