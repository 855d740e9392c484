"""The memory the parent and the child share: its layout, and the phases of the child.

The child writes what it is doing (importing, looking up, checking, reporting) and the call in
flight (its start time, shape and first logits); the parent reads it to enforce the time limits
and to say which call hung or died.
"""

from __future__ import annotations

from typing import Any

_PHASE, _CALL_START, _CALLS, _USER_SECONDS, _N, _ROWS, _K, _SHOWN, _GROUPS = range(9)
"""Slots of the state.  One-step calls: ``_N`` the logits' size (``-1``: not an array),
``_ROWS``/``_K`` the samples' shape, ``_SHOWN`` how many logits follow from ``_LOGITS``.
Sequence calls: ``_ROWS`` the responses ``B``, ``_K`` the length ``T``, ``_N`` the vocabulary
``V`` (``-1``: not seen), ``_GROUPS`` the batches ``G`` of a batched weight function (``-1``:
one batch); ``-1`` everywhere: no shape seen."""
_LOGITS = 9
MAX_RECORDED_LOGITS = 16
"""Logits of the running call kept for a timeout message (more are described by size)."""
_STATE_SIZE = _LOGITS + MAX_RECORDED_LOGITS

STARTING, IMPORTING, LOOKING_UP, CHECKING, REPORTING = 0.0, 1.0, 2.0, 3.0, 4.0
"""Phases of the child, written to the shared state (a call in flight is ``_CALL_START > 0``)."""

State = Any
"""The shared ``RawArray`` of doubles (``ctypes.Array[ctypes.c_double]``)."""
