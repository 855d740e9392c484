"""The ``ida-verify`` command line: one module per command, and the child process that runs user code.

* :mod:`~properties.cli.main`: the parser and dispatch, exit statuses, :class:`UsageError`;
* :mod:`~properties.cli.claims`, :mod:`~properties.cli.prove`, :mod:`~properties.cli.check`
  (with :mod:`~properties.cli.check_sequence`), :mod:`~properties.cli.report`: the commands;
* :mod:`~properties.cli.isolation`: a check on user code in a child process, with time limits;
* :mod:`~properties.cli.progress`: progress bars, on a terminal only.
"""

from __future__ import annotations

from properties.cli.main import EXIT_INTERRUPTED, Interrupted, UsageError, entry, main

__all__ = ["EXIT_INTERRUPTED", "Interrupted", "UsageError", "entry", "main"]
