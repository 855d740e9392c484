"""The numeric (NumPy, float64) model of the seed's setting.

Policy (:mod:`impl.policy`), overseer and answer set (:mod:`impl.problem`),
reference estimators (:mod:`impl.estimators`), search (:mod:`impl.search`),
dynamics (:mod:`impl.dynamics`), the exact expectation engine
(:mod:`impl.exact`) and its sequence-level counterpart, the tabular autoregressive
policy over token sequences (:mod:`impl.sequence`).  The estimator catalogue lives in :mod:`impl.catalogue`.
"""

from __future__ import annotations

from impl import catalogue as catalogue
from impl import sequence as sequence
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
from impl.sequence import (
    ResponseSpace,
    batch_probs,
    enumerate_batches,
    greedy_tokens,
    response_probs,
    response_space,
    reward_table,
    sequence_gradient,
    sequence_kl,
    sequence_log_probs,
    sequence_objective,
    sequence_score,
    token_log_probs,
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
    "ResponseSpace",
    "Rewards",
    "Samples",
    "Scores",
    "Trajectory",
    "amplification_trajectory",
    "batch_probs",
    "best_of_k_distribution",
    "best_of_k_mass_on_maximisers",
    "best_of_k_sample",
    "constant_baseline",
    "enumerate_batches",
    "enumerate_groups",
    "exact_expectation",
    "greedy_tokens",
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
    "response_probs",
    "response_space",
    "reward_table",
    "rl_trajectory",
    "rloo",
    "sample_groups",
    "sampled_amplification_trajectory",
    "sampled_imitation_trajectory",
    "sampled_rl_trajectory",
    "score_function",
    "sequence_gradient",
    "sequence_kl",
    "sequence_log_probs",
    "sequence_objective",
    "sequence_score",
    "smooth_step_size",
    "softmax",
    "token_log_probs",
    "unbounded_search",
]
