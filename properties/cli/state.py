"""The memory the parent and the child share: its layout, and the phases of the child.

The child writes what it is doing (importing, looking up, checking, reporting) and the call in
flight (its start time, shape and first logits); the parent reads it to enforce the time limits
and to say which call hung or died.
"""

from __future__ import annotations

from typing import Any

_PHASE, _CALL_START, _CALLS, _USER_SECONDS, _N, _ROWS, _K, _SHOWN = range(8)
_LOGITS = 8
MAX_RECORDED_LOGITS = 16
"""Logits of the running call kept for a timeout message (more are described by size)."""
_STATE_SIZE = _LOGITS + MAX_RECORDED_LOGITS

STARTING, IMPORTING, LOOKING_UP, CHECKING, REPORTING = 0.0, 1.0, 2.0, 3.0, 4.0
"""Phases of the child, written to the shared state (a call in flight is ``_CALL_START > 0``)."""

State = Any
"""The shared ``RawArray`` of doubles (``ctypes.Array[ctypes.c_double]``)."""
