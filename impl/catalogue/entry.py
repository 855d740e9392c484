"""The entry type of the one-step catalogue, its verdicts and categories, and the named
parameters of the planted estimators (each what a real implementation uses)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from impl.types import Estimator

Verdict = Literal["unbiased", "scaled", "biased", "error"]
"""The four verdicts of the estimator checker."""

VERDICTS: tuple[Verdict, ...] = ("unbiased", "scaled", "biased", "error")

CATEGORIES: tuple[str, ...] = (
    "correct",
    "sign/scale",
    "baseline",
    "score",
    "normalisation",
    "indexing",
    "clipping",
    "regularisation",
    "temperature",
    "objective",
    "error",
)
"""The allowed values of :attr:`CatalogueEntry.category`."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One named estimator with the verdict an exact checker must reach on it.

    ``expected`` is the verdict for the batched estimator; ``per_group_expected`` the
    verdict for :func:`per_group` of it when that differs (an estimator that pools
    statistics across the rows of a batch is a different estimator on a batch of one).
    ``scale`` is ``k -> c_k`` when either verdict is ``"scaled"`` and ``None`` otherwise;
    ``min_k`` is the smallest group size the estimator is defined for.  ``roundoff`` is
    ``(dtype, verdict)`` for an entry that is ``"biased"`` only through the round-off of
    a coarser dtype it computes in: the checker's verdict stays ``"biased"`` (its output
    claims float64 precision), and at that dtype's precision it is ``verdict``.
    """

    name: str
    fn: Estimator
    expected: Verdict
    scale: Callable[[int], float] | None
    min_k: int
    description: str
    category: str
    per_group_expected: Verdict | None = None
    roundoff: tuple[str, Verdict] | None = None

    @property
    def expected_per_group(self) -> Verdict:
        """The verdict for the per-group form (:func:`per_group`) of this estimator."""
        return self.per_group_expected or self.expected


# --------------------------------------------------------------------------- constants
# Named parameters of the planted estimators (each is what a real implementation uses).

STALE_BASELINE = -3.25
"""Baseline frozen from a previous batch: any constant is fine."""

CONSTANT_BASELINE = 0.7
"""A hand-picked constant baseline."""

SELF_BASELINE_FRACTION = 0.5
"""``b_j = fraction * s(x_j)``: a baseline proportional to the sample's own reward."""

REWARD_SHIFT, REWARD_SCALE = 0.5, 0.25
"""Fixed reward normalisation ``(s - shift) / scale`` with stale running statistics."""

TEMPERATURE = 2.0
"""Sampling/backward temperature used by the temperature entries."""

PPO_EPSILON = 0.2
"""The PPO clip range ``[1 - eps, 1 + eps]``."""

GRPO_STD_EPS = 1e-4
"""The ``std + eps`` guard of GRPO's advantage normalisation."""

PROB_FLOOR = 1e-6
"""``p.clip(min=PROB_FLOOR)`` inside the score."""

LOGP_FLOOR = -10.0
"""``log p`` clamped at this floor (the clamp kills the gradient below it)."""

LOG_EPS = 1e-6
"""``log(p + LOG_EPS)`` instead of ``log p``."""

ENTROPY_COEF = 1e-6
"""A tiny entropy bonus coefficient: still a bias."""

KL_COEF = 0.05
"""Coefficient of the KL-to-uniform penalty folded into the reward."""

NOISE_STD = 1e-3
"""Standard deviation of the noise the nondeterministic entries add."""

TOP_K_SOFTMAX = 5
"""Answers kept by the truncated softmax of the ``top5-truncated-softmax`` entry."""

LOGIT_CLAMP = 50.0
"""``logits.clip(-LOGIT_CLAMP, LOGIT_CLAMP)`` "for stability" before the softmax."""

REWARD_CLIP = 1e4
"""``rewards.clip(-REWARD_CLIP, REWARD_CLIP)``: a clip meant never to bite."""

PERCENT = 100.0
"""Rewards reported in percent: every reward multiplied by this."""

EMA_DECAY = 0.9
"""Decay of the moving-average baseline kept across calls."""
