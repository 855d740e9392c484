r"""A ``scaled`` row's constant as a formula in ``k``, ``T``, ``P``, fitted exactly to the per-key values.

The sequence checker measures one constant per key ``(k, T, P)`` or ``(k, T, P, V)``
(``SequenceReport.scale``).  :func:`fit_formula` looks for the simplest

.. math::

    c(k, T, P) = a\, k^{e_1} (k-1)^{e_2} T^{e_3} P^{e_4} (Pk-1)^{e_5},
    \qquad e_i \in \{-1, 0, 1\},\ a = n/d,\ 1 \le |n|, d \le 12,

that gives every measured constant within :data:`FORMULA_RTOL` (the constants are exact
expectations, so only round-off separates them from their closed form).  "Simplest" is the
fewest factors, then the smallest ``|n| + d``; the coefficient ``a`` is read off the first key
and rounded to the nearest such fraction.  A factor that is constant on the measured keys
cannot be told apart from the coefficient, so it is not tried (at ``P = 1`` neither ``P`` nor
``Pk - 1``), and the formula names the variables that were held fixed (``at P=1``).  When two
different formulas of the same simplicity fit (too few keys to tell them apart), or none
fits, there is no formula and :func:`constant_text` prints the per-key values.

>>> f = fit_formula({(2, 1, 1): 0.5, (3, 1, 1): 2 / 3, (4, 2, 1): 0.375})
>>> f.text, f.held
('(k-1)/(kT)', 'P=1')
>>> fit_formula({(2, 3, 1): 2 / 3, (3, 3, 2): 2.0, (2, 2, 2): 2.0}).text
'kP/T'
>>> fit_formula({(2, 1, 1): 0.3, (3, 1, 1): 0.31}) is None
True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from fractions import Fraction

FORMULA_RTOL = 1e-6
"""Relative tolerance within which a formula must give every measured constant."""

MAX_COEFFICIENT = 12
"""The largest numerator and denominator of the formula's rational coefficient ``a``."""

EXPONENTS = (-1, 0, 1)
"""The powers each factor may appear with."""

_FACTORS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("k", (0,)),
    ("(k-1)", (0,)),
    ("T", (1,)),
    ("P", (2,)),
    ("(Pk-1)", (0, 2)),
)
"""The factors of a formula: their text, and the indices in ``(k, T, P)`` they depend on."""


def _factor_value(index: int, k: int, t: int, p: int) -> int:
    return (k, k - 1, t, p, p * k - 1)[index]


def _base(exponents: tuple[int, ...], key: tuple[int, int, int]) -> Fraction | None:
    """The product of the factors at ``key``, ``None`` where it is 0 or divides by 0."""
    value = Fraction(1)
    for i, e in enumerate(exponents):
        if e:
            factor = _factor_value(i, *key)
            if factor == 0:
                return None
            value *= Fraction(factor) ** e
    return value


@dataclass(frozen=True)
class Formula:
    """``a * prod factor**exponent``: ``text`` as a reader writes it, ``held`` the fixed variables."""

    coefficient: Fraction
    exponents: tuple[int, ...]
    text: str
    held: str

    def __call__(self, k: int, t: int, p: int) -> float:
        """The formula's value at ``(k, T, P)``.

        >>> fit_formula({(2, 1, 1): 2.0, (3, 1, 1): 3.0, (4, 2, 1): 4.0})(5, 1, 1)
        5.0
        """
        base = _base(self.exponents, (k, t, p))
        return float(self.coefficient * base) if base is not None else math.nan

    def describe(self) -> str:
        """``c = (k-1)/k at P=1`` (or without the held part when nothing was held fixed)."""
        return f"c = {self.text}" + (f" at {self.held}" if self.held else "")


def _render(coefficient: Fraction, exponents: tuple[int, ...]) -> str:
    """``2(k-1)P/(kT)`` from the coefficient and the factors' exponents.

    >>> _render(Fraction(1), (0, 0, 0, 0, 0)), _render(Fraction(1, 2), (0, 0, -1, 0, 0))
    ('1', '1/(2T)')
    >>> _render(Fraction(-1), (1, 0, -1, 1, 0)), _render(Fraction(1), (-1, 1, 0, 0, 0))
    ('-kP/T', '(k-1)/k')
    """
    top = [_FACTORS[i][0] for i, e in enumerate(exponents) if e > 0]
    bottom = [_FACTORS[i][0] for i, e in enumerate(exponents) if e < 0]
    num, den = abs(coefficient.numerator), coefficient.denominator
    sign = "-" if coefficient < 0 else ""
    head = ("" if num == 1 and top else str(num)) + "".join(top)
    if den != 1:
        bottom.insert(0, str(den))
    if not bottom:
        return sign + head
    tail = bottom[0] if len(bottom) == 1 else "(" + "".join(bottom) + ")"
    return f"{sign}{head}/{tail}"


def _keys(scale: Mapping[Hashable, float]) -> list[tuple[int, int, int]] | None:
    out = []
    for key in scale:
        if not (isinstance(key, tuple) and len(key) in (3, 4)):
            return None
        out.append((int(key[0]), int(key[1]), int(key[2])))
    return out


def fit_formula(scale: Mapping[Hashable, float]) -> Formula | None:
    """The simplest formula that gives every constant of ``scale`` (module docstring), or ``None``.

    ``scale`` maps ``(k, T, P)`` or ``(k, T, P, V)`` to the measured constant; a formula needs
    at least two keys.  Keys that differ only in ``V`` must have the same constant (the
    formula has no ``V``).

    >>> fit_formula({(2, 1, 1, 2): 1.0, (2, 1, 1, 3): 0.5}) is None  # depends on V
    True
    >>> fit_formula({(2, 1, 1): 1.0, (2, 2, 1): 0.5, (3, 3, 1): 1 / 3}).describe()
    'c = 1/T at P=1'
    """
    keys = _keys(scale)
    if keys is None or len(scale) < 2:
        return None
    values = [float(v) for v in scale.values()]
    if not all(math.isfinite(v) for v in values):
        return None
    varied = [len({key[i] for key in keys}) > 1 for i in range(3)]
    held = ", ".join(f"{'kTP'[i]}={keys[0][i]}" for i in range(3) if not varied[i])
    choices = [EXPONENTS if all(varied[i] for i in needs) else (0,) for _, needs in _FACTORS]
    found: list[tuple[tuple[int, int], Formula]] = []
    for exponents in itertools.product(*choices):
        bases = [_base(exponents, key) for key in keys]
        if any(b is None for b in bases):
            continue
        exact = [b for b in bases if b is not None]
        coefficient = Fraction(values[0] / float(exact[0])).limit_denominator(MAX_COEFFICIENT)
        if coefficient == 0 or abs(coefficient.numerator) > MAX_COEFFICIENT:
            continue
        if all(
            math.isclose(v, float(coefficient * b), rel_tol=FORMULA_RTOL)
            for v, b in zip(values, exact, strict=True)
        ):
            size = (sum(map(abs, exponents)), abs(coefficient.numerator) + coefficient.denominator)
            text = _render(coefficient, exponents)
            found.append((size, Formula(coefficient, exponents, text, held)))
    if not found:
        return None
    best = min(size for size, _ in found)
    simplest = [f for size, f in found if size == best]
    return simplest[0] if len(simplest) == 1 else None


__all__ = ["EXPONENTS", "FORMULA_RTOL", "MAX_COEFFICIENT", "Formula", "fit_formula"]
