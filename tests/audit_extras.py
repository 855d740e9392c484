"""What the ``test`` extra of ``pyproject.toml`` promises: the audit tests' shared check.

A library the test extra installs must import, so its audit tests fail instead of skipping
when it does not (``tests/test_audit.py`` for verl, ``tests/test_audit_trl.py`` for TRL).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def in_test_extra(package: str, text: str | None = None) -> bool:
    """Whether pyproject's ``test`` extra (``text``, else the file's) names ``package`` or its extra.

    >>> in_test_extra("trl", 'test = [\\n    "trl==1.16.0",\\n]\\n')
    True
    >>> in_test_extra("verl", 'test = [\\n    "ida-verify[trl]",\\n]\\n')
    False
    """
    text = (ROOT / "pyproject.toml").read_text() if text is None else text
    block = re.search(r"^test = \[(.*?)^\]", text, re.S | re.M)
    assert block is not None, "pyproject.toml has no test extra"
    name = re.escape(package)
    return bool(re.search(rf'"({name}[=<>!~ ]|ida-verify\[[^]]*\b{name}\b)', block.group(1)))
