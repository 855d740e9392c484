r"""The derivations of the "proved" claims, one function per claim, every step checked by SymPy.

Each proof lives with its claim's statement in the module of its family; this module
gathers them under one name:

====================================  ==========================================
family module                         proofs
====================================  ==========================================
:mod:`spec.claims.estimators`         :func:`prove_reinforce_unbiased`,
                                      :func:`prove_baseline_invariant`,
                                      :func:`prove_self_inclusive_baseline_scales`,
                                      :func:`prove_reinforce_raises_above_average`
:mod:`spec.claims.rl`                 :func:`prove_rl_optimum_is_xstar`
:mod:`spec.claims.imitation`          :func:`prove_imitation_optimum_is_demonstrator`
:mod:`spec.claims.indicator`          :func:`prove_indicator_reward_is_imitation`
:mod:`spec.claims.search`             :func:`prove_limited_search_imitation`,
                                      :func:`prove_unbounded_search_limit`
:mod:`spec.claims.amplification`      :func:`prove_iterated_amplification_converges`
====================================  ==========================================

Each ``prove_*`` function rebuilds its derivation from scratch on every call (nothing is
cached) and takes keyword-only *candidate* arguments: the piece of the statement being
proved (the softmax score, the baseline factor, the amplification map, ...).  The
defaults are the statements of ``CLAIMS.md``; passing a wrong candidate must make the
proof report ``ok=False``, which is how the tests show the proofs can fail.

>>> prove_self_inclusive_baseline_scales().ok
True
>>> prove_self_inclusive_baseline_scales(factor=1).ok
False
"""

from __future__ import annotations

from spec.claims.amplification import prove_iterated_amplification_converges
from spec.claims.estimators import (
    BaselineCandidate,
    ScoreCandidate,
    group_mean,
    leave_one_out,
    prove_baseline_invariant,
    prove_reinforce_raises_above_average,
    prove_reinforce_unbiased,
    prove_self_inclusive_baseline_scales,
)
from spec.claims.imitation import prove_imitation_optimum_is_demonstrator
from spec.claims.indicator import prove_indicator_reward_is_imitation
from spec.claims.rl import prove_rl_optimum_is_xstar
from spec.claims.search import prove_limited_search_imitation, prove_unbounded_search_limit

__all__ = [
    "BaselineCandidate",
    "ScoreCandidate",
    "group_mean",
    "leave_one_out",
    "prove_baseline_invariant",
    "prove_imitation_optimum_is_demonstrator",
    "prove_indicator_reward_is_imitation",
    "prove_iterated_amplification_converges",
    "prove_limited_search_imitation",
    "prove_reinforce_raises_above_average",
    "prove_reinforce_unbiased",
    "prove_rl_optimum_is_xstar",
    "prove_self_inclusive_baseline_scales",
    "prove_unbounded_search_limit",
]
