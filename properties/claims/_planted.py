"""Planted violations: every property of the ledger must catch one, through its own code.

A property that finds no violation is only evidence if it could have found one.  Each
:class:`~properties.claims._common.Property` and
:class:`~properties.claims._common.StatProperty` carries a
:class:`~properties.claims._common.Planted` violation; :func:`planted_rows` runs the
property's registered ``check`` (``run``) on it, with the planted names rebound in the
check's module for that call only (:func:`rebound`), and reports every property that
missed it, raised on it, or has none.  A refuted claim's counterexample search and exact
confirmation must both pass over a case where the claim holds.  The ledger calls a claim
with such a problem ``error``: a check that checks nothing must not read as a pass.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from properties.claims._common import ClaimSpec, Planted, Property, StatProperty

NO_PLANTED = (
    "no planted violation is registered, so its silence cannot be told from a vacuous check"
)
"""The problem reported for a property without a :class:`Planted` violation."""


@contextmanager
def rebound(module_name: str, replace: Mapping[str, Any]) -> Iterator[None]:
    """Rebind the names ``replace`` in module ``module_name`` inside the block, then restore them.

    The ledger runs one claim at a time in one thread; a rebinding is visible to any other
    thread that calls into the module meanwhile, so it is not for concurrent use.

    >>> import properties.claims._common as common
    >>> with rebound("properties.claims._common", {"EXACT_RTOL": 0.5}):
    ...     common.EXACT_RTOL
    0.5
    >>> common.EXACT_RTOL
    1e-11
    """
    module = sys.modules[module_name]
    missing = [name for name in replace if not hasattr(module, name)]
    if missing:
        raise AttributeError(
            f"module {module_name} has no name {missing[0]!r} to plant a violation in"
        )
    saved = {name: getattr(module, name) for name in replace}
    try:
        for name, value in replace.items():
            setattr(module, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def _property_problem(prop: Property) -> str | None:
    planted = prop.planted
    if planted is None:
        return NO_PLANTED
    try:
        control = prop.check(planted.case)
        if control is not None:
            return f"its planted control case already violates it: {control.message}"
        wrong = planted.case if planted.wrong_case is None else planted.wrong_case
        with rebound(prop.check.__module__, planted.replace):
            caught = prop.check(wrong)
    except Exception as exc:  # a property that crashes on its planted case caught nothing
        return f"raised {type(exc).__name__}: {exc} on its planted violation ({planted.label})"
    if caught is None:
        return f"missed its planted violation ({planted.label}): it checks nothing there"
    return None


def _stat_problem(prop: StatProperty, seed: int) -> str | None:
    planted = prop.planted
    if planted is None:
        return NO_PLANTED
    try:
        with rebound(prop.run.__module__, planted.replace):
            outcome = prop.run(seed)
    except Exception as exc:
        return f"raised {type(exc).__name__}: {exc} on its planted violation ({planted.label})"
    if outcome.tests == 0 or outcome.rejections == 0:
        return f"missed its planted violation ({planted.label}): it checks nothing there"
    return None


def _row(name: str, planted: Planted | None, problem: str | None) -> dict[str, Any]:
    return {
        "property": name,
        "planted": planted.label if planted is not None else None,
        "caught": problem is None,
        "problem": problem,
    }


def planted_rows(spec: ClaimSpec, seed: int) -> list[dict[str, Any]]:
    """Run every planted violation of ``spec`` through its property; one row per property.

    A row's ``problem`` is ``None`` when the property caught its planted violation (and,
    for a counterexample search, passed over the case where the claim holds).
    """
    rows = [_row(p.name, p.planted, _property_problem(p)) for p in spec.properties]
    rows += [_row(p.name, p.planted, _stat_problem(p, seed)) for p in spec.statistical]
    if spec.counterexample is not None and spec.confirm is not None:
        case = spec.not_a_counterexample
        problem: str | None
        if case is None:
            problem = "no case where the claim holds is registered to test the search against"
        else:
            try:
                found = spec.counterexample.check(case)
                confirmed, _ = spec.confirm(case)
            except Exception as exc:
                problem = f"raised {type(exc).__name__}: {exc} on a case where the claim holds"
            else:
                problem = None
                if found is not None:
                    problem = (
                        f"calls a case where the claim holds a counterexample: {found.message}"
                    )
                elif confirmed:
                    problem = "the exact confirmation confirms a case where the claim holds"
        rows.append(
            {
                "property": spec.counterexample.name,
                "planted": f"not a counterexample: {case!r}",
                "caught": problem is None,
                "problem": problem,
            }
        )
    return rows


__all__ = ["NO_PLANTED", "planted_rows", "rebound"]
