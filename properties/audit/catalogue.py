r"""The audit of this package's own sequence catalogue: each loss entry as a configuration.

``ida-verify audit catalogue`` runs the audit machinery (the runners, the grouping, the
constant's formula, the report) on losses whose verdicts and constants were settled on paper
(:mod:`impl.sequence_catalogue`): a self-test that needs nothing beyond torch, and the fast
library the tests of the runners use.  Each configuration is one entry of protocol ``loss``,
named as the entry and checked with the entry's own settings (``group_sizes``,
``num_prompts``, ``kl_coef``, ...), which override :data:`properties.audit.core.AUDIT_SETTINGS`.
The expected verdict is one of the axes (``expected``), so that a row that disagrees is plain
to see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from properties.audit.core import Configuration

LIBRARY = "catalogue"
"""The library's name on the command line."""

EXTRA = "torch"
"""The extra that installs what the catalogue's losses need (PyTorch)."""


def version() -> str:
    """This package's version (``ImportError`` without torch, which every loss needs)."""
    import torch  # noqa: F401

    from properties._version import __version__

    return __version__


def _entries() -> list[Any]:
    from impl.sequence_catalogue import SEQUENCE_CATALOGUE

    return [e for e in SEQUENCE_CATALOGUE if e.protocol == "loss"]


def configurations() -> list[Configuration]:
    """One configuration per loss entry, in the catalogue's order.

    >>> names = [c.name for c in configurations()]
    >>> "rloo" in names and "dr-grpo-trl" in names
    True
    """
    return [
        Configuration(LIBRARY, e.name, (("category", e.category), ("expected", e.expected)))
        for e in _entries()
    ]


def build(config: Configuration) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    """The entry's loss and its checker settings."""
    from impl.sequence_catalogue import get

    entry = get(config.name)
    return entry.fn, entry.settings.checker_kwargs("loss")


__all__ = ["EXTRA", "LIBRARY", "build", "configurations", "version"]
