r"""The tabular softmax policy over a finite answer set.

Everything is float64 and numerically stable for logits up to :math:`\pm 10^3`
(log-sum-exp with the maximum subtracted; no ``0 * inf``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from impl._validate import float_vector, samples_2d
from impl.errors import InvalidArgument, describe
from impl.types import FloatArray, Gradient, Probs, Samples


def log_softmax(logits: Any) -> FloatArray:
    r"""Log-probabilities :math:`\log p_i = \theta_i - \log\sum_j e^{\theta_j}`.

    >>> log_softmax([0.0, 0.0]).round(6)
    array([-0.693147, -0.693147])
    >>> log_softmax([1000.0, 300.0])
    array([   0., -700.])
    """
    theta = float_vector(logits, "logits")
    shifted = theta - theta.max()
    out: FloatArray = shifted - np.log(np.exp(shifted).sum())
    return out


def softmax(logits: Any) -> Probs:
    r"""Probabilities :math:`p_i = e^{\theta_i} / \sum_j e^{\theta_j}`.

    >>> softmax([0.0, 0.0, 0.0]).round(4)
    array([0.3333, 0.3333, 0.3333])
    >>> softmax([1000.0, -1000.0])
    array([1., 0.])
    """
    theta = float_vector(logits, "logits")
    e = np.exp(theta - theta.max())
    out: Probs = e / e.sum()
    return out


def score_function(logits: Any, samples: Any) -> FloatArray:
    r"""The score :math:`\nabla_\theta \log p(x) = e_x - p` for each sample.

    ``samples`` of any shape ``S`` gives a result of shape ``S + (n,)``.

    >>> score_function([0.0, 0.0], [0, 1])
    array([[ 0.5, -0.5],
           [-0.5,  0.5]])
    """
    p = softmax(logits)
    n = p.size
    x = np.asarray(samples)
    if not np.issubdtype(x.dtype, np.integer) or (x.size and (x.min() < 0 or x.max() >= n)):
        raise InvalidArgument(
            f"Expected integer answers in 0..{n - 1} but got {describe('samples', samples)}"
        )
    onehot = (x[..., None] == np.arange(n)).astype(np.float64)
    out: FloatArray = onehot - p
    return out


def objective(logits: Any, scores: Any) -> float:
    r"""The RL objective :math:`J(\theta) = \sum_i p_i s_i`.

    >>> objective([0.0, 0.0], [1.0, 3.0])
    2.0
    """
    p = softmax(logits)
    s = float_vector(scores, "scores")
    _same_n(p, s)
    return float(p @ s)


def policy_gradient(logits: Any, scores: Any) -> FloatArray:
    r"""The exact gradient :math:`\nabla J = p \odot (s - (p\cdot s)\mathbf 1)`.

    Coordinate :math:`i` is :math:`p_i (s_i - J)`: positive exactly for answers
    scoring above the current average.  Scores are first shifted by the score of
    the most probable answer (the gradient is shift-invariant), so that
    :math:`s_i - J` keeps its relative precision when one answer holds almost
    all the mass.

    >>> policy_gradient([0.0, 0.0], [1.0, 3.0])
    array([-0.5,  0.5])
    """
    p = softmax(logits)
    s = float_vector(scores, "scores")
    _same_n(p, s)
    centred = s - s[int(np.argmax(p))]
    out: FloatArray = p * (centred - p @ centred)
    return out


def group_gradient(logits: Any, samples: Samples, weights: FloatArray) -> Gradient:
    r"""Batched :math:`g_b = \frac1k \sum_j w_{bj}\,(e_{x_{bj}} - p)`, shape ``(B, n)``.

    The building block of every REINFORCE-style estimator: ``weights`` are the
    per-sample coefficients (reward minus baseline, ...), ``samples`` and
    ``weights`` have shape ``(B, k)``.

    >>> group_gradient([0.0, 0.0], np.array([[0, 1]]), np.array([[1.0, 3.0]]))
    array([[-0.5,  0.5]])
    """
    p = softmax(logits)
    n = p.size
    x = samples_2d(samples, "samples", n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != x.shape:
        raise InvalidArgument(
            f"Expected weights of shape {x.shape} but got {describe('weights', weights)}"
        )
    b, k = x.shape
    flat = (np.arange(b)[:, None] * n + x).ravel()
    counts = np.bincount(flat, weights=w.ravel(), minlength=b * n).reshape(b, n)
    out: Gradient = (counts - w.sum(axis=1, keepdims=True) * p) / k
    return out


def _same_n(p: FloatArray, s: FloatArray) -> None:
    if p.size != s.size:
        raise InvalidArgument(
            f"logits and scores must have the same length but got n={p.size} and {describe('scores', s)}"
        )


__all__ = [
    "group_gradient",
    "log_softmax",
    "objective",
    "policy_gradient",
    "score_function",
    "softmax",
]
