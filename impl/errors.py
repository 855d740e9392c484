"""The one exception type for bad arguments to :mod:`impl`."""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_SHOWN = 200
"""Longest ``repr`` shown by :func:`describe` (longer ones are cut with ``...``)."""

_QUALNAME = type.__dict__["__qualname__"]
_SHAPE = np.ndarray.__dict__["shape"]
_DTYPE = np.ndarray.__dict__["dtype"]


class InvalidArgument(ValueError):
    """An argument to an :mod:`impl` function has the wrong type, shape or value."""


def _type_name(value: Any) -> str:
    try:
        name = _QUALNAME.__get__(type(value))
        return str.__str__(name) if isinstance(name, str) else "<unnamed type>"
    except KeyboardInterrupt:
        raise
    except BaseException:
        return "<unnamed type>"


def _repr(value: Any) -> str:
    try:
        text = repr(value)
        text = str.__str__(text)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        text = f"<{_type_name(value)} object; repr() raised {_type_name(exc)}>"
    if len(text) > MAX_SHOWN:
        text = text[: MAX_SHOWN - 3] + "..."
    return text


def describe(name: str, value: Any) -> str:
    """Render ``name=value!r`` with its type and, for arrays, shape and dtype.

    Never raises (except ``KeyboardInterrupt``), whatever ``value``'s ``repr`` or
    attributes do: the value may come from user code.

    >>> describe("logits", np.zeros((2, 3)))
    'logits=array([[0., 0., 0.],\\n       [0., 0., 0.]]) (type=ndarray, shape=(2, 3), dtype=float64)'
    >>> describe("k", 0)
    'k=0 (type=int)'
    >>> class Bomb:
    ...     def __repr__(self):
    ...         raise SystemExit(1)
    >>> describe("fn", Bomb())
    'fn=<Bomb object; repr() raised SystemExit> (type=Bomb)'
    """
    text = _repr(value)
    kind = _type_name(value)
    if issubclass(type(value), np.ndarray):
        try:
            # the base-class descriptors: a subclass cannot override what is read here
            return f"{name}={text} (type={kind}, shape={_SHAPE.__get__(value)}, dtype={_DTYPE.__get__(value)})"
        except KeyboardInterrupt:
            raise
        except BaseException:
            pass
    return f"{name}={text} (type={kind})"


__all__ = ["MAX_SHOWN", "InvalidArgument", "describe"]
