"""Issue 15 on the one-step checker: no silent pass, no guessed cause, range as round-off.

* a scale hint says what the value equals ("has the value of ..."), never that a named
  code is the cause: other codes have the same value;
* (more below: partial multi-prompt checks, float32 underflow.)

Time budget: a few seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from properties.onestep.checker import check_estimator

FEW = 5
"""max_examples where the battery decides (it always runs in full)."""


def _softmax(logits: Any) -> Any:
    p = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def _reinforce(logits: Any, samples: Any, rewards: Any) -> Any:
    p = _softmax(logits)
    return np.mean(rewards[:, None] * (np.eye(p.size)[samples] - p), axis=0)


# --------------------------------------------------------------------------- scale hints


def test_reversed_rewards_baseline_is_not_explained_as_the_self_inclusive_group_mean() -> None:
    """Old: 'c_k = 0.666666666667 (+- ...) = (k-1)/k, the self-inclusive group mean'.

    The baseline of sample ``j`` is the reward of sample ``k-1-j``: leave-one-out except for
    the middle sample at odd ``k``, so ``c_k = (k-1)/k`` at ``k = 3, 5`` without any mean."""

    def reversed_baseline(logits: Any, samples: Any, rewards: Any) -> Any:
        p = _softmax(logits)
        return np.mean((rewards - rewards[::-1])[:, None] * (np.eye(p.size)[samples] - p), axis=0)

    report = check_estimator(reversed_baseline, group_sizes=(3, 5), max_examples=FEW)
    assert report.verdict == "scaled", report.message
    assert report.scale is not None and abs(report.scale[3] - 2 / 3) < 1e-9
    assert "which has the value of (k-1)/k, the scale of a self-inclusive group mean" in report.message
    assert "= (k-1)/k" not in report.message


def test_a_doubled_gradient_is_not_explained_as_a_sum_over_the_group() -> None:
    """Old: 'k=2, P=1: c = 2 (+- ...) = k, a sum over the group instead of a mean'."""

    def doubled(logits: Any, samples: Any, rewards: Any, group: Any) -> Any:
        p = _softmax(logits)
        return 2.0 * rewards[:, None] * (np.eye(p.shape[1])[samples] - p) / rewards.size

    report = check_estimator(doubled, group_sizes=(2,), num_prompts=(1, 2), max_examples=FEW)
    assert report.verdict == "scaled", report.message
    assert "which has the value of k, the scale of a sum over the group" in report.message
    assert "= k," not in report.message
