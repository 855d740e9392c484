r"""NumPy oracles ``lambdify``-ed from the SymPy statements, to cross-check :mod:`impl`.

Each oracle differentiates (or evaluates) the *statement* with SymPy for the concrete
size asked for and compiles it with ``sympy.lambdify``; none of them re-types a formula
from :mod:`impl`.  Compiled functions are memoised per size (they are oracles, not
proofs; the proofs in :mod:`spec.proofs` are rebuilt on every call).

Softmax oracles shift the logits by their maximum before evaluating (the softmax, hence
every quantity here, is invariant under :math:`\theta \mapsto \theta + c\mathbf 1`), so
that large logits do not overflow.

>>> import numpy as np
>>> softmax_gradient_oracle(np.zeros(2), np.array([1.0, 3.0]))
array([-0.5,  0.5])
>>> imitation_gradient_oracle(np.zeros(2), np.array([1.0, 0.0]))
array([ 0.5, -0.5])
>>> best_of_k_oracle(np.array([0.0, 1.0]), np.array([0.5, 0.5]), 2)
array([0.25, 0.75])
>>> float(amplification_map_oracle(0.5, 2))
0.75
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import sympy

from spec._core import SpecError

FloatArray = npt.NDArray[np.float64]
"""A float64 array."""

_Compiled = Callable[..., Any]


def _vector(value: Any, name: str) -> FloatArray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 1 or not np.all(np.isfinite(arr)):
        raise SpecError(
            f"Expected a finite 1-D float array but got {name}={value!r} "
            f"(shape={np.shape(value)})"
        )
    return arr


def _same_size(a: FloatArray, b: FloatArray, what: str) -> None:
    if a.size != b.size:
        raise SpecError(f"Expected {what} of the same length but got sizes {a.size} and {b.size}")


def _softmax_symbols(size: int) -> tuple[list[Any], list[Any]]:
    th = list(sympy.symbols(f"th0:{size}", real=True))
    z = sum((sympy.exp(t) for t in th), sympy.Integer(0))
    return th, [sympy.exp(t) / z for t in th]


@functools.cache
def _grad_of(kind: str, size: int) -> _Compiled:
    th, probs = _softmax_symbols(size)
    w = list(sympy.symbols(f"w0:{size}", real=True))
    if kind == "rl":  # J = sum_i p_i s_i
        objective = sum((pi * wi for pi, wi in zip(probs, w, strict=True)), sympy.Integer(0))
    elif kind == "imitation":  # sum_i q_i log p_i
        objective = sum(
            (wi * sympy.log(pi) for pi, wi in zip(probs, w, strict=True)), sympy.Integer(0)
        )
    else:  # pragma: no cover - internal
        raise SpecError(f"unknown kind={kind!r}")
    grad = [sympy.diff(objective, t) for t in th]
    return sympy.lambdify([th, w], grad, modules="numpy")  # type: ignore[no-any-return]


@functools.cache
def _grad_prob(size: int, demo: int) -> _Compiled:
    th, probs = _softmax_symbols(size)
    grad = [sympy.diff(probs[demo], t) for t in th]
    return sympy.lambdify([th], grad, modules="numpy")  # type: ignore[no-any-return]


def _eval(fn: _Compiled, *args: Any) -> FloatArray:
    out: FloatArray = np.asarray(fn(*args), dtype=np.float64)
    return out


def softmax_gradient_oracle(logits: Any, scores: Any) -> FloatArray:
    r""":math:`\nabla_\theta J`, :math:`J = \sum_i \mathrm{softmax}(\theta)_i s_i`, by SymPy ``diff``.

    >>> softmax_gradient_oracle([0.0, 0.0, 0.0], [0.0, 0.0, 3.0])
    array([-0.33333333, -0.33333333,  0.66666667])
    """
    theta = _vector(logits, "logits")
    s = _vector(scores, "scores")
    _same_size(theta, s, "logits and scores")
    return _eval(_grad_of("rl", theta.size), list(theta - theta.max()), list(s))


def self_inclusive_gradient_oracle(logits: Any, scores: Any, k: int) -> FloatArray:
    r""":math:`E[g]` of the self-inclusive group-mean baseline: :math:`\frac{k-1}{k}\nabla J`.

    >>> self_inclusive_gradient_oracle([0.0, 0.0], [1.0, 3.0], 2)
    array([-0.25,  0.25])
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SpecError(f"Expected an integer k >= 1 but got k={k!r} (type={type(k).__name__})")
    factor = float(_FACTOR(k))
    return factor * softmax_gradient_oracle(logits, scores)


_kk = sympy.Symbol("k", positive=True, integer=True)
_FACTOR: _Compiled = sympy.lambdify([_kk], (_kk - 1) / _kk, modules="numpy")


def imitation_gradient_oracle(logits: Any, demonstrator: Any) -> FloatArray:
    r""":math:`\nabla_\theta \sum_i q_i \log \mathrm{softmax}(\theta)_i` by SymPy ``diff``.

    >>> imitation_gradient_oracle([0.0, 0.0], [0.25, 0.75])
    array([-0.25,  0.25])
    """
    theta = _vector(logits, "logits")
    q = _vector(demonstrator, "demonstrator")
    _same_size(theta, q, "logits and demonstrator")
    return _eval(_grad_of("imitation", theta.size), list(theta - theta.max()), list(q))


def indicator_gradient_oracle(logits: Any, demonstration: int) -> FloatArray:
    r""":math:`E[1[x = x^*]\nabla\log p(x)] = \nabla p(x^*)`, by SymPy ``diff`` of :math:`p_{x^*}`.

    >>> indicator_gradient_oracle([0.0, 0.0], 1)
    array([-0.25,  0.25])
    """
    theta = _vector(logits, "logits")
    if isinstance(demonstration, bool) or not isinstance(demonstration, (int, np.integer)) or not (
        0 <= demonstration < theta.size
    ):
        raise SpecError(
            f"Expected an answer in 0..{theta.size - 1} but got demonstration={demonstration!r}"
        )
    return _eval(_grad_prob(theta.size, int(demonstration)), list(theta - theta.max()))


def stochastic_indicator_gradient_oracle(logits: Any, demonstrator: Any) -> FloatArray:
    r""":math:`E_{d\sim q}E_{x\sim p}[1[x = d]\nabla\log p(x)] = \nabla (q\cdot p)`.

    >>> stochastic_indicator_gradient_oracle([0.0, 0.0], [1.0, 0.0])
    array([ 0.25, -0.25])
    """
    return softmax_gradient_oracle(logits, demonstrator)


_Fj, _Fprev = sympy.symbols("F_j F_prev", nonnegative=True)
_BEST_OF_K: _Compiled = sympy.lambdify([_Fj, _Fprev, _kk], _Fj**_kk - _Fprev**_kk, modules="numpy")


def best_of_k_oracle(scores: Any, proposal: Any, k: int) -> FloatArray:
    r""":math:`B_k(q)(x_{(j)}) = F_j^k - F_{j-1}^k` (ranks by score, lower index wins a tie).

    >>> best_of_k_oracle([1.0, 1.0, 0.0], [0.25, 0.25, 0.5], 2)
    array([0.4375, 0.3125, 0.25  ])
    """
    s = _vector(scores, "scores")
    q = _vector(proposal, "proposal")
    _same_size(s, q, "scores and proposal")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise SpecError(f"Expected an integer k >= 1 but got k={k!r} (type={type(k).__name__})")
    order = np.lexsort((-np.arange(s.size), s))  # worst first; at a tie the lower index ranks higher
    cdf = np.cumsum(q[order])
    prev = np.concatenate(([0.0], cdf[:-1]))
    out = np.empty(s.size)
    out[order] = _BEST_OF_K(cdf, prev, int(k))
    return out


_a_sym = sympy.Symbol("a", nonnegative=True)
_AMPLIFY: _Compiled = sympy.lambdify([_a_sym, _kk], 1 - (1 - _a_sym) ** _kk, modules="numpy")


def amplification_map_oracle(a: Any, k: int) -> FloatArray:
    r"""The amplify-and-distil map on the :math:`A^*` mass: :math:`a \mapsto 1-(1-a)^k`.

    >>> amplification_map_oracle(np.array([0.0, 0.5, 1.0]), 3)
    array([0.   , 0.875, 1.   ])
    """
    out: FloatArray = np.asarray(_AMPLIFY(np.asarray(a, dtype=np.float64), int(k)))
    return out


__all__ = [
    "amplification_map_oracle",
    "best_of_k_oracle",
    "imitation_gradient_oracle",
    "indicator_gradient_oracle",
    "self_inclusive_gradient_oracle",
    "softmax_gradient_oracle",
    "stochastic_indicator_gradient_oracle",
]
