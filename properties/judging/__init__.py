r"""What both checkers share: judging :math:`E[g] \approx c\,\nabla J`, and calling user code.

* :mod:`properties.judging.verdict`: the verdict from exact evaluations (tolerance, the
  reference problem that fixes ``c``, precedence of faults, scale fits);
* :mod:`properties.judging.user_code`: running and describing untrusted callables.

Nothing here knows a protocol (one-step or sequence); both checkers build on it.
"""

from __future__ import annotations

from properties.judging.user_code import exception_text, name_of, safe_text
from properties.judging.verdict import Mismatch, ReferenceBook, decide

__all__ = ["Mismatch", "ReferenceBook", "decide", "exception_text", "name_of", "safe_text"]
