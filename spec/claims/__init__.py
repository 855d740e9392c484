r"""The claims of ``CLAIMS.md``: statements and checked proofs, one module per claim family.

=====================================  =============================================
module                                 claims
=====================================  =============================================
:mod:`spec.claims.estimators`          ``reinforce-unbiased``, ``baseline-invariant``,
                                       ``self-inclusive-baseline-scales``,
                                       ``reinforce-raises-above-average``
:mod:`spec.claims.rl`                  ``rl-optimum-is-xstar``,
                                       ``rl-converges-to-xstar``
:mod:`spec.claims.imitation`           ``imitation-optimum-is-demonstrator``,
                                       ``imitation-converges-to-xstar``
:mod:`spec.claims.indicator`           ``indicator-reward-is-imitation``,
                                       ``indicator-reward-stochastic-demonstrator``
:mod:`spec.claims.search`              ``limited-search-imitation``,
                                       ``rl-equals-imitation-under-limited-search``,
                                       ``unbounded-search-limit``
:mod:`spec.claims.amplification`       ``iterated-amplification-converges``
=====================================  =============================================

:data:`FAMILIES` is that table as data (claim id -> family, in ledger order: the
modules in the order above, each with its claims in order); the
registry :data:`CLAIMS` holds every :class:`Claim` by identifier, and
``get_claim(id).prove()`` rebuilds that claim's derivation and checks every step.  The
properties of a claim of family ``F`` are in :mod:`properties.claims` module ``F``.

>>> FAMILIES["reinforce-unbiased"], get_claim("reinforce-unbiased").expected
('estimators', 'proved')
>>> get_claim("reinforce-unbiased").prover.__module__
'spec.claims.estimators'
"""

from __future__ import annotations

from spec.claims._claim import Claim, Counterexample, Verdict
from spec.claims._registry import CLAIMS, FAMILIES, get_claim, prove_all

__all__ = ["CLAIMS", "FAMILIES", "Claim", "Counterexample", "Verdict", "get_claim", "prove_all"]
