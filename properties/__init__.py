"""Hypothesis strategies, property checks for every claim, the estimator checker and the CLI."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
