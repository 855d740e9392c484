r"""Judging :math:`E[g] \approx c\,\nabla J` (private; shared by the one-step and sequence checkers).

Everything here is generic over an *evaluation*: any object with

* ``mean``: the exact :math:`E[g]` (an array of any shape),
* ``gradient``: the exact :math:`G = \nabla J` (same shape),
* ``tolerance``: a per-coordinate round-off bound :math:`\tau \ge 0` (same shape; it must
  grow with the estimator's own scale: an estimator that multiplies its rewards by
  :math:`c` before they cancel multiplies its round-off by :math:`c`),
* ``floor``: a lower bound on every entry of ``tolerance`` (a cheap early accept),
* ``key``: what one scale constant is measured for (the one-step checker keys by the
  group size ``k``; a sequence checker may key by ``(k, T, P)``).

The rules:

* **Best fit.** :math:`c^* = \langle E, G\rangle / \langle G, G\rangle` and the residual
  :math:`E - c^* G` (:func:`best_fit`); when :math:`|G| \le |\tau|` no multiple is
  meaningful and the residual is :math:`E` itself.
* **Reference.** Per key, the scale :math:`c` is measured on one *reference* problem with
  uncertainty :math:`u = |\tau| / |G|` (:class:`ReferenceBook`): the first offered problem
  with :math:`u < \max(1, |c|)/R` (:data:`REFERENCE_MIN_SIGNAL`), else, once the offers
  are closed, the offered problem with the smallest :math:`u` (and :math:`|G| > |\tau|`).  Problems
  offered before the reference is chosen are judged when it is.  A reference with
  :math:`u \ge \max(1, |c|)/R` is *imprecise*: it can still show a bias, but cannot certify a scale.
* **Judgement.** A problem agrees with the reference :math:`(c, u)` iff
  :math:`|E_i - c\,G_i| \le \tau_i + u\,|G_i| + \max(0, |c| - 1)\,\tau^R_i` for every
  coordinate (:func:`judge`, :func:`scale_allowance`; :math:`\tau^R` is the optional
  ``scale_roundoff``, the round-off per unit of scale, 0 without it); a
  reference with :math:`c \le u` is a counterexample by itself (:func:`nonpositive`).
* **Verdict precedence** (:func:`decide`): an estimator fault (``error``) beats a
  counterexample (``biased``), which beats an imprecise reference (``error``, kind
  ``imprecise``: the scale cannot be told from 1), which beats ``scaled`` (some
  :math:`|c - 1| > u`), which beats ``unbiased``.

Norms are computed with scaling, so outputs near the float64 range do not overflow them.

>>> import numpy as np
>>> class Ev:
...     def __init__(self, mean, gradient):
...         self.mean, self.gradient = np.array(mean), np.array(gradient)
...         self.tolerance, self.floor, self.key = np.full(2, 1e-12), 1e-12, 2
>>> book = ReferenceBook()
>>> book.offer(Ev([-0.125, 0.125], [-0.25, 0.25]))
[]
>>> round(book.reference(2).multiple, 12)
0.5
>>> [m.kind for m in book.offer(Ev([-0.2, 0.2], [-0.25, 0.25]))]
['scale-varies']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

import numpy as np

from impl.types import FloatArray

REFERENCE_MIN_SIGNAL = 100.0
"""A problem is a precise scale reference only if ``|G| > REFERENCE_MIN_SIGNAL * |tau|``
(the scale is then known to better than 1%, enough to tell ``c = 1`` from ``(k-1)/k``
for every ``k`` up to 100)."""

HINT_MATCH_UNCERTAINTIES = 4.0
"""A known scale formula matches a measured ``c_k`` within this many uncertainties."""

HINT_MATCH_FLOOR = 1e-12
"""... or within this absolute slack (a perfectly measured scale has uncertainty ~0)."""

Verdict = Literal["unbiased", "scaled", "biased", "error"]
"""The four verdicts."""

MismatchKind = Literal["flat", "not-a-multiple", "scale-varies", "nonpositive"]
"""Why a problem disagrees with the reference (see :class:`Mismatch`)."""


class Evaluated(Protocol):
    """What the judging needs to know about one evaluated problem."""

    @property
    def mean(self) -> FloatArray: ...

    @property
    def gradient(self) -> FloatArray: ...

    @property
    def tolerance(self) -> FloatArray: ...

    @property
    def floor(self) -> float: ...

    @property
    def key(self) -> Hashable: ...


E = TypeVar("E", bound=Evaluated)


def norm(a: FloatArray) -> float:
    """The Euclidean norm of ``a`` (any shape), without overflow for entries near 1e308.

    >>> norm(np.array([3e200, 4e200]))
    5e+200
    """
    flat = np.ravel(a)
    if flat.size == 0:
        return 0.0
    top = float(np.max(np.abs(flat)))
    if top == 0.0 or not math.isfinite(top):
        return top
    scaled = flat / top
    return top * math.sqrt(float(np.dot(scaled, scaled)))


def dot(a: FloatArray, b: FloatArray) -> float:
    """:math:`\\langle a, b\\rangle` over all entries (any shape)."""
    return float(np.vdot(a, b))


def best_fit(ev: Evaluated) -> tuple[float | None, FloatArray]:
    """``(c*, E - c* G)``, or ``(None, E)`` when no multiple is meaningful.

    A multiple is meaningful when the uncertainty it inherits from the tolerance,
    ``|tau| / |G|``, is below ``max(1, |c*|)``: ``G`` stands out of the round-off.
    """
    g = norm(ev.gradient)
    if g > 0.0 and math.isfinite(g):
        c = _ratio(ev.mean, ev.gradient, g)
        if norm(ev.tolerance) < g * max(1.0, abs(c)):
            residual: FloatArray = ev.mean - c * ev.gradient
            return c, residual
    out: FloatArray = np.array(ev.mean, dtype=np.float64, copy=True)
    return None, out


def _ratio(mean: FloatArray, gradient: FloatArray, g: float) -> float:
    """``<E, G> / |G|^2`` computed on ``G / |G|`` so that nothing overflows."""
    unit = np.ravel(gradient) / g
    return float(np.dot(np.ravel(mean), unit)) / g


@dataclass
class Reference(Generic[E]):
    """The scale :math:`c` for one key, measured on ``evaluation`` with ``uncertainty`` :math:`u = |\\tau|/|G|`."""

    multiple: float
    uncertainty: float
    evaluation: E

    @property
    def precise(self) -> bool:
        """Whether the scale is known to better than ``max(1, |c|) / REFERENCE_MIN_SIGNAL``.

        Relative to ``|c|`` when ``|c| > 1``: an output scaled by ``1e160`` has a round-off
        of ``1e160`` times float64's, and its scale is still far from 1.
        """
        return self.uncertainty * REFERENCE_MIN_SIGNAL < max(1.0, abs(self.multiple))


def reference_candidate(ev: E) -> Reference[E] | None:
    """The reference this problem would give, or ``None`` when ``G`` drowns in the tolerance.

    The uncertainty is :math:`u = |\\tau| / |G|`; a candidate needs :math:`u < \\max(1, |c|)`.
    """
    g = norm(ev.gradient)
    if not (g > 0.0 and math.isfinite(g)):
        return None
    c = _ratio(ev.mean, ev.gradient, g)
    u = norm(ev.tolerance) / g
    if not u < max(1.0, abs(c)):
        return None
    return Reference(multiple=c, uncertainty=u, evaluation=ev)


@dataclass(frozen=True)
class Mismatch(Generic[E]):
    r"""A problem on which :math:`E[g]` is not :math:`c\,G` for the key's reference :math:`c`.

    ``kind``: ``flat`` (:math:`G = 0` but :math:`E \ne 0`), ``not-a-multiple`` (the residual
    after the best fit is outside the tolerance), ``scale-varies`` (a good fit, with a
    different :math:`c` than the reference's) or ``nonpositive`` (the reference itself has
    :math:`c \le u`).  ``discrepancy`` is :math:`E - c\,G` and ``allowed`` the bound it broke,
    :math:`\tau + u|G|`; ``multiple``/``residual`` are the best fit on this problem.
    """

    evaluation: E
    reference: Reference[E]
    kind: MismatchKind
    multiple: float | None
    residual: FloatArray
    discrepancy: FloatArray
    allowed: FloatArray
    reason: str


def scale_allowance(ev: Evaluated, multiple: float) -> FloatArray | float:
    r"""The round-off a scale :math:`|c| > 1` adds to :math:`\tau`: :math:`(|c| - 1)\,\tau^R`.

    :math:`\tau^R` is the evaluation's ``scale_roundoff`` (round-off per unit of scale),
    when it has one: the round-off of the exact :math:`G` itself (a float64 sum, so
    :math:`G = 2.95 \times 10^{-17}` where :math:`\nabla J = 0` exactly) and the user's
    cancellations of values :math:`c` times the rewards both grow with :math:`|c|`, and
    :math:`\tau` covers them once (for :math:`|c| \le 1`).  Without the term a correct
    loss times a static fp16 loss scale of 65536 was "biased" (issue 15, F1).  Evaluations
    without ``scale_roundoff`` (the one-step checker's, whose ``tolerance`` already folds
    :math:`|c^*|\max|s|` in) get 0.

    >>> class Ev:
    ...     scale_roundoff = np.array([1e-16, 2e-16])
    >>> scale_allowance(Ev(), 1e6).tolist(), scale_allowance(Ev(), 0.5)
    ([9.99999e-11, 1.999998e-10], 0.0)
    """
    unit = getattr(ev, "scale_roundoff", None)
    if unit is None or not abs(multiple) > 1.0 or not math.isfinite(multiple):
        return 0.0
    out: FloatArray = (abs(multiple) - 1.0) * np.asarray(unit, dtype=np.float64)
    return out


def judge(ev: E, ref: Reference[E]) -> Mismatch[E] | None:
    """``None`` if ``|E - c G| <= tau + u |G|`` everywhere, else the :class:`Mismatch`."""
    discrepancy: FloatArray = ev.mean - ref.multiple * ev.gradient
    worst = np.abs(discrepancy)
    if float(np.max(worst, initial=0.0)) <= ev.floor:  # within the constant part of tau
        return None
    tau = ev.tolerance
    allowed: FloatArray = (
        tau + ref.uncertainty * np.abs(ev.gradient) + scale_allowance(ev, ref.multiple)
    )
    if np.all(worst <= allowed):
        return None
    multiple, residual = best_fit(ev)
    kind: MismatchKind
    if multiple is None:
        kind = "flat"
        reason = (
            "grad J = 0 on this problem (every answer scores J, or the policy is "
            "deterministic), but E[g] != 0: the estimator moves the logits where the "
            "objective is flat"
        )
    elif np.any(np.abs(residual) > tau + norm(tau) / norm(ev.gradient) * np.abs(ev.gradient)):
        kind = "not-a-multiple"
        reason = (
            "E[g] is not a multiple of grad J on this problem: after the best fit "
            f"c = {multiple:.10g} the residual E[g] - c grad J is outside the tolerance"
        )
    else:
        kind = "scale-varies"
        reason = (
            f"E[g] = c grad J with c = {multiple:.10g} on this problem, but c = "
            f"{ref.multiple:.10g} on the reference problem for {_key_text(ev.key)}: the scale "
            "depends on the problem, so no fixed step-size correction makes this estimator "
            "unbiased"
        )
    return Mismatch(
        evaluation=ev,
        reference=ref,
        kind=kind,
        multiple=multiple,
        residual=residual,
        discrepancy=discrepancy,
        allowed=allowed,
        reason=reason,
    )


def nonpositive(ref: Reference[E]) -> Mismatch[E] | None:
    """The reference as a counterexample when its scale is not clearly positive (``c <= u``)."""
    if ref.multiple > ref.uncertainty:
        return None
    ev = ref.evaluation
    multiple, residual = best_fit(ev)
    direction = (
        "the opposite way to" if ref.multiple < 0 else "orthogonally to (or not at all along)"
    )
    return Mismatch(
        evaluation=ev,
        reference=ref,
        kind="nonpositive",
        multiple=multiple,
        residual=residual,
        discrepancy=ev.mean - ev.gradient,
        allowed=ev.tolerance + ref.uncertainty * np.abs(ev.gradient),
        reason=(
            f"E[g] = c grad J with c = {ref.multiple:.10g} <= 0: on average the estimator "
            f"moves the logits {direction} the ascent direction of J"
        ),
    )


def _key_text(key: Hashable) -> str:
    if isinstance(key, int):
        return f"k={key}"
    return f"{key!r}"


@dataclass
class _Slot(Generic[E]):
    reference: Reference[E] | None = None
    best: Reference[E] | None = None
    pending: list[E] = field(default_factory=list)


class ReferenceBook(Generic[E]):
    """Chooses one reference per key and judges every offered problem against it.

    Offer problems simplest first (the first precise one becomes the reference); call
    :meth:`close` once no more reference candidates will come (after the battery): keys
    still without a precise reference then take their best candidate, and the problems
    held back for them are judged.  ``offer`` and ``close`` return the mismatches found,
    in the order the problems were offered.
    """

    def __init__(self) -> None:
        self._slots: dict[Hashable, _Slot[E]] = {}
        self.closed = False

    def reference(self, key: Hashable) -> Reference[E] | None:
        """The reference for ``key`` (``None`` if none has been chosen yet)."""
        slot = self._slots.get(key)
        return None if slot is None else slot.reference

    def references(self) -> dict[Hashable, Reference[E] | None]:
        """Every key offered so far and its reference (``None``: no problem had ``|G| > |tau|``)."""
        return {key: slot.reference for key, slot in self._slots.items()}

    def offer(self, ev: E) -> list[Mismatch[E]]:
        """Judge ``ev`` (or hold it back until its key has a reference)."""
        slot = self._slots.setdefault(ev.key, _Slot())
        if slot.reference is not None:
            found = judge(ev, slot.reference)
            return [] if found is None else [found]
        candidate = reference_candidate(ev)
        if candidate is not None and (slot.best is None or candidate.uncertainty < slot.best.uncertainty):
            slot.best = candidate
        if candidate is not None and (candidate.precise or self.closed):
            return self._settle(slot, candidate, [*slot.pending, ev])
        slot.pending.append(ev)
        return []

    def close(self) -> list[Mismatch[E]]:
        """Settle every key still waiting, on its best candidate (if any)."""
        self.closed = True
        found: list[Mismatch[E]] = []
        for slot in self._slots.values():
            if slot.reference is None and slot.best is not None:
                found += self._settle(slot, slot.best, slot.pending)
        return found

    def _settle(self, slot: _Slot[E], ref: Reference[E], evs: list[E]) -> list[Mismatch[E]]:
        # ref.evaluation is always one of evs: offer passes [*pending, ev] with ev the
        # candidate, close passes pending, which holds the best candidate offered
        slot.reference = ref
        slot.pending = []
        found: list[Mismatch[E]] = []
        bad = nonpositive(ref)
        for ev in evs:
            if ev is ref.evaluation and bad is not None:
                found.append(bad)
                continue
            mismatch = judge(ev, ref)
            if mismatch is not None:
                found.append(mismatch)
        return found


@dataclass(frozen=True)
class Decision:
    """The verdict from the evidence, with the scales for ``unbiased``/``scaled``.

    ``imprecise`` lists the keys whose scale could not be measured well enough to tell it
    from 1 (their reference is missing or has ``u >= 1/REFERENCE_MIN_SIGNAL``); when it is
    non-empty and nothing else decided, the verdict is ``error``.
    """

    verdict: Verdict
    scale: dict[Hashable, float] | None
    uncertainty: dict[Hashable, float] | None
    imprecise: tuple[Hashable, ...]


def decide(
    *,
    fault: bool,
    mismatch: bool,
    references: Mapping[Hashable, Reference[Any] | None],
    keys: Iterable[Hashable],
) -> Decision:
    """Apply the verdict precedence: fault > mismatch > imprecise > scaled > unbiased."""
    keys = tuple(keys)
    if fault:
        return Decision("error", None, None, ())
    if mismatch:
        return Decision("biased", None, None, ())
    imprecise = tuple(
        k for k in keys if (ref := references.get(k)) is None or not ref.precise
    )
    if imprecise:
        return Decision("error", None, None, imprecise)
    refs = {k: references[k] for k in keys}
    unc = {k: r.uncertainty for k, r in refs.items() if r is not None}
    measured = {k: r.multiple for k, r in refs.items() if r is not None}
    if all(abs(measured[k] - 1.0) <= unc[k] for k in keys):
        return Decision("unbiased", {k: 1.0 for k in keys}, unc, ())
    return Decision("scaled", measured, unc, ())


def precise_rtol(
    rtol: float, references: Mapping[Hashable, Reference[Any] | None], keys: Iterable[Hashable]
) -> float | None:
    r"""An ``rtol`` (one significant digit, rounded down) that would make every key's reference precise.

    A user-given ``rtol`` (with ``atol = 0``) makes the tolerance, and so the uncertainty
    :math:`u` of a scale, proportional to it; a reference is precise when
    :math:`u < \max(1, |c|)/R`, so ``rtol * max(1, |c|) / (R u)`` is the loosest ``rtol``
    at which that reference would be.  ``None`` when some key has no reference at all
    (no problem had :math:`|G| > |\tau|`: no estimate).

    >>> class Ev: pass
    >>> refs = {2: Reference(1.0, 0.046, Ev()), 3: Reference(1.0, 0.002, Ev())}
    >>> precise_rtol(1e-2, refs, [2, 3])
    0.002
    >>> precise_rtol(1e-2, {2: None}, [2]) is None
    True
    """
    bounds: list[float] = []
    for key in keys:
        ref = references.get(key)
        if ref is None or ref.uncertainty <= 0.0:
            return None if ref is None else rtol
        bounds.append(rtol * max(1.0, abs(ref.multiple)) / (REFERENCE_MIN_SIGNAL * ref.uncertainty))
    if not bounds:
        return None
    bound = min(rtol, *bounds)
    digit = 10.0 ** math.floor(math.log10(bound))
    return float(f"{math.floor(bound / digit * (1 - 1e-12)) * digit:.1g}")


KNOWN_SCALES: tuple[tuple[str, Callable[[int], float]], ...] = (
    ("(k-1)/k, the scale of a self-inclusive group mean", lambda k: (k - 1) / k),
    ("k, the scale of a sum instead of a mean", float),
    ("1/k", lambda k: 1.0 / k),
)
"""Scale formulas :math:`f(k)` worth naming when a measured :math:`c_k` matches them.

The text names the formula and a common code that has that scale; the messages print it
as "has the value of ...": a matching value does not show the cause (reversed rewards
used as a baseline also give :math:`(k-1)/k` at odd ``k``, a hook that doubles the
gradient gives ``k`` at ``k = 2``)."""

SCALE_HINT_LEAD = "has the value of"
"""How a message introduces a scale hint: the value matches, the cause is not shown."""


def scale_hints(
    scale: Mapping[int, float], uncertainty: Mapping[int, float]
) -> dict[int, str]:
    """``{k: text}`` naming a known :math:`f(k)` where it explains the measured :math:`c_k`.

    A formula is named only if it matches at two or more of the measured ``k`` where the
    estimator is not unbiased (so ``c_1 = 1 = k`` alone never reads "a sum instead of a
    mean"); each ``k`` gets the first formula that qualifies.  The text says what the value
    equals, not why: print it after :data:`SCALE_HINT_LEAD`.

    >>> scale_hints({1: 1.0, 2: 0.5, 3: 0.75}, {1: 0.0, 2: 0.0, 3: 0.0})
    {}
    >>> scale_hints({2: 0.5, 3: 2 / 3}, {2: 0.0, 3: 0.0})[3]
    '(k-1)/k, the scale of a self-inclusive group mean'
    """
    def matches(f: Callable[[int], float], k: int) -> bool:
        c = scale[k]
        slack = max(uncertainty.get(k, 0.0) * HINT_MATCH_UNCERTAINTIES, HINT_MATCH_FLOOR)
        return abs(c - 1.0) > slack and abs(c - f(k)) <= slack

    hints: dict[int, str] = {}
    for text, f in KNOWN_SCALES:
        ks = [k for k in scale if matches(f, k)]
        if len(ks) >= 2:
            for k in ks:
                hints.setdefault(k, text)
    return dict(sorted(hints.items()))


SCALE_NOTE_EPSILONS = 4.0
"""A measured scale ``c`` reads as a coarser dtype's rounding of a simple value ``v`` when
``|c - v| <= SCALE_NOTE_EPSILONS * eps * |v|``: a constant stored in that dtype
(``float32(1/3) = (1/3)(1 + 2.98e-8)``) or one step computed in it moves ``c`` by at most
a few of its epsilons."""


def simple_value(k: int, c: float, eps: float) -> tuple[str, float] | None:
    """The simple value (1, or a :data:`KNOWN_SCALES` formula at ``k``) within ``SCALE_NOTE_EPSILONS * eps`` of ``c``.

    >>> simple_value(3, float(np.float32(1 / 3)) * 3, 2.0**-23)
    ('1', 1.0)
    >>> simple_value(2, 0.5 * (1 + 2.0**-23), 2.0**-23)[0]
    '(k-1)/k'
    >>> simple_value(2, 1.001, 2.0**-23) is None
    True
    """
    for text, v in [("1", 1.0)] + [(name.split(",")[0], f(k)) for name, f in KNOWN_SCALES]:
        if abs(c - v) <= SCALE_NOTE_EPSILONS * eps * abs(v):
            return text, v
    return None


ROUNDOFF_DTYPES: tuple[tuple[str, float], ...] = (
    ("float32", float(np.finfo(np.float32).eps)),
    ("bfloat16", 2.0**-7),
    ("float16", float(np.finfo(np.float16).eps)),
)
"""Dtypes whose round-off a residual may be made of, finest first, with their epsilon
(bfloat16 keeps 8 significant bits: NumPy has no such type)."""


RANGE_DTYPE = "float32"
"""The working dtype whose range a counterexample's magnitudes are compared with (bfloat16
keeps float32's exponent, so it has the same range)."""

RANGE_LIMITS = (float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max))
"""The smallest normal and the largest finite :data:`RANGE_DTYPE` number."""


def outside_range(values: FloatArray) -> str | None:
    """``"underflows"``/``"overflows"`` when the largest ``|value|`` (not 0) lies below/above
    :data:`RANGE_LIMITS`: a code computing in float32 (or bfloat16) flushes such values to
    zero, or to infinity; ``None`` when it is within the range (or all zero, or not finite).

    >>> outside_range(np.array([0.0, 8.4e-75])), outside_range(np.array([0.0, 1e-30]))
    ('underflows', None)
    >>> outside_range(np.array([-1e39, 1.0])), outside_range(np.zeros(2))
    ('overflows', None)
    """
    top = float(np.max(np.abs(values), initial=0.0))
    if top == 0.0 or not math.isfinite(top):
        return None
    if top < RANGE_LIMITS[0]:
        return "underflows"
    if top > RANGE_LIMITS[1]:
        return "overflows"
    return None


def into_range(values: FloatArray) -> tuple[FloatArray, float]:
    """``(values * f, f)`` with ``f`` the power of two that puts the largest ``|value|`` in
    ``[0.5, 1)``: exact in float64 (only the exponents change), well inside float32's range.

    >>> values, f = into_range(np.array([0.0, 3 * 2.0**-300]))
    >>> values.tolist(), f == 2.0**298
    ([0.0, 0.75], True)
    """
    top = float(np.max(np.abs(values), initial=0.0))
    if top == 0.0 or not math.isfinite(top):
        return np.array(values, dtype=np.float64, copy=True), 1.0
    exponent = math.frexp(top)[1]
    out: FloatArray = np.ldexp(np.asarray(values, dtype=np.float64), -exponent)
    return out, math.ldexp(1.0, -exponent)


def relative_residual(m: Mismatch[Any]) -> float:
    """``|E - c G| / |G|`` on the mismatch's problem (infinite when ``G = 0``)."""
    g = norm(m.evaluation.gradient)
    d = norm(m.discrepancy)
    return d / g if g > 0 else math.inf


def ulps(relative: float) -> dict[str, float]:
    """A relative size in units of each dtype's epsilon (:data:`ROUNDOFF_DTYPES`).

    >>> round(ulps(2 ** -23)["float32"], 6)
    1.0
    """
    return {name: relative / eps for name, eps in ROUNDOFF_DTYPES}


def explained_by(
    m: Mismatch[Any], bound_at: Callable[[float], FloatArray], finer_than: float
) -> str | None:
    """The finest dtype coarser than ``finer_than`` whose round-off explains the mismatch.

    ``bound_at(eps)`` is the round-off the problem allows an output of epsilon ``eps``
    (per coordinate); the mismatch is explained when ``|E - c G| <= bound_at(eps) + u|G|``
    everywhere.  ``None`` when no dtype of :data:`ROUNDOFF_DTYPES` explains it.
    """
    gradient = np.abs(m.evaluation.gradient)
    for name, eps in ROUNDOFF_DTYPES:
        if eps <= finer_than:
            continue
        allowed = bound_at(eps) + m.reference.uncertainty * gradient
        if np.all(np.abs(m.discrepancy) <= allowed):
            return name
    return None


__all__ = [
    "HINT_MATCH_FLOOR",
    "HINT_MATCH_UNCERTAINTIES",
    "KNOWN_SCALES",
    "RANGE_DTYPE",
    "RANGE_LIMITS",
    "REFERENCE_MIN_SIGNAL",
    "ROUNDOFF_DTYPES",
    "SCALE_HINT_LEAD",
    "Decision",
    "Evaluated",
    "Mismatch",
    "MismatchKind",
    "Reference",
    "ReferenceBook",
    "Verdict",
    "best_fit",
    "decide",
    "dot",
    "explained_by",
    "into_range",
    "judge",
    "nonpositive",
    "norm",
    "outside_range",
    "reference_candidate",
    "relative_residual",
    "scale_allowance",
    "scale_hints",
    "ulps",
]
