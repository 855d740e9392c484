"""Rows that agree, grouped: one line of the matrix for many configurations.

Two rows **agree** when their verdict, their constant (the formula of a ``scaled`` row, or
its per-key values) and their cause are the same strings.  The cause is compared whole, so a
group's rows found the same counterexample (the same shape, the same best fit and residual)
or were certified on the same problems and shapes, or are not checked for the same reason;
two biased rows with different counterexamples stay apart.  Groups are numbered from 1 in
the order of their first row, and list their rows in the matrix's order; a row that agrees
with no other is a group of one.

>>> from properties.audit.core import AuditRow
>>> rows = [AuditRow("x", "1", n, (), v, "", c, 1.0) for n, v, c in
...         [("a", "biased", "E"), ("b", "unbiased", "U"), ("c", "biased", "E")]]
>>> [(g.number, g.names) for g in group_rows(rows)]
[(1, ('a', 'c')), (2, ('b',))]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from properties.audit.core import AuditRow


@dataclass(frozen=True)
class Group:
    """Rows that agree: their common verdict, constant and cause, and the rows themselves."""

    number: int
    verdict: str
    constant: str
    cause: str
    rows: tuple[AuditRow, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The configurations of the group, in the matrix's order."""
        return tuple(r.name for r in self.rows)

    @property
    def seconds(self) -> float:
        """The time of all its rows together."""
        return sum(r.seconds for r in self.rows)


def agreement(row: AuditRow) -> tuple[str, str, str]:
    """What two rows must share to be grouped (the module docstring)."""
    return (row.verdict, row.constant, row.cause)


def group_rows(rows: Sequence[AuditRow]) -> list[Group]:
    """The groups of ``rows``, numbered from 1 in the order of their first row."""
    members: dict[tuple[str, str, str], list[AuditRow]] = {}
    for row in rows:
        members.setdefault(agreement(row), []).append(row)
    return [
        Group(number, verdict, constant, cause, tuple(group))
        for number, ((verdict, constant, cause), group) in enumerate(members.items(), start=1)
    ]


def group_numbers(rows: Sequence[AuditRow]) -> list[int]:
    """The group number of each row, in the rows' order.

    >>> from properties.audit.core import AuditRow
    >>> rows = [AuditRow("x", "1", n, (), "biased", "", c, 0.0) for n, c in [("a", "E"), ("b", "F"), ("c", "E")]]
    >>> group_numbers(rows)
    [1, 2, 1]
    """
    number = {agreement(r): g.number for g in group_rows(rows) for r in g.rows}
    return [number[agreement(r)] for r in rows]


__all__ = ["Group", "agreement", "group_numbers", "group_rows"]
