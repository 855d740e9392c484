r"""The :class:`Claim` record: one claim of ``CLAIMS.md`` with its statement and its checker.

Each claim family module (:mod:`spec.claims.estimators`, ...) builds the :class:`Claim`
objects of its claims next to their proofs; :mod:`spec.claims._registry` collects them by
identifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from spec._core import Expr, Proof, SpecError
from spec.counterexamples import IndicatorCounterexample, LimitedSearchCounterexample

Verdict = Literal["proved", "holds", "refuted"]
"""The expected verdict of a claim in ``CLAIMS.md``."""

Counterexample = IndicatorCounterexample | LimitedSearchCounterexample
"""The exact result of confirming a counterexample to a refuted claim."""


@dataclass(frozen=True)
class Claim:
    """One claim of ``CLAIMS.md``: identifier, statement (text and SymPy), assumptions, verdict.

    ``prover`` (for "proved" claims) takes keyword-only candidate arguments, so that the
    statement being proved can be perturbed; ``counterexample`` (for "refuted" claims)
    confirms the documented counterexample exactly.  ``parameterisation`` and ``ties`` say
    for which policies and how tied scores the statement is made; ``meaning`` says, in one
    sentence, what the claim contributes to the RL-versus-imitation argument.
    """

    id: str
    text: str
    expected: Verdict
    formula: Expr
    assumptions: tuple[str, ...]
    prover: Callable[..., Proof] | None = field(default=None, repr=False)
    counterexample: Callable[[], Counterexample] | None = field(default=None, repr=False)
    parameterisation: str = ""
    ties: str = ""
    meaning: str = ""

    @property
    def statement(self) -> str:
        """The SymPy form of the statement as text."""
        return str(self.formula)

    @property
    def provable(self) -> bool:
        """Whether :meth:`prove` is available (the "proved" claims)."""
        return self.prover is not None

    def prove(self, **candidate: Any) -> Proof:
        """Rebuild and check the derivation; ``candidate`` overrides the statement's pieces."""
        if self.prover is None:
            raise SpecError(
                f"claim {self.id!r} is expected to be {self.expected!r}: it has no symbolic proof"
            )
        return self.prover(**candidate)

    def refute(self) -> Counterexample:
        """Confirm the documented counterexample exactly (the "refuted" claims)."""
        if self.counterexample is None:
            raise SpecError(f"claim {self.id!r} is expected to be {self.expected!r}, not refuted")
        return self.counterexample()


__all__ = ["Claim", "Counterexample", "Verdict"]
