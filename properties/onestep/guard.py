"""Calling a user's estimator without trusting it (private to :mod:`properties.onestep.checker`).

:class:`GuardedEstimator` turns any user callable, batched or per-group, into a
batched function ``(logits (n,), samples (B, k), rewards (B, k)) -> (B, n) float64``
that either returns a finite array or raises :class:`EstimatorFault`, which names
what went wrong and the exact inputs that triggered it.  It never lets an exception
from user code escape (``KeyboardInterrupt`` excepted: Ctrl-C stops the run), whatever
the user raises (``BaseException`` subclasses, ``GeneratorExit``, ``SystemExit``) or
returns (``None``, objects whose ``__array__`` or attribute access raises, integer,
complex or object arrays, masked arrays, generators).

Inputs are protected twice.  Every array handed to user code is read-only and backed by
an immutable ``bytes`` buffer, so that neither ``setflags(write=True)`` on it nor on its
``.base`` can make it writeable (a write raises inside the user's code, and the guard
then re-runs the call on writeable copies to confirm and name the write).  And because
a determined estimator can still write through ``torch.from_numpy`` or ``ctypes``, the
inputs are compared with private copies after every call.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from impl.exact import enumerate_groups
from impl.types import FloatArray, IntArray
from properties.judging.user_code import (
    DescriptorCapture,
    UserCodeError,
    call_user,
    kept_torch_modes,
    safe_text,
    type_name,
)

EPS64 = float(np.finfo(np.float64).eps)
"""Machine epsilon of float64: the round-off unit of the exact engine itself."""

DETERMINISM_ULPS = 16.0
"""Two calls on identical inputs may differ by this many ulps of the output dtype
(reduction order in threaded BLAS) and still count as deterministic; the same bound
applies to a row computed in a different batch (:meth:`GuardedEstimator.check_rows_independent`)."""

SUB_BATCH_ROWS = 3
"""Rows in the small sub-batch of the row-independence check (besides a batch of one)."""

KEPT_CALLS = 4
"""The inputs of this many recent calls are re-verified after every call (late writes)."""

FAULT_KINDS = (
    "raised",
    "exited",
    "returned-none",
    "bad-type",
    "wrong-shape",
    "non-finite",
    "nondeterministic",
    "mutated-input",
    "rows-not-independent",
    "printed",
)
"""The ways an estimator call can fail, as reported in ``EstimatorReport.error``."""

_F64 = np.dtype(np.float64)


def frozen(a: Any) -> Any:
    """A read-only copy of ``a`` backed by immutable ``bytes``: no ``setflags`` can undo it.

    >>> x = frozen(np.arange(3.0))
    >>> x.flags.writeable
    False
    >>> x.setflags(write=True)
    Traceback (most recent call last):
    ...
    ValueError: cannot set WRITEABLE flag to True of this array
    """
    arr = np.ascontiguousarray(a)
    return np.frombuffer(arr.tobytes(), dtype=arr.dtype).reshape(arr.shape)


_GROUPS: dict[tuple[int, int], tuple[IntArray, bytes]] = {}


def all_groups(n: int, k: int) -> IntArray:
    """All ``n**k`` ordered groups, shape ``(n**k, k)``, lexicographic, read-only and cached.

    The cached array is checked against a private copy of its bytes on every fetch and
    rebuilt if user code managed to write into it.

    >>> all_groups(2, 2).tolist()
    [[0, 0], [0, 1], [1, 0], [1, 1]]
    >>> all_groups(2, 2).flags.writeable
    False
    """
    key = (n, k)
    cached = _GROUPS.get(key)
    if cached is None or cached[0].tobytes() != cached[1]:
        pristine = enumerate_groups(n, k)
        cached = (frozen(pristine), pristine.tobytes())
        _GROUPS[key] = cached
    return cached[0]


def mutated_detail(changed: list[str], how: str) -> str:
    """The message of a ``mutated-input`` fault: which inputs were written, and how.

    >>> mutated_detail(["logits", "rewards"], "in place").split(".")[0]
    'wrote into its inputs logits and rewards (in place)'
    """
    which = ("input " if len(changed) == 1 else "inputs ") + " and ".join(changed)
    return (
        f"wrote into its {which} ({how}). An estimator must not change its arguments: "
        "copy before modifying (e.g. rewards = rewards - baseline, not rewards -= baseline)"
    )


LEAVE_ONE_OUT_HINT = (
    "at k = 1 a group has no other sample, so a leave-one-out baseline (the mean of the "
    "other k - 1 rewards) is 0/0: leave-one-out needs k >= 2; leave k = 1 out of group_sizes "
    "(--group-sizes 2,3,4 on the command line), or give k = 1 a baseline of its own"
)
"""The hint of a non-finite result at ``k = 1``, where leave-one-out baselines divide by zero."""


class EstimatorFault(Exception):
    """The estimator misbehaved on a concrete input (raised, bad output, mutation, ...).

    ``kind`` is one of :data:`FAULT_KINDS`; ``detail`` says what happened; ``logits``,
    ``samples`` and ``rewards`` are the arguments of the offending call (for a batched
    call narrowed to the offending row where one can be identified), and ``group`` the
    fourth argument of a multi-prompt call (``None`` otherwise).
    """

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        logits: FloatArray,
        samples: IntArray,
        rewards: FloatArray,
        batched_call: bool,
        hint: str = "",
        group: Any = None,
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.logits = np.array(logits, dtype=np.float64)
        self.samples = np.array(samples, dtype=np.int64)
        self.rewards = np.array(rewards, dtype=np.float64)
        self.batched_call = batched_call
        self.hint = hint
        self.group = None if group is None else np.array(group, dtype=np.int64)


_SHAPE_WORDS = ("shape", "dimension", "axis", "index", "broadcast", "ndim", "(b, k)", "size")


def _looks_like_shape_trouble(err: UserCodeError) -> bool:
    text = err.text.lower()
    return err.is_instance(IndexError) or any(word in text for word in _SHAPE_WORDS)


def _mentions_read_only(err: UserCodeError) -> bool:
    return err.is_instance(ValueError) and "read-only" in err.text


BFLOAT16_EPS = 2.0**-7
"""Epsilon of bfloat16 (8 significant bits), for tensors and arrays of that dtype."""


def _to_numpy(raw: Any) -> tuple[Any, float | None]:
    """``raw`` as an ndarray and, for bfloat16, its epsilon (user code runs here)."""
    eps: float | None = None
    detach = getattr(raw, "detach", None)
    if callable(detach) and hasattr(raw, "cpu"):  # a torch tensor
        tensor = detach().cpu()
        if "bfloat16" in str(getattr(tensor, "dtype", "")):  # NumPy has no bfloat16
            tensor, eps = tensor.float(), BFLOAT16_EPS
        raw = tensor.numpy()
    if isinstance(raw, np.ma.MaskedArray) and bool(np.ma.getmaskarray(raw).any()):
        raise _MaskedOutput
    arr = np.asarray(raw).copy() if isinstance(raw, np.ndarray) else np.asarray(raw)
    if arr.dtype.name == "bfloat16":  # ml_dtypes (JAX) bfloat16 arrays
        arr, eps = arr.astype(np.float32), BFLOAT16_EPS
    return arr, eps


class _MaskedOutput(Exception):
    pass


def _kind_text(raw: Any) -> str:
    return type_name(type(raw))


def coerce(raw: Any) -> tuple[Any, str, float]:
    """``(array, "", eps)`` for a floating result, or ``(None, reason, 0.0)``: never raises.

    Accepts float16/32/64 arrays, lists and tensors (bfloat16 ones too, judged with
    bfloat16's epsilon); refuses ``None``, integer and bool dtypes (a gradient must be
    floating point), complex and object dtypes, and objects whose conversion raises.

    >>> coerce([1.0, 2.0])[0].tolist()
    [1.0, 2.0]
    >>> coerce(np.arange(2))[1][:49]
    'returned an array of dtype int64 (type=ndarray): '
    """
    if raw is None:
        return None, "returned None", 0.0
    eps: float | None = None
    if type(raw) is np.ndarray:
        arr = raw
    else:
        try:
            arr, eps = call_user(_to_numpy, raw)
        except UserCodeError as err:
            if err.is_instance(_MaskedOutput):
                return None, (
                    f"returned a masked array ({_kind_text(raw)}) with masked entries; the "
                    "checker needs a value for every coordinate"
                ), 0.0
            return None, (
                f"returned {_kind_text(raw)} whose conversion to a NumPy array raised {err.text}"
            ), 0.0
    kind = arr.dtype.kind
    if kind == "f":
        return arr, "", output_eps(arr.dtype) if eps is None else eps
    if kind in "iub":
        return None, (
            f"returned an array of dtype {arr.dtype} (type={_kind_text(raw)}): a gradient must "
            "be floating point (float64, float32 or float16); integer and bool outputs lose "
            "the gradient"
        ), 0.0
    if kind == "O":
        shown = safe_text(raw, limit=120)
        return None, (
            f"returned {_kind_text(raw)} {shown}, which NumPy can only hold as an object array; "
            "expected real numbers (a float64/float32 array, a list of floats or a tensor)"
        ), 0.0
    return None, (
        f"returned an array of dtype {arr.dtype} (type={_kind_text(raw)}); expected real "
        "numbers (float64, float32, or a list of floats)"
    ), 0.0


def output_eps(dtype: np.dtype[Any]) -> float:
    """Round-off unit of a floating output dtype: its epsilon, at least float64's.

    >>> output_eps(np.dtype(np.float32)) > output_eps(np.dtype(np.float64))
    True
    """
    eps = _EPS.get(dtype)
    if eps is None:
        eps = max(float(np.finfo(dtype).eps), EPS64) if dtype.kind == "f" else EPS64
        _EPS[dtype] = eps
    return eps


_EPS: dict[np.dtype[Any], float] = {}


class _Call:
    """The three (frozen) arguments of one call and private copies to verify them against.

    The copies are kept as ``bytes``: comparing bytes is a ``memcmp``, an order of
    magnitude cheaper than ``np.array_equal`` on the small arrays of the hot path, and
    exact to the bit (a write of ``-0.0`` over ``0.0`` is a write).
    """

    __slots__ = ("logits", "private", "rewards", "samples")

    def __init__(self, logits: FloatArray, samples: IntArray, rewards: FloatArray) -> None:
        self.logits, self.samples, self.rewards = logits, samples, rewards
        self.private = (logits.tobytes(), samples.tobytes(), rewards.tobytes())

    def changed(self) -> list[str]:
        now = (self.logits, self.samples, self.rewards)
        return [
            name
            for name, a, saved in zip(("logits", "samples", "rewards"), now, self.private, strict=True)
            if a.tobytes() != saved
        ]

    def original(self, name: str) -> Any:
        """The input ``name`` as it was before the call (a fresh writeable array)."""
        i = ("logits", "samples", "rewards").index(name)
        a = (self.logits, self.samples, self.rewards)[i]
        return np.frombuffer(self.private[i], dtype=a.dtype).reshape(a.shape).copy()


class GuardedEstimator:
    """A user estimator behind a guard: batched in, ``(B, n)`` float64 out, or :class:`EstimatorFault`.

    ``calls`` counts calls into user code and ``user_seconds`` the time spent inside it
    (so that the checker's own overhead can be measured against it).
    """

    def __init__(self, fn: Callable[..., Any], *, batched: bool) -> None:
        self.fn = fn
        self.batched = batched
        self.calls = 0
        self.user_seconds = 0.0
        self._recent: list[_Call] = []  # inputs of the last calls, for writes made later
        self._fd1 = DescriptorCapture(1)
        self._capturing = False

    @contextlib.contextmanager
    def _no_output(
        self, logits: Any, samples: Any, rewards: Any, group: Any = None, *, report: bool = True
    ) -> Iterator[None]:
        """Run calls into user code; anything they write to standard output or ``sys.stderr`` is a ``printed`` fault.

        As for a sequence loss (:class:`properties.sequence.evaluation.Sandbox`): ``print``
        and ``os.write(1, ...)`` alike, since standard output is the caller's; a fault the
        calls raised comes first.  Warnings are recorded, not printed, and do not count.
        Re-entrant: an inner block adds nothing.  With ``report=False`` (a diagnosis
        re-running a call already made) the output is dropped.
        """
        if self._capturing:
            yield
            return
        out, err = io.StringIO(), io.StringIO()
        self._capturing = True
        try:
            with (
                self._fd1,
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
                warnings.catch_warnings(record=True),  # recorded, not printed: they do not count
                kept_torch_modes(),
            ):
                yield
        finally:
            self._capturing = False
        printed = out.getvalue() + err.getvalue() + self._fd1.text
        if printed and report:
            raise EstimatorFault(
                "printed",
                f"printed {safe_text(printed, limit=200)} in its calls; the checker calls it on "
                "thousands of groups, so an estimator must not print (log outside it, or remove "
                "the debugging output)",
                logits=logits,
                samples=samples,
                rewards=rewards,
                batched_call=self.batched,
                group=group,
            )

    # -- faults ---------------------------------------------------------------------
    def _fault(
        self,
        kind: str,
        detail: str,
        logits: FloatArray,
        samples: IntArray,
        rewards: FloatArray,
        *,
        hint: str = "",
        batched_call: bool | None = None,
    ) -> EstimatorFault:
        return EstimatorFault(
            kind,
            detail,
            logits=logits,
            samples=samples,
            rewards=rewards,
            batched_call=self.batched if batched_call is None else batched_call,
            hint=hint,
        )

    def _raised(
        self, err: UserCodeError, logits: FloatArray, samples: IntArray, rewards: FloatArray
    ) -> EstimatorFault:
        """The fault for an exception from user code (a confirmed write is ``mutated-input``)."""
        if _mentions_read_only(err):
            mutation = self._confirm_write(logits, samples, rewards, err)
            if mutation is not None:
                return mutation
        return self._fault(
            err.kind,
            err.describe,
            logits,
            samples,
            rewards,
            hint=self._shape_hint() if err.kind == "raised" and _looks_like_shape_trouble(err) else "",
        )

    def _shape_hint(self) -> str:
        if self.batched:
            return (
                "checked as batched (samples/rewards of shape (B, k)); if your estimator takes "
                "one group ((k,) in, (n,) out), pass batched=False"
            )
        return (
            "checked per group (samples/rewards of shape (k,)); if your estimator takes "
            "(B, k) batches, pass batched=True"
        )

    # -- one call into user code ---------------------------------------------------------
    def _invoke(self, logits: FloatArray, samples: IntArray, rewards: FloatArray) -> Any:
        self.calls += 1
        start = time.perf_counter()
        try:
            return call_user(self.fn, logits, samples, rewards)
        except UserCodeError as err:
            raise self._raised(err, logits, samples, rewards) from None
        finally:
            self.user_seconds += time.perf_counter() - start

    def _quiet_call(self, *args: Any) -> tuple[Any, UserCodeError | None]:
        """Call user code for a diagnosis: ``(result, None)`` or ``(None, the error)``."""
        self.calls += 1
        start = time.perf_counter()
        try:
            with self._no_output(*args[:3], report=False):
                return call_user(self.fn, *args), None
        except UserCodeError as err:
            return None, err
        finally:
            self.user_seconds += time.perf_counter() - start

    # -- writes into the inputs -------------------------------------------------------------
    def _confirm_write(
        self, logits: FloatArray, samples: IntArray, rewards: FloatArray, err: UserCodeError
    ) -> EstimatorFault | None:
        """A ``mutated-input`` fault if the read-only error was really a write, else ``None``.

        Re-runs the call on writeable copies: a copy that changes, or (for a write that
        keeps the values, say ``rewards -= 0``) the smallest set of inputs that, made
        writeable, lets the call through, confirms the write and names the input.
        """
        originals = {"logits": logits, "samples": samples, "rewards": rewards}
        copies = {name: np.array(a, copy=True) for name, a in originals.items()}
        _, again = self._quiet_call(copies["logits"], copies["samples"], copies["rewards"])
        changed = [
            name
            for name, a in originals.items()
            if copies[name].shape != a.shape or not np.array_equal(copies[name], a, equal_nan=True)
        ]
        if not changed and again is None:
            for size in (1, 2, 3):
                for subset in itertools.combinations(originals, size):
                    if self._passes_with_writeable(subset, originals):
                        changed = list(subset)
                        break
                if changed:
                    break
        if not changed:
            return None  # the text said "read-only", but no write was seen: not a write
        return self._mutation(changed, f"the write raised {err.text}", logits, samples, rewards)

    def _passes_with_writeable(self, writable: tuple[str, ...], originals: dict[str, Any]) -> bool:
        """Whether the call goes through when only ``writable`` are writeable copies."""
        args = {
            name: (np.array(a, copy=True) if name in writable else a)
            for name, a in originals.items()
        }
        _, err = self._quiet_call(args["logits"], args["samples"], args["rewards"])
        return err is None

    def _mutation(
        self,
        changed: list[str],
        how: str,
        logits: FloatArray,
        samples: IntArray,
        rewards: FloatArray,
    ) -> EstimatorFault:
        return self._fault("mutated-input", mutated_detail(changed, how), logits, samples, rewards)

    def _verify(self, call: _Call) -> None:
        """Raise ``mutated-input`` if an input differs from its private copy after the call.

        The inputs of the last :data:`KEPT_CALLS` calls are verified too: an estimator that
        keeps a reference to an input and writes into it during a later call is caught.
        """
        for earlier in self._recent:
            if earlier is not call and earlier.changed():
                self._recent = []
                _GROUPS.clear()
                which = earlier.changed()
                raise self._mutation(
                    which,
                    "during a later call: it kept a reference to an input and wrote into it "
                    "afterwards (the checker compares the inputs of recent calls with private "
                    "copies)",
                    call.original("logits"),
                    call.original("samples"),
                    call.original("rewards"),
                )
        self._recent = [*self._recent[-(KEPT_CALLS - 1) :], call]
        changed = call.changed()
        if not changed:
            return
        _GROUPS.clear()  # a cached group table may be what was written into
        logits: Any = call.original("logits")
        samples: Any = call.original("samples")
        rewards: Any = call.original("rewards")
        if not self.batched and samples.ndim == 2:  # find the group whose call wrote
            for i in range(samples.shape[0]):
                one = _Call(frozen(logits), frozen(samples[i]), frozen(rewards[i]))
                _, _err = self._quiet_call(one.logits, one.samples, one.rewards)
                if one.changed():
                    logits, samples, rewards = logits, samples[i], rewards[i]
                    changed = one.changed()
                    break
        raise self._mutation(
            changed,
            "the inputs are read-only, yet they differed from the checker's private copies "
            "after the call: a write through torch.from_numpy, ctypes or a reference kept from "
            "an earlier call",
            logits,
            samples,
            rewards,
        )

    # -- outputs -------------------------------------------------------------------
    def _check_array(
        self,
        raw: Any,
        shape: tuple[int, ...],
        logits: FloatArray,
        samples: IntArray,
        rewards: FloatArray,
    ) -> tuple[FloatArray, float]:
        start = time.perf_counter()
        arr, reason, eps = coerce(raw)  # may run user code (__array__, tensor conversion)
        self.user_seconds += time.perf_counter() - start
        if arr is None:
            raise self._fault(
                "returned-none" if raw is None else "bad-type", reason, logits, samples, rewards
            )
        if arr.shape != shape:
            what = "" if type(raw) is np.ndarray else f" (type={_kind_text(raw)})"
            raise self._fault(
                "wrong-shape",
                f"returned shape {arr.shape}{what} but expected {shape} (n={logits.size} answers"
                + (f", B={shape[0]} groups)" if self.batched else ")"),
                logits,
                samples,
                rewards,
                hint=self._shape_hint(),
            )
        out: FloatArray = np.array(arr, dtype=np.float64, copy=True)
        return out, eps

    # -- the batched interface used by the checker ------------------------------
    def __call__(
        self, logits: FloatArray, samples: IntArray, rewards: FloatArray
    ) -> tuple[FloatArray, float]:
        """``(B, n)`` float64 estimates for the groups ``samples`` and the output's round-off unit.

        The inputs must be read-only (:func:`frozen`); they are verified unchanged after
        the call(s).
        """
        with self._no_output(logits, samples, rewards):
            return self._checked_call(logits, samples, rewards)

    def _checked_call(
        self, logits: FloatArray, samples: IntArray, rewards: FloatArray
    ) -> tuple[FloatArray, float]:
        call = _Call(logits, samples, rewards)
        n = logits.size
        b = samples.shape[0]
        if self.batched:
            try:
                raw = self._invoke(logits, samples, rewards)
            except EstimatorFault as fault:
                if fault.kind in ("raised", "exited") and b > 1:
                    self._narrow(fault, logits, samples, rewards)
                self._verify(call)
                raise
            self._verify(call)
            return self._check_array(raw, (b, n), logits, samples, rewards)
        g, eps = self._per_group(logits, samples, rewards, call)
        self._verify(call)
        return g, eps

    def _per_group(
        self, logits: FloatArray, samples: IntArray, rewards: FloatArray, call: _Call
    ) -> tuple[FloatArray, float]:
        """One user call per row (the hot loop of the per-group protocol)."""
        n = logits.size
        shape = (n,)
        fn = self.fn
        xs, rs = list(samples), list(rewards)
        g = np.empty((len(xs), n))
        eps = EPS64
        perf = time.perf_counter
        inside = 0.0
        i = 0
        try:
            for i in range(len(xs)):
                start = perf()
                try:
                    raw = fn(logits, xs[i], rs[i])
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:
                    inside += perf() - start
                    err = UserCodeError(exc)
                    self._verify(call)
                    raise self._raised(err, logits, xs[i], rs[i]) from None
                inside += perf() - start
                if type(raw) is np.ndarray and raw.dtype == _F64 and raw.shape == shape:
                    g[i] = raw
                else:
                    values, row_eps = self._check_array(raw, shape, logits, xs[i], rs[i])
                    g[i] = values
                    eps = max(eps, row_eps)
        finally:
            self.calls += i + 1
            self.user_seconds += inside
        return g, eps

    def _narrow(
        self, fault: EstimatorFault, logits: FloatArray, samples: IntArray, rewards: FloatArray
    ) -> None:
        """Point ``fault`` at the first single group (a batch of one) that also raises."""
        for i in range(samples.shape[0]):
            _, err = self._quiet_call(logits, samples[i : i + 1], rewards[i : i + 1])
            if err is not None:
                fault.samples = np.array(samples[i : i + 1])
                fault.rewards = np.array(rewards[i : i + 1])
                return

    def non_finite(
        self, g: FloatArray, logits: FloatArray, samples: IntArray, rewards: FloatArray
    ) -> EstimatorFault:
        """The fault for a result ``g`` (from ``samples``/``rewards``) with non-finite values."""
        finite_rows = np.isfinite(g).all(axis=1)
        if finite_rows.all():
            return self._fault(
                "non-finite",
                f"returned values so large (up to {float(np.abs(g).max()):.3g}) that E[g] "
                "overflows float64",
                logits,
                samples,
                rewards,
            )
        row = int(np.argmin(finite_rows))
        return self._fault(
            "non-finite",
            f"returned non-finite values {g[row].tolist()!r} for the group samples="
            f"{samples[row].tolist()!r}, rewards={rewards[row].tolist()!r}",
            logits,
            *self._row(samples, rewards, row),
            hint=LEAVE_ONE_OUT_HINT if samples.shape[-1] == 1 else "",
        )

    def _row(self, samples: IntArray, rewards: FloatArray, row: int) -> tuple[IntArray, FloatArray]:
        """The arguments of a call on one row: ``(1, k)`` for a batched estimator, ``(k,)`` per group."""
        if self.batched and samples.ndim == 2:
            return samples[row : row + 1], rewards[row : row + 1]
        return samples[row], rewards[row]

    @staticmethod
    def _moved(a: FloatArray, b: FloatArray, eps: float) -> tuple[bool, int]:
        """Whether rows of ``a`` and ``b`` differ beyond :data:`DETERMINISM_ULPS`, and the worst row."""
        if np.array_equal(a, b):
            return False, -1
        scale = float(np.abs(a).max(initial=0.0))
        allowed = DETERMINISM_ULPS * eps * (np.abs(a) + np.abs(b) + scale)
        excess = np.abs(a - b) - allowed
        excess[np.isnan(excess)] = np.inf
        if np.all(excess <= 0):
            return False, -1
        return True, int(np.argmax(excess.max(axis=1)))

    def check_deterministic(
        self,
        logits: FloatArray,
        samples: IntArray,
        rewards: FloatArray,
        first: FloatArray,
        eps: float,
    ) -> None:
        """Call again on the same inputs; raise ``nondeterministic`` if the result moved."""
        first = first.copy()  # the estimator may hand back (and then reuse) its own buffer
        again, _ = self(logits, samples, rewards)
        moved, row = self._moved(first, again, eps)
        if not moved:
            return
        raise self._fault(
            "nondeterministic",
            f"returned {first[row].tolist()!r} and then {again[row].tolist()!r} for the same "
            f"inputs samples={samples[row].tolist()!r}, rewards={rewards[row].tolist()!r}. "
            "The exact checker needs a deterministic function of (logits, samples, rewards); "
            "an estimator with its own randomness needs a sampling check "
            "(the statistical tier, properties.stats)",
            logits,
            *self._row(samples, rewards, row),
        )

    def check_rows_independent(
        self,
        logits: FloatArray,
        samples: IntArray,
        rewards: FloatArray,
        first: FloatArray,
        eps: float,
        *,
        seed: int,
    ) -> None:
        """Batched only: each row's output must not depend on the other rows of the batch.

        Calls the estimator on the rows shuffled, on a batch of one row and on a small
        sub-batch, and compares each row with the full batch's (within
        :data:`DETERMINISM_ULPS`); raises ``rows-not-independent`` naming the smallest
        batch that disagrees, unless repeating that batch or the full one gives other
        values (then ``nondeterministic``).
        """
        b = samples.shape[0]
        if not self.batched or b < 2:
            return
        rng = np.random.default_rng(seed)
        order = rng.permutation(b)
        pick = np.sort(order[: min(SUB_BATCH_ROWS, b - 1)])
        batches = [order[:1], pick, order]  # smallest first: the one reported
        for rows in batches:
            x, r = frozen(samples[rows]), frozen(rewards[rows])
            got, _ = self(logits, x, r)
            moved, worst = self._moved(first[rows], got, eps)
            if not moved:
                continue
            # the same inputs again: if they give other values, it is nondeterminism
            self.check_deterministic(logits, x, r, got, eps)
            self.check_deterministic(logits, samples, rewards, first, eps)
            where = "shuffled" if rows.size == b else f"a batch of {rows.size} (rows {rows.tolist()})"
            row = int(rows[worst])
            raise self._fault(
                "rows-not-independent",
                f"returned {got[worst].tolist()!r} for the group samples="
                f"{samples[row].tolist()!r}, rewards={rewards[row].tolist()!r} in {where}, but "
                f"{first[row].tolist()!r} for it in the full batch of {b} groups: a row's output "
                "depends on the other rows (a baseline, normalisation or clipping statistic over "
                "the whole batch, or a special case for the batch the checker sends). The exact "
                "checker computes E[g] for independent groups, so each row must be a function "
                "of its own group only",
                logits,
                x,
                r,
                hint=(
                    "if your estimator pools statistics across the groups of a batch, its "
                    "expectation is not the per-group one; compute the baseline per group "
                    "(axis=-1), or check it per group (batched=False)"
                ),
            )


__all__ = [
    "BFLOAT16_EPS",
    "DETERMINISM_ULPS",
    "EPS64",
    "FAULT_KINDS",
    "KEPT_CALLS",
    "LEAVE_ONE_OUT_HINT",
    "SUB_BATCH_ROWS",
    "EstimatorFault",
    "GuardedEstimator",
    "all_groups",
    "coerce",
    "frozen",
    "output_eps",
]
