"""Progress bars on a terminal, and nowhere else (private; shared by the commands).

:func:`progress_bar` is a context manager yielding a callback ``(done, total, label)``,
the signature :func:`properties.run_claims` takes as ``progress``.  The bar is drawn
with tqdm on stderr, only when **both** stdout and stderr are terminals: never into a
pipe, a file, CI's log or under ``--json`` (the commands pass ``enabled=False`` there),
so machine-readable output stays exactly what it was.  When the bar is off, tqdm is not
even imported, so a command that shows no bar pays nothing for it.

>>> with progress_bar("claims", enabled=False) as update:
...     update(0, 2, "first"); update(1, 2, "second"); update(2, 2, "")
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

ProgressCallback = Callable[[int, int, str], None]
"""``(done, total, label)``: ``done`` of ``total`` steps are finished; ``label`` names the
one now running (empty at the end)."""


def is_terminal(stream: Any) -> bool:
    """True iff ``stream`` is an open terminal; never raises (closed, replaced or odd streams give False).

    >>> import io
    >>> is_terminal(io.StringIO()), is_terminal(None)
    (False, False)
    """
    try:
        return bool(stream is not None and stream.isatty())
    except Exception:
        return False


def interactive() -> bool:
    """True iff both stdout and stderr are terminals: the only case where progress is shown."""
    return is_terminal(sys.stdout) and is_terminal(sys.stderr)


def _ignore(done: int, total: int, label: str) -> None:
    return None


@contextmanager
def progress_bar(
    description: str, *, enabled: bool | None = None, stream: TextIO | None = None
) -> Iterator[ProgressCallback]:
    """Yield a ``(done, total, label)`` callback drawing a transient bar on ``stream`` (stderr).

    ``enabled=None`` (the default) shows the bar iff :func:`interactive`; ``False`` never
    shows it (use it for ``--json``); ``True`` forces it (tests).  The bar is erased when
    the block exits, also on an exception or Ctrl-C, so the command's own output starts
    on a clean line.
    """
    if enabled is None:
        enabled = interactive()
    if not enabled:
        yield _ignore
        return
    from tqdm import tqdm  # imported only when a bar is really drawn

    bar: Any = tqdm(
        total=0,
        desc=description,
        file=stream if stream is not None else sys.stderr,
        leave=False,
        dynamic_ncols=True,
        bar_format="{desc}: {n}/{total} |{bar}| {elapsed}<{remaining}{postfix}",
    )

    def update(done: int, total: int, label: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(label, refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


__all__ = ["ProgressCallback", "interactive", "is_terminal", "progress_bar"]
