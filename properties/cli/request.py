"""What the command line asks of a check in a child process, and how it ended (plain data).

:data:`CHECK_KINDS` names the check engines the child can run; :class:`CheckRequest` is one
check, :class:`Limits` its time limits, :class:`IsolatedOutcome` how it ended.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_TOTAL_SECONDS = 600.0
"""Default ``--timeout``: the whole check, child start-up and import included.  A correct
per-group PyTorch estimator takes well under a minute; ten minutes leaves room for a loaded
machine and a larger ``--max-examples``."""

DEFAULT_CALL_SECONDS = 30.0
"""Default ``--call-timeout``: one call into user code.  The largest call the checker
makes holds a few thousand groups, which takes milliseconds; an estimator that imports
PyTorch on its first call takes a few seconds.  Thirty seconds in one call is a hang."""



@dataclass(frozen=True)
class CheckKind:
    """How the child runs one kind of check: ``engine`` is ``"module:function"``; ``noun`` names
    the user's callable; ``protocol`` is how it is called (``"one-step"``, ``"sequence-loss"``,
    ``"token-weights"``: the reports' ``protocol``)."""

    engine: str
    noun: str
    protocol: str = "one-step"


CHECK_KINDS: dict[str, CheckKind] = {
    "estimator": CheckKind(engine="properties.onestep.checker:check_estimator", noun="Estimator"),
    "sequence": CheckKind(
        engine="properties.sequence.checker:check_sequence_loss", noun="Loss", protocol="sequence-loss"
    ),
    "token-weights": CheckKind(
        engine="properties.sequence.checker:check_token_weights", noun="Weight function",
        protocol="token-weights",
    ),
    "variance": CheckKind(engine="properties.onestep.compare:profile_estimator", noun="Estimator"),
    "sequence-variance": CheckKind(
        engine="properties.sequence.compare:profile_sequence_loss", noun="Loss", protocol="sequence-loss"
    ),
    "weights-variance": CheckKind(
        engine="properties.sequence.compare:profile_sequence_loss", noun="Weight function",
        protocol="token-weights",
    ),
}
"""The kinds of check the command line can run in a child process, by name."""


@dataclass(frozen=True)
class Limits:
    """Wall-clock limits in seconds: ``total_seconds`` for the whole check, ``call_seconds`` per call."""

    total_seconds: float = DEFAULT_TOTAL_SECONDS
    call_seconds: float = DEFAULT_CALL_SECONDS


@dataclass(frozen=True)
class CheckRequest:
    """What the child should check: ``kind`` (a key of :data:`CHECK_KINDS`), ``target``
    (``PATH.py:FUNC``, ``module:FUNC`` or ``catalogue:NAME``), ``name`` for the report, and
    the engine's keyword arguments (plain values)."""

    kind: str
    target: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    report_dir: str | None = None
    """Where the child also writes the HTML page of the check (``--report DIR``), or ``None``."""
    progress: bool = False
    """Draw a progress bar on stderr (the parent decides: both streams are terminals, no ``--json``)."""


@dataclass(frozen=True)
class IsolatedOutcome:
    """How a child run ended.

    ``status`` is ``"report"`` (a verdict: ``verdict``, ``message`` and the report's
    ``to_dict()`` in ``report``), ``"usage"`` (bad usage found in the child: ``message`` is
    the one line) or ``"interrupted"`` (``message`` says where).
    """

    status: Literal["report", "usage", "interrupted"]
    message: str
    verdict: str | None = None
    report: dict[str, Any] | None = None
    report_error: str | None = None
    """Why the requested HTML page could not be written (``None`` when it was, or not asked for)."""

    def to_json(self) -> str:
        """The report as indented JSON, as ``EstimatorReport.to_json()`` prints it."""
        return json.dumps(self.report, indent=2)


__all__ = [
    "CHECK_KINDS",
    "DEFAULT_CALL_SECONDS",
    "DEFAULT_TOTAL_SECONDS",
    "CheckKind",
    "CheckRequest",
    "IsolatedOutcome",
    "Limits",
]
