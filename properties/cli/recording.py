"""The judge stays in the parent: record the child's answers at the seam, re-run the check on them.

User code runs in the child process, and anything in that process can be changed by it: a
module can wrap the report builder, the judging functions or NumPy itself at import.  So the
child's verdict is never trusted.  Instead (see :mod:`properties.judging.seam`):

1. **In the child**, a :class:`Recorder` is installed while the check runs.  Every call the
   checker makes at the seam (one-step: the guard's ``__call__``, ``run``,
   ``check_deterministic``, ``check_rows_independent``, ``check_deterministic4``; sequence:
   the evaluator's ``evaluate``) is recorded: a SHA-256 digest of its inputs, and its raw
   result (the per-call estimates ``g`` and the output's round-off unit; the per-batch
   gradient estimates of a sequence problem) or the fault it raised.  The record travels to
   the parent as JSON plus one buffer of float64/int64 arrays; nothing is unpickled.
2. **In the parent**, the same check is run again with a :class:`Replay` installed: it never
   calls user code, it answers each seam call from the record, after checking that the call
   is the next one recorded and that its inputs have the recorded digest.  The battery, the
   seeded Hypothesis search, the exact targets :math:`\\nabla J`, the expectations, the
   tolerances and the verdict are all computed in the parent by code the user's module never
   saw.  Any divergence (a call not recorded, other inputs, a record left over, an answer of
   the wrong shape or an unknown precision) makes the verdict ``"error"`` (kind
   ``unconfirmed``).

What this guarantees: exit status 0 means that the parent's own checker found the recorded
answers unbiased, on the problems the parent's own checker chose.  What it does not: the
answers were computed in the child, so user code that detects the check (or rewrites the
guard in the child) can answer with values that are not what it computes in training; no
isolation can rule that out.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from properties.judging.seam import installed
from properties.judging.user_code import exception_text

ALLOWED_DTYPES = {"<f8": np.float64, "<i8": np.int64}
"""The array dtypes a record may hold (little-endian float64 and int64; nothing else is read)."""

MAX_RECORD_BYTES = 2**31
"""Largest record the parent reads (a default check records a few MB)."""

EPS64 = float(np.finfo(np.float64).eps)


def plausible_eps(eps: Any) -> bool:
    """Whether ``eps`` can be a binary floating dtype's round-off unit: a power of two from
    float64's up to ``2**-1`` (float32 ``2**-23``, bfloat16 ``2**-7``, float16 ``2**-10``, ...).

    >>> plausible_eps(2.0**-23), plausible_eps(0.3), plausible_eps(1.0)
    (True, False, False)
    """
    if not isinstance(eps, float) or not EPS64 <= eps <= 0.5:
        return False
    mantissa, _ = math.frexp(eps)
    return mantissa == 0.5


def fits_precision(values: np.ndarray, eps: float) -> bool:
    """Whether every value has at most the significant bits of a dtype with round-off unit
    ``eps`` (``1 + log2(1/eps)`` bits; the exponent range is not checked).

    >>> fits_precision(np.array([1.0, 0.5, 3.0]), 2.0**-10), fits_precision(np.array([0.1]), 2.0**-10)
    (True, False)
    """
    mantissa, _ = np.frexp(values[np.isfinite(values)])
    scaled = mantissa * (2.0 / eps)
    return bool(np.all(scaled == np.round(scaled)))


class ReplayMismatch(BaseException):
    """The re-run asked for something the record does not hold (a ``BaseException``: no
    ``except Exception`` of the checker may swallow it)."""


def digest(op: str, *args: Any) -> str:
    """A SHA-256 of the inputs of one seam call (arrays by dtype, shape and bytes).

    >>> digest("call", np.zeros(2), 3) == digest("call", np.zeros(2), 3)
    True
    >>> digest("call", np.zeros(2)) == digest("call", np.zeros(3))
    False
    """
    h = hashlib.sha256(op.encode())
    _feed(h, args)
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, np.ndarray):
        h.update(f"|a{value.dtype.str}{value.shape}|".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, list | tuple):
        h.update(f"|s{len(value)}|".encode())
        for item in value:
            _feed(h, item)
    elif value is None or isinstance(value, bool | int | float | str | np.integer | np.floating):
        h.update(f"|{type(value).__name__}:{value!r}|".encode())
    else:
        raise TypeError(f"cannot digest a {type(value).__name__}")


def _problem_parts(problem: Any) -> tuple[Any, ...]:
    """What identifies a sequence problem: its shape (the fields libraries pass included) and its numbers."""
    s = problem.shape
    return (
        s.describe(), problem.theta, problem.rewards, problem.ref_theta,
        problem.old_theta, float(problem.kl_coef), problem.label,
        bool(s.tool_tokens), bool(s.sampling_mismatch), str(s.values),
        problem.sampler_theta, problem.value_table,
    )


# --------------------------------------------------------------------------- the record


class Record:
    """Seam calls and their answers: ``entries`` (JSON values) and the arrays they refer to."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.arrays: list[np.ndarray] = []
        self.seconds = 0.0

    def put(self, a: Any) -> int | None:
        """Keep an array (as float64, or int64 for integers); its index, or ``None`` for ``None``."""
        if a is None:
            return None
        arr = np.asarray(a)
        self.arrays.append(np.ascontiguousarray(arr, dtype=np.int64 if arr.dtype.kind in "iub" else np.float64))
        return len(self.arrays) - 1

    def encode(self) -> tuple[dict[str, Any], bytes]:
        """``(header, buffer)``: the header is JSON-able, the buffer the arrays' bytes."""
        specs, chunks, offset = [], [], 0
        for a in self.arrays:
            data = a.astype(a.dtype.newbyteorder("<")).tobytes()
            specs.append({"dtype": a.dtype.newbyteorder("<").str, "shape": list(a.shape), "offset": offset})
            chunks.append(data)
            offset += len(data)
        header = {"entries": self.entries, "arrays": specs, "seconds": self.seconds}
        return header, b"".join(chunks)

    @classmethod
    def decode(cls, header: Any, buffer: bytes) -> Record:
        """The record from :meth:`encode`'s output; raises ``ValueError`` on anything malformed."""
        if not isinstance(header, dict) or len(buffer) > MAX_RECORD_BYTES:
            raise ValueError("malformed record")
        entries, specs = header.get("entries"), header.get("arrays")
        if not isinstance(entries, list) or not isinstance(specs, list):
            raise ValueError("malformed record")
        out = cls()
        out.entries = [e for e in entries if isinstance(e, dict)]
        if len(out.entries) != len(entries):
            raise ValueError("malformed record entry")
        seconds = header.get("seconds")
        out.seconds = float(seconds) if isinstance(seconds, int | float) and math.isfinite(seconds) else 0.0
        for spec in specs:
            dtype = ALLOWED_DTYPES.get(str(spec.get("dtype"))) if isinstance(spec, dict) else None
            shape, offset = (spec.get("shape"), spec.get("offset")) if isinstance(spec, dict) else (None, None)
            if (
                dtype is None or not isinstance(shape, list) or not isinstance(offset, int)
                or not all(isinstance(d, int) and d >= 0 for d in shape) or offset < 0
            ):
                raise ValueError("malformed array in the record")
            size = int(np.prod(shape, dtype=np.int64)) * 8
            if offset + size > len(buffer):
                raise ValueError("array beyond the end of the record")
            a = np.frombuffer(buffer, dtype=np.dtype(dtype).newbyteorder("<"), count=size // 8, offset=offset)
            out.arrays.append(a.astype(dtype).reshape(shape))
        return out

    def get(self, index: Any) -> Any:
        """The array at ``index`` (``None`` stays ``None``)."""
        if index is None:
            return None
        if not isinstance(index, int) or not 0 <= index < len(self.arrays):
            raise ReplayMismatch(f"the record refers to a missing array {index!r}")
        return self.arrays[index]


# --------------------------------------------------------------------------- in the child


_GUARD_OPS = ("__call__", "run", "check_deterministic", "check_rows_independent", "check_deterministic4")


class Recorder:
    """The seam in the child: the real guard or evaluator, every outermost call recorded."""

    def __init__(self) -> None:
        self.record = Record()
        self._depth = 0
        self._started = time.perf_counter()

    def seconds_before(self) -> float:
        return 0.0

    def stand_in(self, sandbox: Any) -> Any:
        return None

    def _fault_entry(self, fault: Any) -> dict[str, Any]:
        put = self.record.put
        return {
            "kind": str(fault.kind), "detail": str(fault.detail), "hint": str(fault.hint),
            "logits": put(fault.logits), "samples": put(fault.samples), "rewards": put(fault.rewards),
            "batched_call": bool(fault.batched_call), "group": put(fault.group),
        }

    def guarded(
        self, guard: Any, op: str, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Call ``method`` (the real guard's), recording it if it is an outermost call."""
        if self._depth:
            return method(*args, **kwargs)
        from properties.onestep.guard import EstimatorFault

        entry: dict[str, Any] = {"op": op, "in": digest(op, args, sorted(kwargs.items()))}
        calls, seconds = guard.calls, guard.user_seconds
        self._depth += 1
        try:
            out = method(*args, **kwargs)
        except EstimatorFault as fault:
            entry["fault"] = self._fault_entry(fault)
            raise
        else:
            if out is not None:
                g, eps = out
                entry["out"] = {"g": self.record.put(g), "eps": float(eps)}
            return out
        finally:
            self._depth -= 1
            entry["calls"], entry["seconds"] = guard.calls - calls, guard.user_seconds - seconds
            self.record.entries.append(entry)

    def guard(self, guard: Any) -> Any:
        return _subclass(guard, _RecordedGuard, {"_recorder": self})

    def evaluator(self, evaluator: Any, sandbox: Any) -> Any:
        return _subclass(evaluator, _RecordedEvaluator, {"_recorder": self, "_sandbox": sandbox})

    def evaluated(
        self, evaluator: Any, method: Callable[..., Any], problems: list[Any], kwargs: dict[str, Any], sandbox: Any
    ) -> Any:
        """Call the real ``evaluate``, recording the raw per-batch estimates or the fault."""
        from properties.sequence.evaluation import ModeChanged, SequenceFault

        entry: dict[str, Any] = {
            "op": "evaluate",
            "in": digest("evaluate", [_problem_parts(p) for p in problems], bool(kwargs["check_determinism"])),
        }
        try:
            evs = method(problems, **kwargs)
        except SequenceFault as fault:
            where = next((i for i, p in enumerate(problems) if p is fault.problem), None)
            entry["fault"] = {
                "kind": str(fault.kind), "detail": str(fault.detail), "hint": str(fault.hint),
                "batch": None if fault.batch is None else int(fault.batch), "problem": where,
                "outside": fault.problem is not None and where is None,
            }
            raise
        except ModeChanged as exc:
            entry["mode_changed"] = str(exc)
            raise
        else:
            entry["out"] = [
                {
                    "per_batch": self.record.put(ev.per_batch), "eps": float(ev.eps_out),
                    "weights": self.record.put(ev._raw_weights), "direct": bool(ev.direct),
                }
                for ev in evs
            ]
            return evs
        finally:
            entry["state"] = _evaluator_state(evaluator, sandbox)
            self.record.entries.append(entry)

    def finish(self) -> Record:
        self.record.seconds = time.perf_counter() - self._started
        return self.record


def _evaluator_state(evaluator: Any, sandbox: Any) -> dict[str, Any]:
    dtypes = getattr(evaluator, "dtypes", None)
    return {
        "mode": getattr(evaluator, "mode", None),
        "fallback_reason": getattr(evaluator, "fallback_reason", None),
        "batches_evaluated": getattr(evaluator, "batches_evaluated", None),
        "probe_seconds": getattr(evaluator, "probe_seconds", None),
        "dtypes": None if dtypes is None else sorted(str(d) for d in dtypes),
        "calls": sandbox.calls,
        "user_seconds": sandbox.user_seconds,
    }


def _subclass(obj: Any, mixin: type, extra: dict[str, Any]) -> Any:
    """``obj`` re-made as an instance of ``(mixin, type(obj))`` with the same state plus ``extra``
    (so that the checkers' ``isinstance`` checks still hold)."""
    cls = type(obj)
    new_cls = type(f"{mixin.__name__}[{cls.__name__}]", (mixin, cls), {})
    out: Any = object.__new__(new_cls)
    out.__dict__.update(obj.__dict__)
    out.__dict__.update(extra)
    return out


class _RecordedGuard:
    _recorder: Recorder

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._recorder.guarded(self, "__call__", super().__call__, args, kwargs)  # type: ignore[misc]

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self._recorder.guarded(self, "run", cast(Any, super()).run, args, kwargs)

    def check_deterministic(self, *args: Any, **kwargs: Any) -> Any:
        return self._recorder.guarded(self, "check_deterministic", cast(Any, super()).check_deterministic, args, kwargs)

    def check_rows_independent(self, *args: Any, **kwargs: Any) -> Any:
        return self._recorder.guarded(
            self, "check_rows_independent", cast(Any, super()).check_rows_independent, args, kwargs
        )

    def check_deterministic4(self, *args: Any, **kwargs: Any) -> Any:
        return self._recorder.guarded(
            self, "check_deterministic4", cast(Any, super()).check_deterministic4, args, kwargs
        )


class _RecordedEvaluator:
    _recorder: Recorder
    _sandbox: Any

    def evaluate(self, problems: list[Any], **kwargs: Any) -> Any:
        return self._recorder.evaluated(self, cast(Any, super()).evaluate, problems, kwargs, self._sandbox)


# --------------------------------------------------------------------------- in the parent


class Replay:
    """The seam in the parent: answers every call from the child's record, never calling user code."""

    def __init__(self, record: Record) -> None:
        self.record = record
        self.position = 0
        self.failure: str | None = None

    def seconds_before(self) -> float:
        return self.record.seconds

    def stand_in(self, sandbox: Any) -> Any:
        """The PyTorch loss's evaluator, answering from the record (PyTorch is never imported)."""
        return _StandIn(self, sandbox)

    def fail(self, why: str) -> ReplayMismatch:
        if self.failure is None:
            self.failure = why
        return ReplayMismatch(self.failure)

    def take(self, op: str, key: str) -> dict[str, Any]:
        """The next entry, which must be ``op`` on inputs of digest ``key``."""
        if self.failure is not None:
            raise ReplayMismatch(self.failure)
        number = self.position + 1
        if self.position >= len(self.record.entries):
            raise self.fail(f"the re-run made seam call #{number} ({op}), which the child never made")
        entry = self.record.entries[self.position]
        self.position += 1
        if entry.get("op") != op or entry.get("in") != key:
            raise self.fail(
                f"seam call #{number} of the re-run ({op}) differs from the child's "
                f"({safe_op(entry.get('op'))} on other inputs)"
            )
        return entry

    def _eps(self, value: Any) -> float:
        if not plausible_eps(value):
            raise self.fail(f"the record claims a round-off unit {value!r} that no binary floating dtype has")
        return float(value)

    def guard(self, guard: Any) -> Any:
        return _subclass(guard, _ReplayedGuard, {"_replay": self, "fn": _never_called})

    def evaluator(self, evaluator: Any, sandbox: Any) -> Any:
        return _subclass(evaluator, _ReplayedEvaluator, {"_replay": self, "_sandbox": sandbox, "fn": _never_called})

    def answer_guard(self, guard: Any, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from properties.onestep.guard import EstimatorFault

        entry = self.take(op, digest(op, args, sorted(kwargs.items())))
        guard.calls += int(entry.get("calls", 0))
        guard.user_seconds += float(entry.get("seconds", 0.0))
        get = self.record.get
        fault = entry.get("fault")
        if isinstance(fault, dict):
            raise EstimatorFault(
                str(fault.get("kind")), str(fault.get("detail")),
                logits=get(fault.get("logits")), samples=get(fault.get("samples")),
                rewards=get(fault.get("rewards")), batched_call=bool(fault.get("batched_call")),
                hint=str(fault.get("hint", "")), group=get(fault.get("group")),
            )
        out = entry.get("out")
        if out is None:
            if op in ("__call__", "run"):
                raise self.fail(f"the record of {op} holds no answer")
            return None
        g = get(out.get("g"))
        if g is None or g.dtype != np.float64:
            raise self.fail(f"the record of {op} holds no float64 answer")
        eps = self._eps(out.get("eps"))
        if eps > EPS64 and not fits_precision(g, eps):  # a coarser claim would loosen the tolerances
            raise self.fail(f"the record claims a round-off unit of {eps:.3g} for values finer than that")
        return g, eps

    def answer_evaluate(self, evaluator: Any, problems: list[Any], kwargs: dict[str, Any]) -> Any:
        from properties.sequence.evaluation import ModeChanged, SequenceFault, summarise

        entry = self.take(
            "evaluate", digest("evaluate", [_problem_parts(p) for p in problems], bool(kwargs["check_determinism"]))
        )
        state = entry.get("state")
        if isinstance(state, dict):
            for name in ("mode", "fallback_reason", "batches_evaluated", "probe_seconds", "dtypes"):
                if name in evaluator.__dict__:  # plain attributes only (TokenWeights.mode is derived)
                    value = state.get(name)
                    evaluator.__dict__[name] = set(map(str, value or ())) if name == "dtypes" else value
            sandbox = self._sandbox_of(evaluator)
            sandbox.calls = int(state.get("calls", 0))
            sandbox.user_seconds = float(state.get("user_seconds", 0.0))
        fault = entry.get("fault")
        if isinstance(fault, dict):
            where = fault.get("problem")
            problem = problems[where] if isinstance(where, int) and 0 <= where < len(problems) else None
            batch = fault.get("batch")
            raise SequenceFault(
                str(fault.get("kind")), str(fault.get("detail")), problem=problem,
                batch=batch if isinstance(batch, int) else None, hint=str(fault.get("hint", "")),
            )
        if "mode_changed" in entry:
            raise ModeChanged(str(entry["mode_changed"]))
        out = entry.get("out")
        if not isinstance(out, list) or len(out) != len(problems):
            raise self.fail("the record of evaluate holds answers for other problems")
        evs = []
        for problem, item in zip(problems, out, strict=True):
            per_batch = self.record.get(item.get("per_batch"))
            weights = self.record.get(item.get("weights"))
            if per_batch is None or per_batch.dtype != np.float64 or per_batch.ndim < 1:
                raise self.fail("the record of evaluate holds no per-batch estimates")
            if per_batch.size != problem.weights.size * problem.gradient.size:
                raise self.fail("the record of evaluate holds per-batch estimates of the wrong size")
            evs.append(summarise(
                problem, per_batch, self._eps(item.get("eps")), rtol=kwargs["rtol"], atol=kwargs["atol"],
                token_weights=weights, direct=bool(item.get("direct")),
            ))
        return evs

    @staticmethod
    def _sandbox_of(evaluator: Any) -> Any:
        return evaluator._sandbox

    def finish(self) -> None:
        """Raise :class:`ReplayMismatch` if the re-run diverged or left recorded calls unasked."""
        if self.failure is not None:
            raise ReplayMismatch(self.failure)
        left = len(self.record.entries) - self.position
        if left:
            raise self.fail(f"the child made {left} seam call(s) the re-run never asked for")


def safe_op(op: Any) -> str:
    return op if isinstance(op, str) and op in (*_GUARD_OPS, "evaluate") else "an unknown call"


def _never_called(*args: Any, **kwargs: Any) -> Any:
    raise ReplayMismatch("the re-run tried to call user code directly")


class _ReplayedGuard:
    _replay: Replay

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._replay.answer_guard(self, "__call__", args, kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self._replay.answer_guard(self, "run", args, kwargs)

    def check_deterministic(self, *args: Any, **kwargs: Any) -> Any:
        return self._replay.answer_guard(self, "check_deterministic", args, kwargs)

    def check_rows_independent(self, *args: Any, **kwargs: Any) -> Any:
        return self._replay.answer_guard(self, "check_rows_independent", args, kwargs)

    def check_deterministic4(self, *args: Any, **kwargs: Any) -> Any:
        return self._replay.answer_guard(self, "check_deterministic4", args, kwargs)


class _StandIn:
    """What the PyTorch loss checker reads of its evaluator, set from the record."""

    def __init__(self, replay: Replay, sandbox: Any) -> None:
        self._replay, self._sandbox = replay, sandbox
        self.mode = "vmap"
        self.fallback_reason: str | None = None
        self.batches_evaluated = 0
        self.probe_seconds: float | None = None
        self.dtypes: set[str] = set()

    def evaluate(self, problems: list[Any], **kwargs: Any) -> Any:
        return self._replay.answer_evaluate(self, problems, kwargs)


class _ReplayedEvaluator:
    _replay: Replay

    def evaluate(self, problems: list[Any], **kwargs: Any) -> Any:
        return self._replay.answer_evaluate(self, problems, kwargs)


def rerun(engine: Callable[..., Any], record: Record, name: str, kwargs: dict[str, Any]) -> tuple[Any, str | None]:
    """The check re-run in this process on ``record``: ``(report, None)``, or ``(None, why)``
    when the re-run diverged from the record (the child's answers cannot be confirmed)."""
    replay = Replay(record)
    try:
        with installed(replay):
            report = engine(_never_called, name=name, **kwargs)
        replay.finish()
    except ReplayMismatch as exc:
        return None, str(exc) if replay.failure is None else replay.failure
    except Exception as exc:  # a malformed record can break the checker anywhere
        return None, replay.failure or f"the re-run failed on the child's record: {exception_text(exc)}"
    if replay.failure is not None:
        return None, replay.failure
    return report, None


def record_check(engine: Callable[..., Any], fn: Any, name: str, kwargs: dict[str, Any]) -> tuple[Any, Record]:
    """Run the check in this (the child) process with a :class:`Recorder`: the report and the record."""
    recorder = Recorder()
    with installed(recorder):
        report = engine(fn, name=name, **kwargs)
    record = recorder.finish()
    seconds = getattr(report, "seconds", None)  # the check's own clock (PyTorch's import excluded)
    if isinstance(seconds, float) and math.isfinite(seconds):
        record.seconds = seconds
    return report, record


_LENGTHS = struct.Struct("<QQ")


def pack(payload: bytes, header: bytes, buffer: bytes) -> bytes:
    """One message: the payload's JSON, the record's header (JSON, may be empty) and its buffer.

    >>> unpack(pack(b"{}", b"[]", b"xy"))
    (b'{}', b'[]', b'xy')
    """
    return _LENGTHS.pack(len(payload), len(header)) + payload + header + buffer


def unpack(data: bytes) -> tuple[bytes, bytes, bytes]:
    """The three parts of :func:`pack`'s message; ``ValueError`` if it is malformed."""
    if len(data) < _LENGTHS.size:
        raise ValueError("message too short")
    first, second = _LENGTHS.unpack_from(data)
    end = _LENGTHS.size + first + second
    if end > len(data):
        raise ValueError("message lengths beyond its end")
    return data[_LENGTHS.size : _LENGTHS.size + first], data[_LENGTHS.size + first : end], data[end:]


def encode_record(record: Record) -> tuple[bytes, bytes]:
    header, buffer = record.encode()
    return json.dumps(header).encode(), buffer


__all__ = [
    "Record", "Recorder", "Replay", "ReplayMismatch", "digest", "encode_record", "pack", "record_check",
    "rerun", "unpack",
]
