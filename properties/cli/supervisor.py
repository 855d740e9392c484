"""The processes around a check: a supervisor between the command and the child, and the clean-up.

``ida-verify check`` (the *command*) starts a **supervisor** process, which starts a new session
(``os.setsid``: its own process group, no controlling terminal) and then the **child** that runs
the user's code.  So:

* the child's ``os.getppid()`` is the supervisor, not the command: ``os.kill(os.getppid(),
  SIGSTOP)`` stops only the supervisor, which the command sees stopped (``/proc``) and continues
  (``SIGCONT``); the command, which keeps the time limits, is not stopped;
* the command ends the check by killing the whole session's process group
  (:func:`kill_session`), the supervisor, the child and whatever they started in it;
* a process that user code starts in a session of its own (``os.setsid`` after a fork) leaves
  that group; on Linux the command is a *child subreaper* while the check runs
  (``prctl(PR_SET_CHILD_SUBREAPER)``), so such a process, once orphaned, becomes the command's
  own child, and :func:`reap_orphans` kills and reaps every one of them before the command
  returns (which also lets the ``multiprocessing`` resource tracker end, as nothing else holds
  its pipe);
* the supervisor waits for the child and sends its exit status to the command (a one-way pipe,
  JSON); if the command dies, the supervisor kills the session.

What cannot be made sure (see the README, "Running untrusted code"): user code runs with the
user's permissions, so it can find the command's process ID (``/proc``, the supervisor's parent)
and stop or kill it, or start processes outside the session before the command becomes their
subreaper's ancestor ... Off Linux there is no subreaper: a process that leaves the session
outlives the command.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
"""``prctl`` option (Linux >= 3.4): orphaned descendants are re-parented to this process."""

MAX_REAP_ROUNDS = 100
"""How often :func:`reap_orphans` looks again for orphans (each kill can orphan more)."""

SUPERVISOR_START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"
"""How the supervisor is started: a fork is cheap, and the supervisor runs no user code and
imports nothing new (it only starts the child, with :data:`~properties.cli.isolation.START_METHOD`)."""


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _children(pid: int) -> set[int]:
    """Process IDs whose parent is ``pid`` (from ``/proc``; empty where there is none)."""
    out = set()
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 1 and fields[1] == str(pid):
                out.add(int(entry.name))
    return out


def process_state(pid: int) -> str:
    """The state letter of ``pid`` in ``/proc`` (``"T"`` stopped, ``"Z"`` zombie), or ``""``."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return ""


@contextlib.contextmanager
def subreaper() -> Iterator[set[int]]:
    """Make this process a child subreaper for the block (Linux); yields its children before it."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        yield set()
        return
    before = _children(os.getpid())
    was = ctypes.c_int(0)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(37, ctypes.byref(was), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass
    enabled = was.value == 0 and _prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        yield before
    finally:
        if enabled:
            _prctl(PR_SET_CHILD_SUBREAPER, 0)


def reap_orphans(before: set[int], keep: set[int]) -> int:
    """Kill and reap this process's children that were not there ``before`` (nor in ``keep``):
    the processes user code started outside the session, re-parented here.  Returns how many."""
    if not sys.platform.startswith("linux"):
        return 0
    me, count = os.getpid(), 0
    for _ in range(MAX_REAP_ROUNDS):
        strays = _children(me) - before - keep
        if not strays:
            break
        for pid in strays:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in strays:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)
            count += 1
    return count


def tracker_pid() -> int | None:
    """The ``multiprocessing`` resource tracker of this process, if one runs."""
    from multiprocessing import resource_tracker

    pid = getattr(resource_tracker._resource_tracker, "_pid", None)
    return pid if isinstance(pid, int) else None


def kill_session(leader: int | None) -> None:
    """SIGKILL the process group of the supervisor ``leader`` (only if it leads its own group,
    so that the command's own group is never hit)."""
    if leader is None:
        return
    with contextlib.suppress(OSError):
        if os.getpgid(leader) == leader and os.getpgid(leader) != os.getpgrp():
            os.killpg(leader, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(leader, signal.SIGKILL)


def continue_if_stopped(pid: int | None) -> bool:
    """Send SIGCONT to ``pid`` if it is stopped (user code stopped its parent); whether it was."""
    if pid is None or process_state(pid) not in ("T", "t"):
        return False
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGCONT)
    return True


def supervisor_main(
    start_method: str,
    target: Callable[..., None],
    args: tuple[Any, ...],
    writer: multiprocessing.connection.Connection,
    status: multiprocessing.connection.Connection,
) -> None:
    """The supervisor: a new session, the child started in it, its exit status sent to the command."""
    with contextlib.suppress(OSError):
        os.setsid()
    _kill_session_when_parent_dies()
    ctx: Any = multiprocessing.get_context(start_method)
    child = ctx.Process(target=target, args=(writer, *args), name="ida-verify-check")
    code: int | None = None
    try:
        child.start()
        writer.close()
        child.join()
        code = child.exitcode
    finally:
        with contextlib.suppress(BaseException):
            status.send_bytes(json.dumps({"exitcode": code}).encode())
        os._exit(0)


def _kill_session_when_parent_dies() -> None:
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        with contextlib.suppress(OSError):
            os.killpg(0, signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=watch, name="ida-verify-command-watch", daemon=True).start()


def read_exitcode(data: bytes) -> tuple[bool, int | None]:
    """``(True, code)`` from the supervisor's message, or ``(False, None)`` if it is malformed.

    >>> read_exitcode(b'{"exitcode": -9}'), read_exitcode(b"x")
    ((True, -9), (False, None))
    """
    try:
        code = json.loads(data)["exitcode"]
    except (ValueError, KeyError, TypeError):
        return False, None
    if code is None or (isinstance(code, int) and not isinstance(code, bool)):
        return True, code
    return False, None


__all__ = [
    "continue_if_stopped",
    "kill_session",
    "process_state",
    "read_exitcode",
    "reap_orphans",
    "subreaper",
    "supervisor_main",
    "tracker_pid",
]
