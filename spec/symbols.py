r"""The shared SymPy symbols of the setting of ``CLAIMS.md``, and the general-n softmax.

General ``n`` is handled two ways:

* *any differentiable parameterisation*: :math:`p_i = p(i, \vartheta)` with ``p`` an
  undefined SymPy ``Function`` of the answer ``i`` and one real parameter
  :math:`\vartheta` (a gradient is the vector of such partial derivatives, one per
  parameter, so one arbitrary parameter is the general case);
* *tabular softmax*: logits ``theta[j]`` (an ``IndexedBase``) and
  :math:`p_i = e^{\theta_i} / \sum_{j=0}^{n-1} e^{\theta_j}`.  To differentiate with
  respect to a coordinate ``m`` of a vector of symbolic length we write
  :math:`n = m + r + 1` with ``m, r >= 0`` integers: this says ``0 <= m < n`` in a form
  SymPy evaluates ``Sum(KroneckerDelta(i, m) f(i), (i, 0, n-1)) = f(m)`` with, and it
  still covers every ``n >= 1`` and every coordinate.

>>> from sympy import diff, log, simplify
>>> simplify(diff(log(softmax_p(i)), theta[m]).doit() - (KroneckerDelta(i, m) - softmax_p(m)))
0
"""

from __future__ import annotations

from sympy import (
    Function,
    IndexedBase,
    KroneckerDelta,  # noqa: F401 - used by the module doctest
    Sum,
    Symbol,
    exp,
)

from spec._core import Expr

n = Symbol("n", integer=True, positive=True)
"""The number of answers (general, >= 1)."""

i = Symbol("i", integer=True, nonnegative=True)
"""A summation index over answers."""

j = Symbol("j", integer=True, nonnegative=True)
"""A second summation index over answers."""

m = Symbol("m", integer=True, nonnegative=True)
"""A fixed coordinate (answer) ``0 <= m < n``."""

r = Symbol("r", integer=True, nonnegative=True)
"""The number of answers after ``m``: ``n = m + r + 1``."""

k = Symbol("k", integer=True, positive=True)
"""The group / search size (general, >= 1)."""

vartheta = Symbol("vartheta", real=True)
"""One real parameter of an arbitrary differentiable parameterisation."""

p = Function("p")
"""``p(i, vartheta)``: an arbitrary (undefined) differentiable parameterisation."""

s = IndexedBase("s", real=True)
"""The score table ``s[i]``."""

theta = IndexedBase("theta", real=True)
"""Softmax logits ``theta[j]``."""

q = IndexedBase("q", nonnegative=True)
"""A demonstrator / proposal distribution ``q[i]``."""

F = IndexedBase("F", nonnegative=True)
"""Cumulative proposal mass ``F[j]`` of the ``j`` lowest-ranked answers."""

N_COORD = m + r + 1
"""``n`` written so that ``m`` is provably one of its coordinates."""


def softmax_p(x: Expr, size: Expr = N_COORD) -> Expr:
    r""":math:`e^{\theta_x} / \sum_{j=0}^{size-1} e^{\theta_j}` (symbolic size)."""
    return exp(theta[x]) / Sum(exp(theta[j]), (j, 0, size - 1))


def softmax_J(size: Expr = N_COORD) -> Expr:
    r""":math:`J = \sum_i p_i s_i` for softmax, symbolic size."""
    return Sum(softmax_p(i, size) * s[i], (i, 0, size - 1))


Z = Symbol("Z", positive=True)
"""The softmax partition function, a positive number."""

PARTITION: dict[Expr, Expr] = {
    Sum(exp(theta[i]), (i, 0, N_COORD - 1)): Z,
    Sum(exp(theta[j]), (j, 0, N_COORD - 1)): Z,
}
"""Both spellings of :math:`\\sum e^{\\theta}` (bound index ``i`` or ``j``) named ``Z``."""


def general_p(x: Expr) -> Expr:
    """``p(x, vartheta)``."""
    return p(x, vartheta)


__all__ = [
    "N_COORD",
    "PARTITION",
    "F",
    "Z",
    "general_p",
    "i",
    "j",
    "k",
    "m",
    "n",
    "p",
    "q",
    "r",
    "s",
    "softmax_J",
    "softmax_p",
    "theta",
    "vartheta",
]
