"""Symbolic (SymPy) specifications and checked proofs of the claims in CLAIMS.md."""

from __future__ import annotations

__all__: list[str] = []
