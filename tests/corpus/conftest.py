"""The corpus modules import PyTorch at module level: skip their doctests when it is absent."""

from __future__ import annotations

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("torch") else ["*.py"]
