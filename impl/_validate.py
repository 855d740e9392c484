"""Argument checks shared by the :mod:`impl` modules (private)."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from impl.errors import InvalidArgument, describe
from impl.types import FloatArray, IntArray


def float_vector(value: Any, name: str, *, min_size: int = 1) -> FloatArray:
    """A finite 1-D float64 copy of ``value`` with at least ``min_size`` entries."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"Expected a 1-D float array but got {describe(name, value)}"
        ) from exc
    if arr.ndim != 1 or arr.size < min_size:
        raise InvalidArgument(
            f"Expected a 1-D float array with at least {min_size} entries but got "
            f"{describe(name, value)}"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidArgument(f"Expected finite values but got {describe(name, value)}")
    return arr


def distribution(value: Any, name: str, *, n: int | None = None) -> FloatArray:
    """A 1-D float64 probability vector (non-negative, sums to 1 within 1e-9)."""
    arr = float_vector(value, name)
    if n is not None and arr.size != n:
        raise InvalidArgument(
            f"Expected a distribution over {n} answers but got {describe(name, value)}"
        )
    if np.any(arr < 0) or abs(float(arr.sum()) - 1.0) > DISTRIBUTION_SUM_TOL:
        raise InvalidArgument(
            f"Expected non-negative entries summing to 1 but got {describe(name, value)}"
        )
    out: FloatArray = arr / arr.sum()
    return out


DISTRIBUTION_SUM_TOL = 1e-9
"""How far from 1 a passed distribution may sum (float round-off of user input)."""


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """An ``int`` >= ``minimum`` (bools rejected)."""
    if isinstance(value, bool):
        raise InvalidArgument(f"Expected an integer but got {describe(name, value)}")
    try:
        out = operator.index(value)
    except TypeError as exc:
        raise InvalidArgument(f"Expected an integer but got {describe(name, value)}") from exc
    if out < minimum:
        raise InvalidArgument(f"Expected an integer >= {minimum} but got {describe(name, value)}")
    return int(out)


def answer(value: Any, name: str, n: int) -> int:
    """An answer index in ``0..n-1``."""
    out = positive_int(value, name, minimum=0)
    if out >= n:
        raise InvalidArgument(f"Expected an answer in 0..{n - 1} but got {describe(name, value)}")
    return out


def samples_2d(value: Any, name: str, n: int) -> IntArray:
    """An int64 ``(B, k)`` array of answers in ``0..n-1``."""
    arr = np.asarray(value)
    if arr.ndim != 2 or arr.shape[1] < 1 or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidArgument(
            f"Expected an integer array of shape (B, k) but got {describe(name, value)}"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise InvalidArgument(f"Expected answers in 0..{n - 1} but got {describe(name, value)}")
    return arr.astype(np.int64, copy=False)


__all__ = [
    "DISTRIBUTION_SUM_TOL",
    "answer",
    "distribution",
    "float_vector",
    "positive_int",
    "samples_2d",
]
