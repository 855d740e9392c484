"""Run a Hypothesis search for a violation and keep the shrunk counterexample (private)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

T = TypeVar("T")


@dataclass(frozen=True)
class Violation:
    """Why one generated case breaks a property, with the readable details of the case."""

    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchOutcome(Generic[T]):
    """The result of searching ``examples`` generated cases for a violation."""

    name: str
    examples: int
    seconds: float
    case: T | None
    violation: Violation | None

    @property
    def found(self) -> bool:
        """True when a violating case was found (and shrunk)."""
        return self.violation is not None


def search(
    name: str,
    strategy: st.SearchStrategy[T],
    check: Callable[[T], Violation | None],
    *,
    max_examples: int,
    seed: int,
) -> SearchOutcome[T]:
    """Search up to ``max_examples`` cases of ``strategy`` for one where ``check`` reports a violation.

    Hypothesis shrinks a violating case to a minimal one (fewest answers, simplest
    values); the search is derandomised by ``seed`` and uses no example database,
    so the same seed gives the same outcome.
    """
    calls = 0

    def violated(case: T) -> bool:
        nonlocal calls
        calls += 1
        return check(case) is not None

    config = settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    start = time.perf_counter()
    try:
        case = find(strategy, violated, settings=config, random=random.Random(seed))
    except NoSuchExample:
        return SearchOutcome(name, calls, time.perf_counter() - start, None, None)
    explored = calls
    violation = check(case)
    return SearchOutcome(name, explored, time.perf_counter() - start, case, violation)


def readable(value: Any) -> Any:
    """JSON-ready, human-readable form: arrays to lists, floats shortened with repr."""
    if isinstance(value, np.ndarray):
        return [readable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return readable(value.item())
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {str(k): readable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [readable(v) for v in value]
    return value


__all__ = ["SearchOutcome", "Violation", "readable", "search"]
