"""The one place where the checkers hand work to user code, and how process isolation redirects it.

The one-step checker reaches user code only through its guard
(:class:`properties.onestep.guard.GuardedEstimator` and its multi-prompt subclass), the
sequence checkers only through their evaluator (``TorchLoss``, ``TokenWeights``): they send
inputs in and get raw values (or a fault) back; every expectation, target, tolerance and
verdict is computed from those values by the checker's own code.  ``ida-verify check`` uses
this seam to keep user code away from the judge (:mod:`properties.cli.recording`): the check
runs in a child process that records every answer given at the seam; the parent then runs
the same check again, deterministically, with the seam answering from that record, and
only the parent's verdict counts.

Outside the command line no :class:`Seam` is installed and these functions change nothing:

>>> wrap_guard("a guard")
'a guard'
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Protocol


class Seam(Protocol):
    """Redirects the calls into user code of one check (see the module docstring)."""

    def guard(self, guard: Any) -> Any:
        """The guard the one-step checker uses in place of ``guard``."""

    def evaluator(self, evaluator: Any, sandbox: Any) -> Any:
        """The evaluator the sequence checkers use in place of ``evaluator``."""

    def stand_in(self, sandbox: Any) -> Any:
        """An evaluator for the PyTorch loss checker that calls no user code (and needs no
        PyTorch), or ``None`` to build the real one."""

    def seconds_before(self) -> float:
        """Seconds the check already took elsewhere (added to the report's ``seconds``)."""


_SEAM: ContextVar[Seam | None] = ContextVar("ida_verify_seam", default=None)


@contextlib.contextmanager
def installed(seam: Seam) -> Iterator[None]:
    """Install ``seam`` for the checks run inside this block."""
    token = _SEAM.set(seam)
    try:
        yield
    finally:
        _SEAM.reset(token)


def wrap_guard(guard: Any) -> Any:
    """``guard``, or what the installed seam puts in its place."""
    seam = _SEAM.get()
    return guard if seam is None else seam.guard(guard)


def wrap_evaluator(evaluator: Any, sandbox: Any) -> Any:
    """``evaluator``, or what the installed seam puts in its place."""
    seam = _SEAM.get()
    return evaluator if seam is None else seam.evaluator(evaluator, sandbox)


def stand_in_evaluator(sandbox: Any) -> Any:
    """The installed seam's stand-in for the PyTorch loss evaluator, or ``None``."""
    seam = _SEAM.get()
    return None if seam is None else seam.stand_in(sandbox)


def elapsed(start: float) -> float:
    """Seconds since ``start`` (a ``time.perf_counter()``), plus what the check took elsewhere.

    >>> elapsed(time.perf_counter()) < 1.0
    True
    """
    seam = _SEAM.get()
    before = 0.0 if seam is None else seam.seconds_before()
    return time.perf_counter() - start + before


__all__ = ["Seam", "elapsed", "installed", "stand_in_evaluator", "wrap_evaluator", "wrap_guard"]
