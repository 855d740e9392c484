"""Run a check on a user's callable in a child process, with time limits (private to the CLI).

``ida-verify check`` must not be able to lie: exit status 0 may only come from a finished
``"unbiased"`` verdict.  User code can hang, exit (``sys.exit``, ``os._exit``), crash the
interpreter (a segfault in C code) or print into our output, so the command line never runs
it in its own process.  :func:`run_isolated` does this:

* **Start method: spawn** (a fresh interpreter; :data:`START_METHOD`).  ``fork`` copies a
  parent that may hold BLAS/OpenMP thread pools and locks; ``forkserver`` costs the same
  as ``spawn`` for the single check a command runs.  ``benchmarks/bench_isolation.py``
  measures all three.
* **The child does everything user-related**: imports the user's file or module (so
  import-time misbehaviour happens there), looks up ``FUNC``, runs the check engine on it
  while recording every raw answer the checker got from user code
  (:mod:`properties.cli.recording`), and sends back ``{"status": "report", "verdict",
  "message", "report"}`` with that record as JSON and raw float64/int64 bytes over a one-way
  :func:`multiprocessing.Pipe` (``send_bytes``/``recv_bytes``).  The parent never unpickles
  anything the child produced.  Before any user code runs, the child points file descriptor
  1 (and ``sys.stdout``) at stderr, so only the parent writes to stdout.
* **The judge is in the parent.**  User code can change anything in the child (the report
  builder, the judging functions, NumPy), so the child's verdict is never printed: the parent
  re-runs the same check on the record (the battery, the seeded search, the targets and the
  verdict all computed by the parent's own code, user code never called) and prints its own
  report.  A record that does not match the re-run is the ``"error"`` verdict of kind
  ``unconfirmed``; a child that claims a verdict other than ``"error"`` without a record is
  too.  The ``--report`` HTML page is still drawn in the child.
* **Time limits.**  The child wraps the user callable in :class:`TimedCall`, which writes
  the start time and a short description of each call (call number, ``n``, the samples'
  shape, the first logits) into a :func:`multiprocessing.RawArray` shared with the parent.
  The parent polls it every :data:`POLL_SECONDS`: a call running longer than
  ``Limits.call_seconds`` (``--call-timeout``, default :data:`DEFAULT_CALL_SECONDS`), or a
  check running longer than ``Limits.total_seconds`` (``--timeout``, default
  :data:`DEFAULT_TOTAL_SECONDS`, start-up and import included), gets the child killed
  (SIGKILL: a C-level block ignores anything gentler) and the ``"error"`` verdict of kind
  ``timeout``.  The per-call limit covers the call itself; user code that runs outside a
  call (the module's import, converting a returned object) is covered by the total limit.
* **Dying.**  A child that ends without sending a report (``os._exit``, a signal, a
  segfault, the out-of-memory killer) gets the ``"error"`` verdict of kind ``exited``,
  naming the exit status or signal and, when one was running, the call.  ``sys.exit()``
  from user code, at import or inside a call, is kind ``exited`` too; an import that
  raises, or a module ``__getattr__`` that raises on ``FUNC``, is kind ``import-failed``
  (the user's code misbehaved: a verdict, exit status 1).  A missing file, module or
  function stays bad usage (exit status 2), and so do a ``FUNC`` whose signature fits
  another kind of check (:func:`properties.cli.loading.protocol_mismatch`) and an
  :class:`impl.errors.InvalidArgument` from the engine itself (no PyTorch, no shape
  within the batch budget), which is about the arguments, not about the user's code.
* **KeyboardInterrupt.**  The child is started with SIGINT blocked, in a session of its own,
  so Ctrl-C in a terminal (which signals the whole foreground process group) reaches only the
  parent, which kills the child and reports ``interrupted`` (the command exits 130 with one
  line on stderr).  A ``KeyboardInterrupt`` raised by user code in the child is reported the
  same way.  A child whose parent dies (``kill -9`` of the command) ends itself.
* **Processes** (:mod:`properties.cli.supervisor`).  Between the command and the child runs
  a supervisor, which starts the session: the child's ``os.getppid()`` is the supervisor
  (stopping it does not stop the command, which continues it), the command kills the whole
  session at the end, and on Linux it reaps whatever user code started outside the session.
  A call's time limit also covers putting the exception it raised into words
  (:func:`properties.judging.user_code.remember_text`).

This is robustness, not a sandbox: the child runs the user's code with the user's
permissions and could, if it wanted to, do anything the user can.

Adding a kind of check
----------------------
A check engine is a function ``engine(fn, **kwargs) -> report`` whose report has
``verdict``, ``message`` and ``to_dict()`` (an :class:`properties.onestep.checker.EstimatorReport`).
Register it by name in :data:`CHECK_KINDS` (the engine as ``"module:function"``, imported
in the child and, for the re-run, in the parent; the noun reports use for the user's
callable; the protocol), then make
``properties.cli.check`` choose the kind and its keyword arguments from the command line
(see ``_request`` there).  For example, for ``ida-verify check file.py:fn --sequence``::

    CHECK_KINDS["sequence"] = CheckKind(
        engine="properties:check_sequence_loss", noun="Loss", protocol="sequence-loss"
    )

The keyword arguments must be plain picklable values (numbers, strings, tuples); the child
adds ``name=`` and passes the user's callable, wrapped in :class:`TimedCall`, first.  The
engine must reach user code only through the seam of :mod:`properties.judging.seam` (a guard
or an evaluator), so that the parent's re-run can answer from the record.  Time limits,
process isolation, output hygiene and the error reports then come for free.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import inspect
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from impl.errors import InvalidArgument
from properties.cli.loading import (
    _LoadFailed,
    _Usage,
    load_target,
    protocol_mismatch,
)
from properties.cli.outcomes import (
    EXIT_ORPHANED,
    EXIT_SEND_FAILED,
    _as_outcome,
    _died,
    _timed_out,
    _unconfirmed,
    describe_call,
    error_report,
)
from properties.cli.recording import Record, encode_record, pack, record_check, rerun, unpack
from properties.cli.request import (
    CHECK_KINDS,
    DEFAULT_CALL_SECONDS,
    DEFAULT_TOTAL_SECONDS,
    CheckKind,
    CheckRequest,
    IsolatedOutcome,
    Limits,
)
from properties.cli.state import (
    _CALL_START,
    _CALLS,
    _GROUPS,
    _K,
    _LOGITS,
    _N,
    _PHASE,
    _ROWS,
    _SHOWN,
    _STATE_SIZE,
    _USER_SECONDS,
    CHECKING,
    LOOKING_UP,
    MAX_RECORDED_LOGITS,
    REPORTING,
    State,
)
from properties.cli.supervisor import (
    SUPERVISOR_START_METHOD,
    continue_if_stopped,
    kill_session,
    read_exitcode,
    reap_orphans,
    subreaper,
    supervisor_main,
    tracker_pid,
)
from properties.judging.user_code import exception_text, remember_text, safe_text

START_METHOD = "spawn"
"""How the child is started (see the module docstring for why not ``fork``)."""

DEFAULT_LIMITS = Limits()
"""``--timeout`` and ``--call-timeout`` at their defaults."""

POLL_SECONDS = 0.05
"""How often the parent looks at the child's clock: the latency of a timeout."""

KILL_GRACE_SECONDS = 5.0
"""How long the parent waits for a killed (or finished) child to be reaped."""

class TimedCall:
    """The user's callable, recording each call's start time and inputs in shared memory.

    The parent reads ``state`` to enforce the per-call limit and to say which call hung or
    died.  A call that escapes with an exception leaves ``escaped`` set to the exception
    and the call's description.
    Cheap by design (``benchmarks/bench_isolation.py`` measures it): inputs are recorded
    only when they are new objects, as the checker reuses ``logits`` and batches.
    """

    __slots__ = (
        "_calls", "_fn", "_last_logits", "_last_shape", "_logits", "_noun", "_protocol", "_seconds",
        "_state", "escaped",
    )

    escaped: tuple[BaseException, str] | None

    def __init__(
        self, fn: Callable[..., Any], state: State, *, noun: str = "estimator", protocol: str = "one-step"
    ) -> None:
        self._fn = fn
        self._state = state
        self._noun = noun
        self._protocol = protocol
        for slot in (_N, _ROWS, _K, _GROUPS):
            state[slot] = -1
        self._logits = np.frombuffer(state, dtype=np.float64)[_LOGITS:]
        self._calls = 0
        self._seconds = 0.0
        self._last_logits: Any = None
        self._last_shape: Any = None
        self.escaped = None

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        """The user's callable: ``inspect.signature`` sees its parameters through the wrapper
        (the token-weights checker passes the keyword extras a function names)."""
        return self._fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        state = self._state
        self._calls += 1
        state[_CALLS] = self._calls
        if self._protocol != "one-step":
            if args and args[-1 if self._protocol == "sequence-loss" else 1] is not self._last_shape:
                self._note_batch(args)
        elif len(args) >= 2:
            if args[0] is not self._last_logits:
                self._note_logits(args[0])
            shape = args[1].shape if isinstance(args[1], np.ndarray) else None
            if shape != self._last_shape:
                self._note_shape(shape)
        started = time.monotonic()
        state[_CALL_START] = started
        try:
            return self._fn(*args, **kwargs)
        except BaseException as exc:
            self.escaped = (exc, describe_call(state, self._noun, self._protocol))
            remember_text(exc)  # under the call's time limit: a __str__ that never returns is a timeout
            raise
        finally:
            state[_CALL_START] = 0.0
            self._seconds += time.monotonic() - started
            state[_USER_SECONDS] = self._seconds

    def _note_logits(self, logits: Any) -> None:
        state = self._state
        self._last_logits = logits
        try:
            n = logits.size if isinstance(logits, np.ndarray) else -1
            shown = min(n, MAX_RECORDED_LOGITS)
            if shown > 0:
                self._logits[:shown] = logits.reshape(-1)[:shown]
            state[_N], state[_SHOWN] = n, shown
        except Exception:  # arguments of an unexpected kind: describe the call by number only
            state[_N] = -1

    def _note_batch(self, args: tuple[Any, ...]) -> None:
        """A sequence call's shape: the loss's ``batch.logits`` ``(B, T, V)``, or the weight
        function's ``mask`` ``(B, T)`` (``(G, B, T)`` batched)."""
        state = self._state
        if self._protocol == "sequence-loss":
            self._last_shape = args[-1]
            shape = _shape_of(getattr(args[-1], "logits", None))
            shape = shape if len(shape) == 3 else (*_shape_of(getattr(args[-1], "tokens", None)), -1)
            groups = -1
        else:
            self._last_shape = args[1] if len(args) > 1 else None
            mask = _shape_of(args[1]) if len(args) > 1 else ()
            groups, shape = (mask[0], (*mask[1:], -1)) if len(mask) == 3 else (-1, (*mask, -1))
        if len(shape) != 3:
            shape = (-1, -1, -1)
        state[_ROWS], state[_K], state[_N], state[_GROUPS] = shape[0], shape[1], shape[2], groups

    def _note_shape(self, shape: tuple[int, ...] | None) -> None:
        state = self._state
        self._last_shape = shape
        state[_ROWS] = shape[0] if shape is not None and len(shape) == 2 else -1
        state[_K] = shape[-1] if shape else -1


def _shape_of(value: Any) -> tuple[int, ...]:
    """``value.shape`` as ints (a tensor under ``vmap`` shows its per-batch shape), or ``()``."""
    try:
        return tuple(int(d) for d in value.shape)
    except Exception:  # not an array, or a hostile object: no shape
        return ()


# --------------------------------------------------------------------------- the child


def _exit_code_text(exc: SystemExit) -> str:
    code = exc.code
    return "sys.exit()" if code is None else f"sys.exit({safe_text(code)})"


def _engine(kind: str) -> Callable[..., Any]:
    module_name, _, function = CHECK_KINDS[kind].engine.partition(":")
    engine: Callable[..., Any] = getattr(importlib.import_module(module_name), function)
    return engine


def _report_payload(report: Any) -> dict[str, Any]:
    return {
        "status": "report",
        "verdict": str(report.verdict),
        "message": str(report.message),
        "report": report.to_dict(),
    }


_CHILD_START = [0.0]
"""When the child started running (for the time reported in its own error reports)."""


def _error_payload(request: CheckRequest, state: State, kind: str, detail: str, hint: str) -> dict[str, Any]:
    seconds = time.monotonic() - _CHILD_START[0]
    return _report_payload(error_report(request, state, kind=kind, detail=detail, hint=hint, seconds=seconds))


def _interrupted(where: str) -> dict[str, Any]:
    return {"status": "interrupted", "message": f"interrupted: KeyboardInterrupt raised {where}"}


def _loading(request: CheckRequest, state: State) -> str:
    head, _, attr = request.target.rpartition(":")
    if float(state[_PHASE]) == LOOKING_UP:
        return f"looking up {attr!r} in {head!r}"
    return f"importing {head!r}"


def _in_call(timed: TimedCall, exc: BaseException) -> str:
    """``"in call #N ..."`` if ``exc`` escaped from a call into user code, else ``""``."""
    if timed.escaped is not None and timed.escaped[0] is exc:
        return f"in {timed.escaped[1]}"
    return ""


def _run_in_child(request: CheckRequest, state: State) -> dict[str, Any]:
    noun = CHECK_KINDS[request.kind].noun.lower()
    try:
        fn = load_target(request.target, state)
    except _Usage as exc:
        return {"status": "usage", "message": str(exc)}
    except _LoadFailed as exc:
        if isinstance(exc.exc, KeyboardInterrupt):
            return _interrupted(f"while {exc.where}")
        return _error_payload(
            request, state, "import-failed", f"{exc.where} raised {exception_text(exc.exc)}",
            f"the module must import cleanly before its {noun} can be checked",
        )
    except SystemExit as exc:
        return _error_payload(
            request, state, "exited",
            f"{_loading(request, state)} called {_exit_code_text(exc)}: module-level code "
            "tried to end the program before anything could be checked",
            'put script code under if __name__ == "__main__":',
        )
    except KeyboardInterrupt:
        return _interrupted(f"while {_loading(request, state)}")
    mismatch = protocol_mismatch(fn, request.kind, request.target, request.kwargs)
    if mismatch is not None:  # e.g. a sequence loss without --sequence: bad usage
        return {"status": "usage", "message": mismatch}
    timed = TimedCall(fn, state, noun=noun, protocol=CHECK_KINDS[request.kind].protocol)
    state[_PHASE] = CHECKING
    try:
        report, record = _run_engine(request, timed)
    except KeyboardInterrupt as exc:
        return _interrupted(_in_call(timed, exc) or "during the check")
    except SystemExit as exc:
        where = _in_call(timed, exc) or "outside any call (e.g. while the checker converted a returned object)"
        return _error_payload(
            request, state, "exited",
            f"it called {_exit_code_text(exc)} {where}: user code tried to end the program",
            f"an {noun} must return its result, never exit" if noun[0] in "aeiou"
            else f"a {noun} must return its result, never exit",
        )
    except BaseException as exc:
        where = _in_call(timed, exc)
        if where:
            return _error_payload(
                request, state, "raised",
                f"it raised {exception_text(exc)} {where}, which escaped the checker",
                "",
            )
        if isinstance(exc, InvalidArgument):  # the engine refused its arguments (no PyTorch, ...)
            return {"status": "usage", "message": str(exc).replace("\n", " ")}
        traceback.print_exc()
        return _error_payload(
            request, state, "internal",
            f"the checker itself failed with {exception_text(exc)} (a bug in ida-verify: "
            "please report it with the traceback printed above on stderr)",
            "",
        )
    state[_PHASE] = REPORTING
    payload = _report_payload(report)
    payload["record"] = record
    if request.report_dir is not None:
        payload["report_error"] = _write_page(request.report_dir, request, report, timed)
    return payload


def _write_page(out_dir: str, request: CheckRequest, report: Any, timed: TimedCall) -> str | None:
    """Write the ``--report`` page in the child (which holds the user's function, under the
    same time limits); the reason it failed, or ``None``."""
    from properties.report.page import ReportUnavailable, write_check_report
    from properties.report.sequence_page import write_sequence_report
    from properties.sequence.results import SequenceReport

    try:
        if isinstance(report, SequenceReport):
            write_sequence_report(out_dir, report, timed)
        else:
            write_check_report(
                out_dir, report, timed, batched=bool(request.kwargs.get("batched", False))
            )
    except (ReportUnavailable, InvalidArgument, OSError) as exc:
        # a late failure (the directory changed during the check, a full disk): one line,
        # in our words or the system's, never our source line (exception_text adds it)
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        text = f"could not write the report to {out_dir}: {why or type(exc).__name__}"
        return text.replace("\n", " ")
    return None


def _run_engine(request: CheckRequest, timed: TimedCall) -> tuple[Any, Record]:
    """The engine on the timed callable, every answer recorded at the seam (the parent re-runs
    the check on the record), with a progress bar when the request asks for one and the
    engine takes a ``progress(done, planned)`` callback."""
    engine = _engine(request.kind)
    kwargs = dict(request.kwargs)
    if not (request.progress and "progress" in inspect.signature(engine).parameters):
        return record_check(engine, timed, request.name, kwargs)
    from properties.cli.progress import progress_bar

    with progress_bar(f"checking {request.name}", enabled=True) as bar:
        kwargs["progress"] = lambda done, planned: bar(done, planned, "problems")
        return record_check(engine, timed, request.name, kwargs)


def _watch_parent() -> None:
    """End this child when its parent dies (so that a hung check cannot outlive the command)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="ida-verify-parent-watch", daemon=True).start()


def _stdout_to_stderr() -> None:
    """Point file descriptor 1 and ``sys.stdout`` at stderr: only the parent writes stdout."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(OSError):
        os.dup2(2, 1)
    sys.stdout = sys.stderr


def child_main(conn: multiprocessing.connection.Connection, state: State, request: CheckRequest) -> None:
    """The child's entry point: run the check, send the JSON payload, and end at once."""
    _CHILD_START[0] = time.monotonic()
    try:
        _stdout_to_stderr()
        _watch_parent()
        payload = _run_in_child(request, state)
    except KeyboardInterrupt:
        payload = _interrupted("during the check")
    except BaseException as exc:
        traceback.print_exc()
        payload = _error_payload(
            request, state, "internal",
            f"the checker's child process failed with {exception_text(exc)} (a bug in "
            "ida-verify: please report it with the traceback printed above on stderr)",
            "",
        )
    try:
        record = payload.pop("record", None)
        header, buffer = (b"", b"") if record is None else encode_record(record)
        data = pack(json.dumps(payload).encode(), header, buffer)
    except BaseException as exc:
        data = pack(json.dumps(_error_payload(
            request, state, "internal", f"the report could not be sent as JSON ({exception_text(exc)})", ""
        )).encode(), b"", b"")
    try:
        conn.send_bytes(data)
        conn.close()
    except BaseException:
        os._exit(EXIT_SEND_FAILED)
    with contextlib.suppress(BaseException):
        sys.stderr.flush()
    os._exit(0)  # skip the user's atexit handlers and threads: the verdict is sent


# --------------------------------------------------------------------------- the parent


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT while the child starts: the child inherits the mask, the parent gets the signal after."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _payload_outcome(request: CheckRequest, state: State, data: bytes) -> IsolatedOutcome | None:
    """The outcome of the child's message; a verdict other than ``"error"`` only as the parent's
    own re-run of the check on the child's record (:mod:`properties.cli.recording`) finds it."""
    try:
        raw, header, buffer = unpack(data)
        payload = json.loads(raw)
        status = payload["status"]
        if status == "report":
            error = payload.get("report_error")
            report_error = None if error is None else str(error)
            if header:
                return _confirmed(request, state, str(payload["verdict"]), header, buffer, report_error)
            if payload["verdict"] != "error":
                return _as_outcome(_unconfirmed(request, state, "it sent a verdict without the record of the check"))
            return IsolatedOutcome(
                status="report",
                message=str(payload["message"]),
                verdict="error",
                report=dict(payload["report"]),
                report_error=report_error,
            )
        if status in ("usage", "interrupted"):
            return IsolatedOutcome(status=status, message=str(payload["message"]))
    except (ValueError, KeyError, TypeError):
        pass
    return None


def _confirmed(
    request: CheckRequest, state: State, claimed: str, header: bytes, buffer: bytes, report_error: str | None
) -> IsolatedOutcome:
    """The parent's own verdict: the check re-run here, on the record of the child's answers."""
    try:
        record = Record.decode(json.loads(header), buffer)
    except (ValueError, TypeError) as exc:
        return _as_outcome(_unconfirmed(request, state, f"its record is malformed ({exc})"))
    report, why = rerun(_engine(request.kind), record, request.name, dict(request.kwargs))
    if report is None:
        return _as_outcome(_unconfirmed(request, state, str(why)))
    outcome = _as_outcome(report)
    if claimed != report.verdict:  # the child's own report was not the check's: it was changed
        message = (
            f"{outcome.message}\nNote: the child process running the user's code reported "
            f"{claimed!r}; that report was discarded (user code changed the checker in the child). "
            "This verdict is the parent's own, on the answers the child recorded."
            + (" The --report page was drawn in the child, from the discarded report." if request.report_dir else "")
        )
        assert outcome.report is not None
        outcome = IsolatedOutcome(
            status="report", message=message, verdict=outcome.verdict,
            report={**outcome.report, "message": message},
        )
    return IsolatedOutcome(
        status="report", message=outcome.message, verdict=outcome.verdict, report=outcome.report,
        report_error=report_error,
    )


def run_isolated(
    request: CheckRequest, limits: Limits = DEFAULT_LIMITS, *, start_method: str = START_METHOD
) -> IsolatedOutcome:
    """Run ``request`` in a child process under ``limits``; never raises for user misbehaviour.

    The child runs in a session of its own under a supervisor process
    (:mod:`properties.cli.supervisor`); when this returns, the session is killed and every
    process user code started outside it has been killed and reaped (Linux).
    ``KeyboardInterrupt`` in the parent (Ctrl-C) kills them all and propagates.
    """
    if request.kind not in CHECK_KINDS:
        raise ValueError(f"unknown check kind {request.kind!r}; known: {sorted(CHECK_KINDS)}")
    ctx: Any = multiprocessing.get_context(start_method)  # typeshed's BaseContext lacks Process
    state = ctx.RawArray(ctypes.c_double, _STATE_SIZE)
    reader, writer = ctx.Pipe(duplex=False)
    status_reader, status_writer = ctx.Pipe(duplex=False)
    sup_ctx: Any = multiprocessing.get_context(SUPERVISOR_START_METHOD)
    sup = sup_ctx.Process(
        target=supervisor_main,
        args=(start_method, child_main, (state, request), writer, status_writer),
        name="ida-verify-supervisor",
    )
    start = time.monotonic()
    with subreaper() as before:
        try:
            with _sigint_blocked():
                sup.start()
            writer.close()
            status_writer.close()
            return _supervise(request, limits, sup, reader, status_reader, state, start)
        finally:
            reader.close()
            status_reader.close()
            if sup.pid is not None:
                kill_session(sup.pid)
                sup.join(KILL_GRACE_SECONDS)
            tracker = tracker_pid()
            reap_orphans(before, {p for p in (sup.pid, tracker) if p is not None})
            if sup.exitcode is not None:
                sup.close()


def _supervise(
    request: CheckRequest,
    limits: Limits,
    sup: Any,
    reader: multiprocessing.connection.Connection,
    status: multiprocessing.connection.Connection,
    state: State,
    start: float,
) -> IsolatedOutcome:
    deadline = start + limits.total_seconds
    watched: list[Any] = [reader, status, sup.sentinel]
    while True:
        now = time.monotonic()
        call_start = float(state[_CALL_START])
        if call_start > 0 and now - call_start > limits.call_seconds:
            kill_session(sup.pid)
            return _as_outcome(
                _timed_out(request, state, limits, now - start, running=now - call_start)
            )
        if now >= deadline:
            kill_session(sup.pid)
            return _as_outcome(_timed_out(request, state, limits, now - start, running=None))
        continue_if_stopped(sup.pid)  # the child stopped its parent (os.kill(os.getppid(), SIGSTOP))
        wait = min(POLL_SECONDS, deadline - now)
        if call_start > 0:
            wait = min(wait, call_start + limits.call_seconds - now)
        ready = multiprocessing.connection.wait(watched, timeout=max(wait, 0.0))
        if reader in ready:
            try:
                outcome = _payload_outcome(request, state, reader.recv_bytes())
            except (EOFError, OSError):
                outcome = None
            if outcome is not None:
                return outcome
            watched.remove(reader)  # closed, or sent garbage: wait for the child to end
        if status in ready or sup.sentinel in ready:
            known, code = _exit_status(status)
            if known or sup.sentinel in ready:
                if reader in watched and reader.poll(0):
                    continue  # the report arrived before the news of the child's end: read it first
                return _as_outcome(_died(request, state, code, time.monotonic() - start))


def _exit_status(status: multiprocessing.connection.Connection) -> tuple[bool, int | None]:
    """The child's exit status as the supervisor sent it: ``(True, code)``, or ``(False, None)``."""
    try:
        if status.poll(0):
            return read_exitcode(status.recv_bytes())
    except (EOFError, OSError):
        pass
    return False, None


__all__ = [
    "CHECK_KINDS",
    "DEFAULT_CALL_SECONDS",
    "DEFAULT_TOTAL_SECONDS",
    "START_METHOD",
    "CheckKind",
    "CheckRequest",
    "IsolatedOutcome",
    "Limits",
    "TimedCall",
    "child_main",
    "describe_call",
    "error_report",
    "run_isolated",
]
