r"""Training dynamics: exact (expected-update) trajectories and their sampled counterparts.

* RL: gradient ascent on :math:`J`, :math:`\theta_{t+1} = \theta_t + \eta\nabla J(\theta_t)`.
* Imitation of a demonstrator :math:`q`: ascent on :math:`\sum_i q_i\log p_i`,
  :math:`\theta_{t+1} = \theta_t + \eta (q - p_t)`.
* Iterated amplification with distillation to convergence: :math:`p_{t+1} = B_k(p_t)`.

Sampled versions replace each expectation by a Monte Carlo estimate drawn from a
passed :class:`numpy.random.Generator`; the loop is over steps, never over samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from impl._validate import distribution, float_vector, positive_int
from impl.errors import InvalidArgument, describe
from impl.estimators import rloo
from impl.policy import policy_gradient, softmax
from impl.problem import Problem, sample_from
from impl.search import best_of_k_distribution, best_of_k_sample
from impl.types import Estimator, FloatArray


@dataclass(frozen=True)
class Trajectory:
    """Logits and probabilities at steps ``0..T``: arrays of shape ``(T+1, n)``."""

    logits: FloatArray
    probs: FloatArray

    def objective(self, scores: Any) -> FloatArray:
        """:math:`J(\\theta_t) = p_t \\cdot s` for every step, shape ``(T+1,)``."""
        s = float_vector(scores, "scores")
        out: FloatArray = self.probs @ s
        return out

    def mass(self, answers: Any) -> FloatArray:
        """:math:`p_t(A)` for a set of answers ``A``, shape ``(T+1,)``."""
        idx = np.asarray(list(answers), dtype=np.int64)
        out: FloatArray = self.probs[:, idx].sum(axis=1)
        return out


def smooth_step_size(scores: Any) -> float:
    r"""The largest safe step :math:`\eta = 2 / (5 (\max s - \min s))` (``inf`` for constant scores).

    :math:`J` is :math:`\tfrac52 (\max s-\min s)`-smooth for softmax (Mei et al. 2020,
    Lemma 2, after rescaling the scores to :math:`[0, 1]`).

    >>> smooth_step_size([0.0, 1.0, 0.5])
    0.4
    """
    s = float_vector(scores, "scores")
    spread = float(s.max() - s.min())
    return float("inf") if spread == 0 else 2.0 / (5.0 * spread)


def _step_args(step_size: float, steps: int) -> tuple[float, int]:
    eta = float(step_size)
    if not (np.isfinite(eta) and eta > 0):
        raise InvalidArgument(
            f"Expected a finite step_size > 0 but got {describe('step_size', step_size)}"
        )
    return eta, positive_int(steps, "steps", minimum=0)


def _rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise InvalidArgument(f"Expected a numpy Generator but got {describe('rng', rng)}")
    return rng


def _trajectory(thetas: list[FloatArray]) -> Trajectory:
    logits = np.stack(thetas)
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return Trajectory(logits=logits, probs=e / e.sum(axis=1, keepdims=True))


def rl_trajectory(logits: Any, scores: Any, *, step_size: float, steps: int) -> Trajectory:
    r"""Exact policy-gradient ascent :math:`\theta_{t+1} = \theta_t + \eta\,p_t\odot(s - J_t)`.

    >>> tr = rl_trajectory([0.0, 0.0], [0.0, 1.0], step_size=0.4, steps=200)
    >>> bool(tr.probs[-1, 1] > 0.9), bool(np.all(np.diff(tr.objective([0.0, 1.0])) >= 0))
    (True, True)
    """
    theta = float_vector(logits, "logits")
    s = float_vector(scores, "scores")
    eta, steps = _step_args(step_size, steps)
    thetas = [theta]
    for _ in range(steps):
        theta = theta + eta * policy_gradient(theta, s)
        thetas.append(theta)
    return _trajectory(thetas)


def imitation_trajectory(logits: Any, target: Any, *, step_size: float, steps: int) -> Trajectory:
    r"""Exact imitation ascent :math:`\theta_{t+1} = \theta_t + \eta (q - p_t)` towards ``target`` :math:`q`.

    >>> tr = imitation_trajectory([0.0, 0.0], [0.25, 0.75], step_size=1.0, steps=300)
    >>> tr.probs[-1].round(4)
    array([0.25, 0.75])
    """
    theta = float_vector(logits, "logits")
    q = distribution(target, "target", n=theta.size)
    eta, steps = _step_args(step_size, steps)
    thetas = [theta]
    for _ in range(steps):
        theta = theta + eta * (q - softmax(theta))
        thetas.append(theta)
    return _trajectory(thetas)


def amplification_trajectory(probs: Any, scores: Any, k: int, *, steps: int) -> FloatArray:
    r"""Iterated amplification with exact distillation: :math:`p_{t+1} = B_k(p_t)`; shape ``(T+1, n)``.

    >>> amplification_trajectory([0.5, 0.5], [0.0, 1.0], 2, steps=2)
    array([[0.5   , 0.5   ],
           [0.25  , 0.75  ],
           [0.0625, 0.9375]])
    """
    p = distribution(probs, "probs")
    pb = Problem(scores)
    k = positive_int(k, "k")
    steps = positive_int(steps, "steps", minimum=0)
    out = [p]
    for _ in range(steps):
        p = best_of_k_distribution(pb, p, k)
        out.append(p)
    return np.stack(out)


def sampled_rl_trajectory(
    logits: Any,
    scores: Any,
    *,
    step_size: float,
    steps: int,
    group_size: int,
    rng: np.random.Generator,
    batch: int = 1,
    estimator: Estimator = rloo,
) -> Trajectory:
    """Stochastic policy-gradient ascent: each step averages ``estimator`` over ``batch`` groups.

    >>> tr = sampled_rl_trajectory([0.0, 0.0, 0.0], [0.0, 0.5, 1.0], step_size=0.4, steps=300,
    ...                            group_size=4, batch=8, rng=np.random.default_rng(0))
    >>> bool(tr.probs[-1, 2] > 0.9)
    True
    """
    theta = float_vector(logits, "logits")
    pb = Problem(scores)
    eta, steps = _step_args(step_size, steps)
    k = positive_int(group_size, "group_size")
    batch = positive_int(batch, "batch")
    gen = _rng(rng)
    thetas = [theta]
    for _ in range(steps):
        x = sample_from(softmax(theta), (batch, k), gen)
        g = np.asarray(estimator(theta.copy(), x, pb.scores[x]), dtype=np.float64)
        theta = theta + eta * g.mean(axis=0)
        thetas.append(theta)
    return _trajectory(thetas)


def sampled_imitation_trajectory(
    logits: Any,
    demonstrator: Any,
    *,
    step_size: float,
    steps: int,
    batch: int,
    rng: np.random.Generator,
) -> Trajectory:
    r"""Stochastic imitation: each step draws ``batch`` demonstrations :math:`x \sim q` and
    ascends :math:`\overline{e_x} - p_t`.

    >>> tr = sampled_imitation_trajectory([0.0, 0.0], [0.0, 1.0], step_size=0.5, steps=100,
    ...                                   batch=4, rng=np.random.default_rng(0))
    >>> bool(tr.probs[-1, 1] > 0.95)
    True
    """
    theta = float_vector(logits, "logits")
    q = distribution(demonstrator, "demonstrator", n=theta.size)
    eta, steps = _step_args(step_size, steps)
    batch = positive_int(batch, "batch")
    gen = _rng(rng)
    demos = sample_from(q, (steps, batch), gen)
    freq = np.zeros((steps, theta.size))
    np.add.at(freq, (np.repeat(np.arange(steps), batch), demos.ravel()), 1.0 / batch)
    thetas = [theta]
    for t in range(steps):
        theta = theta + eta * (freq[t] - softmax(theta))
        thetas.append(theta)
    return _trajectory(thetas)


def sampled_amplification_trajectory(
    probs: Any, scores: Any, k: int, *, steps: int, demos: int, rng: np.random.Generator
) -> FloatArray:
    r"""Iterated amplification with sampled distillation: :math:`p_{t+1}` is the empirical
    distribution of ``demos`` outputs of best-of-``k`` search with proposal :math:`p_t`
    (the maximum-likelihood fit of a tabular model to them).

    >>> traj = sampled_amplification_trajectory([0.5, 0.5], [0.0, 1.0], 3, steps=5, demos=1000,
    ...                                         rng=np.random.default_rng(0))
    >>> bool(traj[-1, 1] > 0.99)
    True
    """
    p = distribution(probs, "probs")
    pb = Problem(scores)
    k = positive_int(k, "k")
    steps = positive_int(steps, "steps", minimum=0)
    demos = positive_int(demos, "demos")
    gen = _rng(rng)
    out = [p]
    for _ in range(steps):
        x = best_of_k_sample(pb, p, k, demos, gen)
        p = np.bincount(x, minlength=pb.n) / demos
        out.append(p)
    return np.stack(out)


__all__ = [
    "Trajectory",
    "amplification_trajectory",
    "imitation_trajectory",
    "rl_trajectory",
    "sampled_amplification_trajectory",
    "sampled_imitation_trajectory",
    "sampled_rl_trajectory",
    "smooth_step_size",
]
