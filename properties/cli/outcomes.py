"""The ``"error"`` reports of a check that did not finish: timeouts, deaths, unconfirmed answers.

They name the call in flight (from the memory the child shares, :mod:`properties.cli.state`)
in the terms of the check's protocol: the logits and groups of a one-step estimator, the batch
shape of a sequence loss or weight function.
"""

from __future__ import annotations

import signal
from typing import Any

import numpy as np

from properties.cli.request import CHECK_KINDS, CheckRequest, IsolatedOutcome, Limits
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
    _USER_SECONDS,
    IMPORTING,
    LOOKING_UP,
    REPORTING,
    STARTING,
    State,
)

EXIT_ORPHANED = 125
"""Exit status of a child whose parent died."""
EXIT_SEND_FAILED = 124
"""Exit status of a child that could not send its report."""


def describe_call(state: State, noun: str = "estimator", protocol: str = "one-step") -> str:
    """``call #N into the estimator, fn(logits=..., samples of shape ...)`` from the state; for a
    sequence protocol, the batch's shape (``fn(batch)`` on ``B`` responses of ``T`` tokens ...).

    >>> state = [0.0] * 30
    >>> state[_CALLS], state[_ROWS], state[_K], state[_N], state[_GROUPS] = 3, 4, 2, 3, -1
    >>> describe_call(state, "loss", "sequence-loss")[:60]
    'call #3 into the loss, fn(batch) on a batch of B=4 responses'
    >>> describe_call(state, "loss", "sequence-loss")[60:]
    ' of T=2 tokens (tokens and mask of shape (4, 2), logits (4, 2, 3))'
    """
    number = int(state[_CALLS])
    n, rows, k, shown = int(state[_N]), int(state[_ROWS]), int(state[_K]), int(state[_SHOWN])
    if protocol != "one-step":
        return f"call #{number} into the {noun}, " + _sequence_call(protocol, rows, k, n, int(state[_GROUPS]))
    if n < 0:
        return f"call #{number} into the {noun}"
    values = [float(state[_LOGITS + i]) for i in range(shown)]
    logits = f"np.array({values!r})" if shown == n else f"an array of size {n}"
    if k < 0:
        rest = ""
    elif rows < 0:
        rest = f", samples and rewards of shape ({k},)"
    else:
        rest = f", samples and rewards of shape ({rows}, {k})"
    return f"call #{number} into the {noun}, fn(logits={logits}{rest})"


def _sequence_call(protocol: str, rows: int, length: int, vocab: int, groups: int) -> str:
    if protocol == "sequence-loss":
        if rows < 0:
            return "fn(batch)"
        logits = f", logits ({rows}, {length}, {vocab})" if vocab > 0 else ""
        return (
            f"fn(batch) on a batch of B={rows} responses of T={length} tokens (tokens and mask of "
            f"shape ({rows}, {length}){logits})"
        )
    if rows < 0:
        return "fn(rewards, mask, log_probs)"
    if groups >= 0:
        return (
            f"fn(rewards, mask, log_probs) on G={groups} batches of B={rows} responses of T={length} "
            f"tokens (mask of shape ({groups}, {rows}, {length}))"
        )
    return (
        f"fn(rewards, mask, log_probs) on a batch of B={rows} responses of T={length} tokens "
        f"(mask of shape ({rows}, {length}))"
    )


def _settings(request: CheckRequest, calls: int, user_seconds: float, seconds: float | None) -> str:
    """What the check was asked to do, for "Before it stopped: ..."."""
    kind = CHECK_KINDS[request.kind]
    kw = request.kwargs
    ks = ", ".join(str(int(k)) for k in kw.get("group_sizes", ()))
    head = f"{calls} {kind.noun.lower()} call{'' if calls == 1 else 's'} ({user_seconds:.2f} s inside), "
    tail = f", {seconds:.2f} s in all" if seconds is not None else ""
    if kind.protocol == "one-step":
        return (
            head + f"k in {{{ks}}}, seed={kw.get('seed')}, max_examples={kw.get('max_examples')}, "
            f"{'batched' if kw.get('batched') else 'per-group'}"
            + (f", num_prompts={tuple(kw['num_prompts'])}" if kw.get("num_prompts") is not None else "")
            + tail
        )
    prompts = ", ".join(str(int(p)) for p in kw.get("num_prompts", (1,)))
    mode = "" if kind.protocol == "sequence-loss" else (", batched" if kw.get("batched") else ", per-batch")
    return (
        head + f"{kind.protocol} protocol, k in {{{ks}}}, P in {{{prompts}}}, V up to "
        f"{kw.get('vocab_size')}, T up to {kw.get('max_len')}, kl_coef={kw.get('kl_coef')}, "
        f"off_policy={kw.get('off_policy')}, seed={kw.get('seed')}, max_examples={kw.get('max_examples')}"
        + mode + tail
    )


def error_report(
    request: CheckRequest, state: State, *, kind: str, detail: str, hint: str, seconds: float | None = None
) -> Any:
    """An ``"error"`` :class:`properties.onestep.checker.EstimatorReport` for a check that did not finish.

    The message is "Estimator 'f' ERROR (kind): {detail}. Hint: {hint}. Before it stopped:
    ..."; the logits and ``k`` of the call in flight (or the last call) come from ``state``.
    """
    from properties.onestep.results import EstimatorError, EstimatorReport

    check = CHECK_KINDS[request.kind]
    noun = check.noun
    kw = request.kwargs
    ks = tuple(int(k) for k in kw.get("group_sizes", ()))
    one_step = check.protocol == "one-step"
    n, shown, k = int(state[_N]), int(state[_SHOWN]), int(state[_K])
    logits = np.array([state[_LOGITS + i] for i in range(shown)] if one_step and shown == n > 0 else [])
    calls = int(state[_CALLS])
    user_seconds = float(state[_USER_SECONDS])
    elapsed = user_seconds if seconds is None else seconds
    settings = _settings(request, calls, user_seconds, seconds)
    message = f"{noun} {request.name!r} ERROR ({kind}): {detail}."
    if hint:
        message += f" Hint: {hint}."
    message += f" Before it stopped: {settings}."
    error = EstimatorError(
        kind=kind,
        detail=detail,
        logits=logits,
        samples=np.zeros(0, dtype=np.int64),
        rewards=np.zeros(0),
        scores=None,
        k=k if one_step and k > 0 else None,
        hint=hint,
        found_by="ida-verify check (child process)",
    )
    return EstimatorReport(
        name=request.name,
        verdict="error",
        scale=None,
        scale_uncertainty=None,
        counterexample=None,
        error=error,
        group_sizes=ks,
        seed=int(kw.get("seed", 0)),
        max_examples=int(kw.get("max_examples", 0)),
        batched=bool(kw.get("batched", check.protocol == "sequence-loss")),
        problems_checked=0,
        estimator_calls=calls,
        estimator_seconds=user_seconds,
        seconds=elapsed,
        message=message,
        protocol=check.protocol,
        num_prompts=None if kw.get("num_prompts") is None else tuple(int(p) for p in kw["num_prompts"]),
    )


_SIGNAL_NOTES = {
    "SIGSEGV": "a segmentation fault: a crash in C code (ctypes, a C extension, a stack overflow)",
    "SIGBUS": "a bus error: a crash in C code",
    "SIGABRT": "abort(): a failed assertion or fatal error in C code",
    "SIGFPE": "a floating-point trap in C code",
    "SIGILL": "an illegal instruction in C code",
    "SIGKILL": "sent by os.kill(..., SIGKILL), another process, or the out-of-memory killer",
    "SIGTERM": "a request to terminate, from the code itself or another process",
}


def _death_text(exitcode: int | None) -> str:
    if exitcode is None:
        return "ended (its exit status could not be read)"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        note = _SIGNAL_NOTES.get(name, "")
        return f"was killed by signal {-exitcode} ({name}{': ' + note if note else ''})"
    if exitcode == EXIT_SEND_FAILED:
        return f"ended with exit status {exitcode} after failing to send its report"
    return f"ended with exit status {exitcode} without sending a verdict"


def _where(request: CheckRequest, state: State) -> str:
    target = request.target
    noun = CHECK_KINDS[request.kind].noun.lower()
    if float(state[_CALL_START]) > 0:
        return f"during {describe_call(state, noun, CHECK_KINDS[request.kind].protocol)}"
    phase = float(state[_PHASE])
    if phase == STARTING:
        return "while starting (before any user code ran)"
    if phase == IMPORTING:
        return f"while importing {target.rpartition(':')[0]!r}"
    if phase == LOOKING_UP:
        return f"while looking up {target.rpartition(':')[2]!r}"
    if phase == REPORTING:
        return "after the check, while sending its report"
    calls = int(state[_CALLS])
    return (
        f"in the checker's own code between calls ({calls} calls into the {noun} so far; "
        "user code also runs there, e.g. when a returned object is converted to an array)"
    )


def _died(request: CheckRequest, state: State, exitcode: int | None, seconds: float) -> Any:
    detail = (
        f"the child process running the check {_death_text(exitcode)} "
        f"{_where(request, state)}; a check that ends without a verdict never counts as a pass"
    )
    hint = "look for os._exit, os.kill, sys.exit in a thread, or a crash in native code"
    return error_report(request, state, kind="exited", detail=detail, hint=hint, seconds=seconds)


def _timed_out(
    request: CheckRequest, state: State, limits: Limits, seconds: float, *, running: float | None
) -> Any:
    if running is not None:
        noun = CHECK_KINDS[request.kind].noun.lower()
        detail = (
            f"it did not return from {describe_call(state, noun, CHECK_KINDS[request.kind].protocol)} "
            "within the per-call limit of "
            f"{limits.call_seconds:g} s (--call-timeout; it had run {running:.2f} s): an "
            "infinite loop, a long sleep or a blocking wait; the child process running it was killed"
        )
        hint = f"raise --call-timeout if the {noun} is merely slow"
    else:
        detail = (
            f"the check did not finish within the total limit of {limits.total_seconds:g} s "
            f"(--timeout); the child process running it was killed {_where(request, state)}"
        )
        hint = "raise --timeout, or lower --max-examples, if the check is merely slow"
    return error_report(request, state, kind="timeout", detail=detail, hint=hint, seconds=seconds)


def _unconfirmed(request: CheckRequest, state: State, why: str) -> Any:
    return error_report(
        request, state, kind="unconfirmed",
        detail=(
            f"the check's answers could not be confirmed: {why}; the parent process re-runs every "
            "check on the answers the child recorded and trusts no verdict of the child's own, so "
            "user code that changes the checker (at import, or inside a call) gets no verdict"
        ),
        hint="do not patch ida-verify, NumPy or Hypothesis from the checked module",
    )


def _as_outcome(report: Any) -> IsolatedOutcome:
    return IsolatedOutcome(
        status="report", message=report.message, verdict=report.verdict, report=report.to_dict()
    )
