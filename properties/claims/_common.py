"""What every claim family of the ledger shares: the records, the tolerances, the helpers.

* :class:`RunConfig` (how hard to look), :class:`Property` (a Hypothesis search for a
  violation), :class:`StatProperty` / :class:`StatOutcome` (a calibrated sampling check),
  :class:`ClaimSpec` (how one claim is checked) and :class:`ClaimResult` (its ledger row);
* the named tolerances :data:`EXACT_RTOL`, :data:`MONOTONE_SLACK` and the family-wise
  false-alarm rate :data:`FAMILY_ALPHA` of every statistical property;
* :func:`_exact_mismatch`, the exact-engine comparison most estimator properties use, and
  the problem strategies that several families draw from.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st

from impl import exact_expectation
from impl.types import Estimator, FloatArray
from properties.claims._violations import Violation, readable
from properties.strategies import PolicyProblem, logits, policy_problems, score_tables

Verdict = Literal["proved", "holds", "refuted", "failed", "error"]
"""``failed``: the checks disagree with the expected verdict; ``error``: a check is vacuous
(it missed its planted violation, or ran no test), so its silence proves nothing."""


EXACT_RTOL = 1e-11
"""Exact-engine identities.  A sum of at most 5**4 = 625 float64 terms, each at most
the magnitude M, has round-off below 625 * 2.2e-16 * M ~ 1.4e-13 M; 1e-11 (1 + M)
leaves a factor of about 70 of headroom and still sees a bias of one part in 1e10."""

MONOTONE_SLACK = 1e-12
"""Relative dip allowed in a quantity proved non-decreasing (float round-off only)."""

FAMILY_ALPHA = 1e-3
"""Family-wise false-alarm rate of each statistical property (Bonferroni over its tests)."""


@dataclass(frozen=True)
class RunConfig:
    """How hard to look: Hypothesis examples per property and the seed of every search."""

    max_examples: int = 60
    seed: int = 0


@dataclass(frozen=True)
class Planted:
    """A planted violation that a property must catch, run through the property's own code.

    The property's registered ``check`` (``run`` for a :class:`StatProperty`) is called on
    ``case`` (a seed for a statistical property) with the module-level names in ``replace``
    rebound, for that call only, in the module that defines the check: a perturbed claimed
    value (the reference the check compares with) or a wrong candidate (the implementation
    it exercises).  ``wrong_case``, if given, is a wrong candidate passed as data instead
    of ``case``.  The planted call must report a violation (a statistical property: a
    rejection); the same call on ``case`` without the replacement must not.  A property
    that misses its planted violation checks nothing there, and the ledger calls its claim
    ``error``, never a pass.
    """

    label: str
    replace: Mapping[str, Any]
    case: Any = None
    wrong_case: Any = None


@dataclass(frozen=True)
class Property:
    """A named search for a violation over generated cases, with the violation it must catch."""

    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], Violation | None]
    examples_factor: float = 1.0
    """Scales ``max_examples`` for this property (trajectory checks are slower)."""
    planted: Planted | None = None
    """The planted violation the ledger runs through ``check`` first (``None``: an error)."""


@dataclass(frozen=True)
class StatProperty:
    """A sampling check with a stated false-alarm rate and power (not a Hypothesis search)."""

    name: str
    run: Callable[[int], StatOutcome]
    planted: Planted | None = None
    """The planted violation (``case`` unused: the run's seed) it must reject."""


@dataclass(frozen=True)
class StatOutcome:
    """The result of a statistical property."""

    tests: int
    rejections: int
    alpha: float
    power: str
    detail: str
    counterexample: dict[str, Any] | None = None


@dataclass
class ClaimResult:
    """The ledger row of one claim."""

    id: str
    statement: str
    expected: str
    verdict: Verdict
    evidence: dict[str, Any] = field(default_factory=dict)
    counterexample: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``id, statement, verdict, expected, evidence, counterexample``."""
        return {
            "id": self.id,
            "statement": self.statement,
            "verdict": self.verdict,
            "expected": self.expected,
            "evidence": readable(self.evidence),
            "counterexample": readable(self.counterexample)
            if self.counterexample is not None
            else None,
        }

    @property
    def as_expected(self) -> bool:
        """True when the verdict equals the expected verdict of CLAIMS.md."""
        return self.verdict == self.expected


@dataclass(frozen=True)
class ClaimSpec:
    """How one claim is checked.

    ``properties`` are Hypothesis searches for a violation and ``statistical`` calibrated
    sampling checks; a "refuted" claim has a ``counterexample`` search instead, and
    ``confirm(case)`` confirms the case it finds exactly (in rationals, with :mod:`spec`),
    returning whether it refutes the claim and the evidence; ``not_a_counterexample`` is a
    case for which the claim holds, which the search must pass over and ``confirm`` must
    not confirm (else the search or the confirmation is vacuous: an ``error``).
    ``implementation`` lists the :mod:`impl` functions the properties exercise
    (``CLAIMS.md`` names them).
    """

    id: str
    expected: Literal["proved", "holds", "refuted"]
    properties: tuple[Property, ...] = ()
    statistical: tuple[StatProperty, ...] = ()
    counterexample: Property | None = None
    confirm: Callable[[Any], tuple[bool, dict[str, Any]]] | None = None
    implementation: tuple[Callable[..., Any], ...] = ()
    not_a_counterexample: Any = None

    def __post_init__(self) -> None:
        if (self.counterexample is None) != (self.confirm is None):
            raise ValueError(
                f"claim {self.id!r}: a counterexample search and its exact confirmation come "
                f"together (counterexample={self.counterexample!r}, confirm={self.confirm!r})"
            )


# ---------------------------------------------------------------------------------------------
# small helpers


def _max_abs(x: Any) -> float:
    return float(np.max(np.abs(x))) if np.size(x) else 0.0


def _exact_mismatch(
    estimator: Estimator, pb: PolicyProblem, expected: FloatArray, label: str
) -> Violation | None:
    e = exact_expectation(estimator, pb.logits, pb.scores, pb.k)
    err = _max_abs(e.mean - expected)
    tol = EXACT_RTOL * (1.0 + _max_abs(e.magnitude) + _max_abs(expected))
    if err <= tol:
        return None
    i = int(np.argmax(np.abs(e.mean - expected)))
    return Violation(
        f"{label}: E[g] differs from the claimed value at coordinate {i} by {err:.3g} > tol {tol:.3g}",
        {
            "n": pb.n,
            "k": pb.k,
            "logits": pb.logits,
            "scores": pb.scores,
            "E[g]": e.mean,
            "claimed": expected,
            "max_abs_difference": err,
            "tolerance": tol,
        },
    )


def _case_seed(seed: int, *parts: Any) -> int:
    """A per-example seed derived from the run seed and the case, so a failure reproduces."""
    text = repr(
        (
            seed,
            *[np.asarray(p).round(12).tolist() if isinstance(p, np.ndarray) else p for p in parts],
        )
    )
    return zlib.crc32(text.encode())


def _rational(x: Any, *, snap: bool) -> str:
    """A float as an exact rational string; ``snap`` recovers small-denominator probabilities."""
    f = Fraction(float(x))
    return str(f.limit_denominator(10**6) if snap else f)


# ---------------------------------------------------------------------------------------------
# problem strategies that several families use


_estimator_problems = policy_problems(max_n=5, max_k=4)


@st.composite
def _moderate_problems(draw: st.DrawFn) -> PolicyProblem:
    """Logits |theta| <= 5 and integer-ish scores, so that every p_i is far from underflow."""
    n = draw(st.integers(2, 5))
    return PolicyProblem(
        logits=draw(logits(n, max_abs=5.0)),
        scores=draw(score_tables(n, max_magnitude=10.0)),
        k=draw(st.integers(1, 3)),
    )


@st.composite
def _trajectory_cases(draw: st.DrawFn, *, min_distinct: int = 2) -> tuple[FloatArray, FloatArray]:
    n = draw(st.integers(2, 5))
    return draw(logits(n, max_abs=3.0)), draw(
        score_tables(n, min_distinct=min_distinct, max_magnitude=10.0)
    )


__all__ = [
    "EXACT_RTOL",
    "FAMILY_ALPHA",
    "MONOTONE_SLACK",
    "ClaimResult",
    "ClaimSpec",
    "Planted",
    "Property",
    "RunConfig",
    "StatOutcome",
    "StatProperty",
    "Verdict",
]
