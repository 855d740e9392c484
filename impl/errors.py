"""The one exception type for bad arguments to :mod:`impl`."""

from __future__ import annotations

from typing import Any

import numpy as np


class InvalidArgument(ValueError):
    """An argument to an :mod:`impl` function has the wrong type, shape or value."""


def describe(name: str, value: Any) -> str:
    """Render ``name=value!r`` with its type and, for arrays, shape and dtype.

    >>> describe("logits", np.zeros((2, 3)))
    'logits=array([[0., 0., 0.],\\n       [0., 0., 0.]]) (type=ndarray, shape=(2, 3), dtype=float64)'
    >>> describe("k", 0)
    'k=0 (type=int)'
    """
    text = repr(value)
    if len(text) > 200:
        text = text[:197] + "..."
    if isinstance(value, np.ndarray):
        return f"{name}={text} (type=ndarray, shape={value.shape}, dtype={value.dtype})"
    return f"{name}={text} (type={type(value).__name__})"


__all__ = ["InvalidArgument", "describe"]
