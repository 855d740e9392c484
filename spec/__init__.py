r"""Symbolic (SymPy) specifications and checked proofs of the claims in ``CLAIMS.md``.

The registry :data:`CLAIMS` holds every claim by identifier; each claim's statement and
proof live in the module of its family, ``spec/claims/<family>.py``, and the map
``spec.claims.FAMILIES`` says which.  ``get_claim(id).prove()`` rebuilds that claim's
derivation and checks every step with SymPy, returning a :class:`Proof` (``proof.ok``,
``proof.scope``, readable ``proof.render()``).  The two
refuted claims have exact counterexample checkers, and the statements are compiled into
NumPy oracles for cross-checking :mod:`impl`.  The sequence-level identities behind the
sequence checker (:mod:`spec.sequence`) are proved by :func:`prove_sequence`.

>>> proof = get_claim("reinforce-unbiased").prove()
>>> proof.ok, proof.scope
(True, 'general')
>>> all(p.ok for p in prove_all())
True
"""

from __future__ import annotations

from spec._core import Proof, ProofFailed, SpecError, Step, check_identity
from spec.claims import CLAIMS, Claim, Counterexample, Verdict, get_claim, prove_all
from spec.counterexamples import (
    IndicatorCounterexample,
    LimitedSearchCounterexample,
    best_of_k_enumerated,
    best_of_k_exact,
    confirm_indicator_counterexample,
    confirm_limited_search_counterexample,
)
from spec.oracles import (
    amplification_map_oracle,
    best_of_k_oracle,
    imitation_gradient_oracle,
    indicator_gradient_oracle,
    self_inclusive_gradient_oracle,
    softmax_gradient_oracle,
    stochastic_indicator_gradient_oracle,
)
from spec.sequence import (
    prove_sequence,
    prove_sequence_kl_gradient,
    prove_sequence_score_function,
)

__all__ = [
    "CLAIMS",
    "Claim",
    "Counterexample",
    "IndicatorCounterexample",
    "LimitedSearchCounterexample",
    "Proof",
    "ProofFailed",
    "SpecError",
    "Step",
    "Verdict",
    "amplification_map_oracle",
    "best_of_k_enumerated",
    "best_of_k_exact",
    "best_of_k_oracle",
    "check_identity",
    "confirm_indicator_counterexample",
    "confirm_limited_search_counterexample",
    "get_claim",
    "imitation_gradient_oracle",
    "indicator_gradient_oracle",
    "prove_all",
    "prove_sequence",
    "prove_sequence_kl_gradient",
    "prove_sequence_score_function",
    "self_inclusive_gradient_oracle",
    "softmax_gradient_oracle",
    "stochastic_indicator_gradient_oracle",
]
