"""Progress bars: on a terminal, and nowhere else (never in a pipe, a file or --json output).

The terminal cases run the real command under a pseudo-terminal (:mod:`pty`), so they see
exactly what a person at a terminal would.  Time budget: about 10 s (four short
``ida-verify claims`` runs of one claim with one example).
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from properties.cli.progress import interactive, is_terminal, progress_bar

ROOT = Path(__file__).resolve().parents[1]
CLAIM = "self-inclusive-baseline-scales"
ARGS = ["claims", "--max-examples", "1", CLAIM]
CHILD_TIMEOUT = 180.0
"""Seconds a child command may take on a loaded 2-core machine before the test gives up."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["COLUMNS"] = "100"
    return env


def _run_on_pty(args: list[str], *, stdout_on_pty: bool) -> tuple[int, str, str]:
    """Run ``python -m properties.cli ARGS`` with stderr (and maybe stdout) on a pty.

    Returns ``(status, what the terminal received, what the stdout pipe received)``.
    """
    import fcntl
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "properties.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave if stdout_on_pty else subprocess.PIPE,
        stderr=slave,
        env=_env(),
        cwd=ROOT,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + CHILD_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    piped = proc.stdout.read().decode() if proc.stdout is not None else ""
    status = proc.wait(timeout=CHILD_TIMEOUT)
    return status, b"".join(chunks).decode(errors="replace"), piped


def test_a_terminal_shows_the_bar_and_the_ledger() -> None:
    status, tty, _ = _run_on_pty(ARGS, stdout_on_pty=True)
    assert status == 0, tty
    assert "claims: 0/1" in tty, tty  # the bar, drawn before the claim ran
    assert CLAIM in tty and "1/1 claims have their expected verdict" in tty


def test_json_on_a_terminal_is_pure_json() -> None:
    status, tty, _ = _run_on_pty([*ARGS, "--json"], stdout_on_pty=True)
    assert status == 0, tty
    text = tty.replace("\r\n", "\n")
    assert "\r" not in text and "claims:" not in text, repr(text[:300])
    assert json.loads(text)["claims"][0]["id"] == CLAIM


def test_stdout_into_a_pipe_shows_no_bar_even_with_stderr_on_a_terminal() -> None:
    status, tty, piped = _run_on_pty(ARGS, stdout_on_pty=False)
    assert status == 0, tty + piped
    assert tty == "", repr(tty)
    assert "1/1 claims have their expected verdict" in piped


def test_no_terminal_json_is_exactly_the_ledger_with_nothing_on_stderr_and_no_tqdm() -> None:
    code = (
        "import sys\n"
        "from properties.cli import main\n"
        f"status = main({[*ARGS, '--json']!r})\n"
        "sys.stdout.flush()\n"
        "sys.exit(status or 10 * ('tqdm' in sys.modules) + 20 * ('matplotlib' in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (result.returncode, result.stderr)  # 10: tqdm, 20: matplotlib
    assert result.stderr == ""
    assert json.loads(result.stdout)["claims"][0]["id"] == CLAIM


def test_the_callback_when_disabled_writes_nothing() -> None:
    stream = io.StringIO()
    with progress_bar("x", enabled=False, stream=stream) as update:
        for i in range(3):
            update(i, 3, f"step {i}")
    assert stream.getvalue() == ""


def test_the_callback_when_enabled_draws_and_then_erases_the_bar() -> None:
    stream = io.StringIO()
    with progress_bar("work", enabled=True, stream=stream) as update:
        update(0, 4, "first")
        update(3, 4, "last")
        drawn = stream.getvalue()
    assert "work: 0/4" in drawn and "first" in drawn and "work: 3/4" in drawn
    rest = stream.getvalue()[len(drawn) :]
    assert rest and rest.strip(" \r") == "", repr(rest)  # erased: blanks over the last frame


def test_the_bar_is_closed_when_the_work_raises() -> None:
    stream = io.StringIO()
    with (
        pytest.raises(KeyboardInterrupt),
        progress_bar("work", enabled=True, stream=stream) as update,
    ):
        update(1, 2, "running")
        raise KeyboardInterrupt
    tail = stream.getvalue().rsplit("running", 1)[1]
    assert tail.strip(" \r") == "", repr(
        tail
    )  # cleared: nothing after the last frame but the erase


def test_is_terminal_never_raises() -> None:
    class Odd:
        def isatty(self) -> bool:
            raise ValueError("I/O operation on closed file")

    assert is_terminal(Odd()) is False
    assert is_terminal(io.StringIO()) is False
    assert interactive() is False  # pytest captures stdout and stderr


CHECK_ARGS = ["check", "catalogue:reinforce", "--max-examples", "2", "--group-sizes", "2"]
"""A short estimator check (the child process draws the bar on the terminal's stderr)."""


def test_check_on_a_terminal_shows_the_bar_and_the_verdict() -> None:
    status, tty, _ = _run_on_pty(CHECK_ARGS, stdout_on_pty=True)
    assert status == 0, tty
    assert "checking catalogue:reinforce:" in tty, tty
    assert "UNBIASED" in tty


def test_check_json_on_a_terminal_is_pure_json() -> None:
    status, tty, _ = _run_on_pty([*CHECK_ARGS, "--json"], stdout_on_pty=True)
    assert status == 0, tty
    text = tty.replace("\r\n", "\n")
    assert "\r" not in text and "checking" not in text, repr(text[:300])
    assert json.loads(text)["verdict"] == "unbiased"
