r"""Exact variance and mean squared error of a sequence loss or token-weight function.

The sequence engine evaluates the user's code on every batch ``b`` of a problem, with
probability :math:`w_b` (:mod:`properties.sequence.evaluation`); from the per-batch
estimates :math:`g_b` (``(P, N+1, V)``, one per batch, by ``torch.func.vmap`` over the
gradient for a loss) it also keeps

.. math::

    \operatorname{Var}[g] = \operatorname{tr}\operatorname{Cov}[g] = \sum_b w_b |g_b - E g|^2,
    \qquad E|g|^2 = \sum_b w_b |g_b|^2,

as the one-step checker does (:mod:`properties.onestep.variance`).  :func:`sequence_moments`
returns them for one problem with the bias :math:`|E g - \nabla J|^2`, as one-step
:class:`~properties.onestep.variance.Moments`.

With one token per response (``T = 1``) the sequence protocol is the one-step protocol at
the root node, and the variance is the one-step variance:

>>> import numpy as np
>>> def reinforce(rewards, mask, log_probs):
...     return rewards[:, None] * mask / rewards.shape[0]
>>> m = sequence_moments(reinforce, theta=np.zeros((1, 2, 2)), rewards=[[0.0, 1.0]], k=2,
...                      protocol="token-weights")
>>> m.variance, m.bias_squared  # 2 q (1-q) (q s_0 + (1-q) s_1)^2 / k, as in one step
(0.0625, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from properties.onestep.variance import Moments
from properties.sequence.checker import evaluate_one


def sequence_moments(fn: Callable[..., Any], **problem: Any) -> Moments:
    """The exact :class:`~properties.onestep.variance.Moments` of ``fn`` on one problem.

    ``problem`` holds the keyword arguments of
    :func:`properties.sequence.checker.sequence_expectation` (``theta``, ``rewards``,
    ``k``, ``ref_theta``, ``old_theta``, ``kl_coef``, ``protocol``, ``batched``);
    misbehaviour of ``fn`` raises :class:`impl.errors.InvalidArgument` naming it.
    """
    ev = evaluate_one(fn, **problem)
    bias = (ev.mean - ev.gradient).ravel()
    g = ev.gradient.ravel()
    return Moments(
        variance=float(ev.variance),
        bias_squared=float(bias @ bias),
        second_moment=float(ev.second_moment),
        gradient_squared=float(g @ g),
    )


__all__ = ["sequence_moments"]
