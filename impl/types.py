"""The named array and callable types used everywhere in ida-verify.

Shapes follow the setting of ``CLAIMS.md``: ``n`` answers, groups of ``k``
samples, batches of ``B`` groups.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
"""A float64 array of any shape."""

IntArray = npt.NDArray[np.int64]
"""An int64 array of any shape."""

Logits = FloatArray
"""Softmax logits ``theta``, shape ``(n,)``."""

Probs = FloatArray
"""A distribution over the answers ``0..n-1``, shape ``(n,)``, non-negative, sums to 1."""

Scores = FloatArray
"""The overseer's score table ``s``, shape ``(n,)``."""

Samples = IntArray
"""Answers drawn iid from the policy: ``(B, k)`` for a batch of groups, ``(k,)`` for one."""

Rewards = FloatArray
"""The overseer's scores of ``Samples``, same shape."""

Gradient = FloatArray
"""Gradient estimates with respect to the logits: ``(B, n)`` batched, ``(n,)`` for one group."""

Estimator = Callable[[Logits, Samples, Rewards], Gradient]
"""``fn(logits, samples, rewards) -> gradient``.

Batched form: ``samples``/``rewards`` of shape ``(B, k)`` and a result ``(B, n)``.
Per-group form (what users usually write): ``(k,)`` in, ``(n,)`` out.
The result estimates ``grad_theta E_{X~softmax(theta)}[s(X)]`` (the ascent direction).
"""

__all__ = [
    "Estimator",
    "FloatArray",
    "Gradient",
    "IntArray",
    "Logits",
    "Probs",
    "Rewards",
    "Samples",
    "Scores",
]
