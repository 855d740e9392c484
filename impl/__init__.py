"""The numeric (NumPy, float64) model of the seed's setting.

Policy (:mod:`impl.policy`), overseer and answer set (:mod:`impl.problem`),
reference estimators (:mod:`impl.estimators`), search (:mod:`impl.search`),
dynamics (:mod:`impl.dynamics`) and the exact expectation engine
(:mod:`impl.exact`).  The estimator catalogue lives in :mod:`impl.catalogue`.
"""

from __future__ import annotations

from impl import catalogue as catalogue
from impl.dynamics import (
    Trajectory,
    amplification_trajectory,
    imitation_trajectory,
    rl_trajectory,
    sampled_amplification_trajectory,
    sampled_imitation_trajectory,
    sampled_rl_trajectory,
    smooth_step_size,
)
from impl.errors import InvalidArgument
from impl.estimators import (
    constant_baseline,
    group_mean_baseline,
    imitation,
    imitation_gradient,
    indicator_reward,
    reinforce,
    rloo,
)
from impl.exact import Expectation, enumerate_groups, exact_expectation
from impl.policy import (
    group_gradient,
    log_softmax,
    objective,
    policy_gradient,
    score_function,
    softmax,
)
from impl.problem import NoisyOverseer, Problem, sample_groups
from impl.search import (
    best_of_k_distribution,
    best_of_k_mass_on_maximisers,
    best_of_k_sample,
    unbounded_search,
)
from impl.types import (
    Estimator,
    FloatArray,
    Gradient,
    IntArray,
    Logits,
    Probs,
    Rewards,
    Samples,
    Scores,
)

__all__ = [
    "Estimator",
    "Expectation",
    "FloatArray",
    "Gradient",
    "IntArray",
    "InvalidArgument",
    "Logits",
    "NoisyOverseer",
    "Problem",
    "Probs",
    "Rewards",
    "Samples",
    "Scores",
    "Trajectory",
    "amplification_trajectory",
    "best_of_k_distribution",
    "best_of_k_mass_on_maximisers",
    "best_of_k_sample",
    "constant_baseline",
    "enumerate_groups",
    "exact_expectation",
    "group_gradient",
    "group_mean_baseline",
    "imitation",
    "imitation_gradient",
    "imitation_trajectory",
    "indicator_reward",
    "log_softmax",
    "objective",
    "policy_gradient",
    "reinforce",
    "rl_trajectory",
    "rloo",
    "sample_groups",
    "sampled_amplification_trajectory",
    "sampled_imitation_trajectory",
    "sampled_rl_trajectory",
    "score_function",
    "smooth_step_size",
    "softmax",
    "unbounded_search",
]
