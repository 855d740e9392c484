r"""Reference gradient estimators, all batched with one signature.

Every function here is an :data:`impl.types.Estimator` in batched form:
``(logits (n,), samples (B, k) int, rewards (B, k)) -> (B, n)``, estimating
:math:`\nabla_\theta J` (the ascent direction).  With per-sample coefficients
:math:`w_{bj}`, each returns :math:`g_b = \frac1k\sum_j w_{bj}(e_{x_{bj}} - p)`
(:func:`impl.policy.group_gradient`).

Factories (``constant_baseline``, ``imitation``, ``indicator_reward``) take their
parameter and return an estimator.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from impl._validate import answer, float_vector, samples_2d
from impl.errors import InvalidArgument, describe
from impl.policy import group_gradient, softmax
from impl.types import Estimator, FloatArray, Gradient, Logits, Rewards, Samples


def _rewards(samples: Samples, rewards: Any) -> FloatArray:
    r = np.asarray(rewards, dtype=np.float64)
    if r.shape != np.shape(samples):
        raise InvalidArgument(
            f"Expected rewards of shape {np.shape(samples)} but got {describe('rewards', rewards)}"
        )
    return r


def reinforce(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r"""REINFORCE: :math:`g = \frac1k \sum_j s(x_j)\,\nabla\log p(x_j)`.  Unbiased.

    >>> reinforce(np.zeros(2), np.array([[0, 1]]), np.array([[1.0, 3.0]]))
    array([[-0.5,  0.5]])
    """
    return group_gradient(logits, samples, _rewards(samples, rewards))


def constant_baseline(baseline: float) -> Estimator:
    r"""REINFORCE with a constant baseline: :math:`w_j = s(x_j) - b`.  Unbiased.

    >>> constant_baseline(2.0)(np.zeros(2), np.array([[0, 1]]), np.array([[1.0, 3.0]]))
    array([[-0.5,  0.5]])
    """
    b = float(baseline)
    if not np.isfinite(b):
        raise InvalidArgument(
            f"Expected a finite baseline but got {describe('baseline', baseline)}"
        )

    def estimator(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
        return group_gradient(logits, samples, _rewards(samples, rewards) - b)

    estimator.__name__ = f"constant_baseline({b!r})"
    return estimator


def rloo(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r"""Leave-one-out baseline: :math:`w_j = s(x_j) - \frac{1}{k-1}\sum_{i\ne j} s(x_i)`.

    Unbiased for :math:`k \ge 2` (the baseline does not depend on :math:`x_j`).

    >>> rloo(np.zeros(2), np.array([[0, 1]]), np.array([[1.0, 3.0]]))
    array([[-1.,  1.]])
    """
    r = _rewards(samples, rewards)
    k = r.shape[-1]
    if k < 2:
        raise InvalidArgument(
            f"rloo needs groups of k >= 2 samples but got {describe('samples', samples)}"
        )
    loo = (r.sum(axis=-1, keepdims=True) - r) / (k - 1)
    return group_gradient(logits, samples, r - loo)


def group_mean_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r"""Self-inclusive group mean: :math:`w_j = s(x_j) - \frac1k\sum_i s(x_i)`.

    Biased by a positive scale: :math:`E[g] = \frac{k-1}{k}\nabla J`.

    >>> group_mean_baseline(np.zeros(2), np.array([[0, 1]]), np.array([[1.0, 3.0]]))
    array([[-0.5,  0.5]])
    """
    r = _rewards(samples, rewards)
    return group_gradient(logits, samples, r - r.mean(axis=-1, keepdims=True))


def imitation(demonstration: int) -> Estimator:
    r"""The imitation gradient :math:`\nabla\log p(x^*) = e_{x^*} - p` for a fixed demonstration.

    Ignores ``samples`` and ``rewards`` (one row per group).

    >>> imitation(1)(np.zeros(2), np.array([[0, 0]]), np.array([[0.0, 0.0]]))
    array([[-0.5,  0.5]])
    """
    demo = answer(demonstration, "demonstration", np.iinfo(np.int64).max)

    def estimator(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
        p = softmax(logits)
        if demo >= p.size:
            raise InvalidArgument(f"demonstration={demo} is not an answer of n={p.size}")
        x = samples_2d(samples, "samples", p.size)
        onehot = np.zeros(p.size)
        onehot[demo] = 1.0
        out: Gradient = np.broadcast_to(onehot - p, (x.shape[0], p.size)).copy()
        return out

    estimator.__name__ = f"imitation({demo})"
    return estimator


def indicator_reward(demonstration: int) -> Estimator:
    r"""REINFORCE with reward :math:`1[x_j = x^*]` (the given rewards are ignored).

    :math:`E[g] = \nabla p(x^*) = p(x^*)\,\nabla\log p(x^*)`.

    >>> indicator_reward(1)(np.zeros(2), np.array([[1, 0]]), np.array([[0.0, 0.0]]))
    array([[-0.25,  0.25]])
    """
    demo = answer(demonstration, "demonstration", np.iinfo(np.int64).max)

    def estimator(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
        x = np.asarray(samples)
        return group_gradient(logits, x, (x == demo).astype(np.float64))

    estimator.__name__ = f"indicator_reward({demo})"
    return estimator


def imitation_gradient(logits: Any, demonstrator: Any) -> FloatArray:
    r"""Exact gradient of :math:`\sum_i q_i \log p_i` for softmax: :math:`q - p`.

    >>> imitation_gradient([0.0, 0.0], [1.0, 0.0])
    array([ 0.5, -0.5])
    """
    p = softmax(logits)
    q = float_vector(demonstrator, "demonstrator")
    if q.size != p.size:
        raise InvalidArgument(
            f"Expected a demonstrator over {p.size} answers but got {describe('demonstrator', demonstrator)}"
        )
    out: FloatArray = q - p
    return out


__all__ = [
    "constant_baseline",
    "group_mean_baseline",
    "imitation",
    "imitation_gradient",
    "indicator_reward",
    "reinforce",
    "rloo",
]
