"""Calling a user's estimator without trusting it (private to :mod:`properties.checker`).

:class:`GuardedEstimator` turns any user callable, batched or per-group, into a
batched function ``(logits (n,), samples (B, k), rewards (B, k)) -> (B, n) float64``
that either returns a finite array or raises :class:`EstimatorFault`, which names
what went wrong and the exact inputs that triggered it.  It never lets an
exception from user code escape, and it never hands the user an array the user
could change: every input is a read-only array (a write raises inside the user's
code, and the checker then re-runs the call on writeable copies to name the
input that was written).
"""

from __future__ import annotations

import itertools
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from impl.exact import enumerate_groups
from impl.types import FloatArray, IntArray

EPS64 = float(np.finfo(np.float64).eps)
"""Machine epsilon of float64: the round-off unit of the exact engine itself."""

DETERMINISM_ULPS = 16.0
"""Two calls on identical inputs may differ by this many ulps of the output dtype
(reduction order in threaded BLAS) and still count as deterministic."""

FAULT_KINDS = (
    "raised",
    "returned-none",
    "bad-type",
    "wrong-shape",
    "non-finite",
    "nondeterministic",
    "mutated-input",
)
"""The ways an estimator call can fail, as reported in ``EstimatorReport.error``."""

_GROUPS: dict[tuple[int, int], IntArray] = {}


def all_groups(n: int, k: int) -> IntArray:
    """All ``n**k`` ordered groups, shape ``(n**k, k)``, lexicographic, read-only and cached.

    >>> all_groups(2, 2).tolist()
    [[0, 0], [0, 1], [1, 0], [1, 1]]
    >>> all_groups(2, 2).flags.writeable
    False
    """
    key = (n, k)
    out = _GROUPS.get(key)
    if out is None:
        base = enumerate_groups(n, k)
        base.setflags(write=False)
        out = base.view()  # a view of a read-only base cannot be made writeable again
        out.setflags(write=False)
        _GROUPS[key] = out
    return out


class EstimatorFault(Exception):
    """The estimator misbehaved on a concrete input (raised, bad output, mutation, ...).

    ``kind`` is one of :data:`FAULT_KINDS`; ``detail`` says what happened; ``logits``,
    ``samples`` and ``rewards`` are the arguments of the offending call (for a batched
    call narrowed to the offending row where one can be identified).
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
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.logits = np.array(logits, dtype=np.float64)
        self.samples = np.array(samples, dtype=np.int64)
        self.rewards = np.array(rewards, dtype=np.float64)
        self.batched_call = batched_call
        self.hint = hint


def _exception_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {last.filename}:{last.lineno} in {last.name})"
    return text


_SHAPE_WORDS = ("shape", "dimension", "axis", "index", "broadcast", "ndim", "(b, k)", "size")


def _looks_like_shape_trouble(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, IndexError) or any(word in text for word in _SHAPE_WORDS)


def _is_write_to_read_only(exc: BaseException) -> bool:
    return isinstance(exc, ValueError) and "read-only" in str(exc)


def _coerce(raw: Any) -> tuple[Any, str]:
    """``raw`` as an ndarray, or ``(None, reason)``; converts torch/jax tensors and lists."""
    if raw is None:
        return None, "returned None"
    detach = getattr(raw, "detach", None)
    if callable(detach) and hasattr(raw, "cpu"):  # a torch tensor
        try:
            raw = detach().cpu().numpy()
        except Exception as exc:
            return (
                None,
                f"returned a tensor that cannot be converted to NumPy: {_exception_text(exc)}",
            )
    try:
        arr = np.asarray(raw)
    except Exception as exc:
        return None, f"returned {type(raw).__name__} that is not an array: {_exception_text(exc)}"
    if arr.dtype.kind not in "fiub":
        return None, (
            f"returned an array of dtype {arr.dtype} (type={type(raw).__name__}); "
            "expected real numbers (float64, float32, or a list of floats)"
        )
    return arr, ""


def output_eps(dtype: np.dtype[Any]) -> float:
    """Round-off unit of an output dtype: its epsilon for floats, float64's otherwise.

    >>> output_eps(np.dtype(np.float32)) > output_eps(np.dtype(np.float64))
    True
    """
    eps = _EPS.get(dtype)
    if eps is None:
        eps = max(float(np.finfo(dtype).eps), EPS64) if dtype.kind == "f" else EPS64
        _EPS[dtype] = eps
    return eps


_EPS: dict[np.dtype[Any], float] = {}


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

    # -- one call into user code ------------------------------------------------
    def _invoke(self, logits: FloatArray, samples: IntArray, rewards: FloatArray) -> Any:
        self.calls += 1
        start = time.perf_counter()
        try:
            out = self.fn(logits, samples, rewards)
            self.user_seconds += time.perf_counter() - start
            return out
        except Exception as exc:
            self.user_seconds += time.perf_counter() - start
            if _is_write_to_read_only(exc):
                raise self._mutation_fault(logits, samples, rewards, exc) from None
            raise EstimatorFault(
                "raised",
                f"raised {_exception_text(exc)}",
                logits=logits,
                samples=samples,
                rewards=rewards,
                batched_call=self.batched,
                hint=self._shape_hint() if _looks_like_shape_trouble(exc) else "",
            ) from None

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

    def _mutation_fault(
        self, logits: FloatArray, samples: IntArray, rewards: FloatArray, exc: BaseException
    ) -> EstimatorFault:
        originals = {"logits": logits, "samples": samples, "rewards": rewards}
        copies = {name: np.array(a, copy=True) for name, a in originals.items()}
        try:
            self.fn(copies["logits"], copies["samples"], copies["rewards"])
        except Exception:
            pass  # the writeable re-run only serves to name the input that was written
        changed = [
            name
            for name, a in originals.items()
            if copies[name].shape != a.shape or not np.array_equal(copies[name], a, equal_nan=True)
        ]
        if not changed:
            # a write that left the values as they were (say rewards -= 0): find the smallest
            # set of inputs which, made writeable, lets the call through
            for size in (1, 2, 3):
                for subset in itertools.combinations(originals, size):
                    if not self._write_fails_without(subset, originals):
                        changed = list(subset)
                        break
                if changed:
                    break
        which = (
            (("input " if len(changed) == 1 else "inputs ") + " and ".join(changed))
            if changed
            else "inputs"
        )
        return EstimatorFault(
            "mutated-input",
            f"wrote into its {which} (the checker passes read-only arrays; the write "
            f"raised {_exception_text(exc)}). An estimator must not change its arguments: "
            "copy before modifying (e.g. rewards = rewards - baseline, not rewards -= baseline)",
            logits=logits,
            samples=samples,
            rewards=rewards,
            batched_call=self.batched,
        )

    def _write_fails_without(self, writable: tuple[str, ...], originals: dict[str, Any]) -> bool:
        """Whether the call still fails on a read-only input when ``writable`` are writeable copies."""
        args = {
            name: (np.array(a, copy=True) if name in writable else a)
            for name, a in originals.items()
        }
        try:
            self.fn(args["logits"], args["samples"], args["rewards"])
        except Exception as exc:
            return _is_write_to_read_only(exc)
        return False

    def _check_array(
        self,
        raw: Any,
        shape: tuple[int, ...],
        logits: FloatArray,
        samples: IntArray,
        rewards: FloatArray,
    ) -> tuple[FloatArray, float]:
        arr, reason = _coerce(raw)
        if arr is None:
            raise EstimatorFault(
                "returned-none" if raw is None else "bad-type",
                reason,
                logits=logits,
                samples=samples,
                rewards=rewards,
                batched_call=self.batched,
            )
        if arr.shape != shape:
            raise EstimatorFault(
                "wrong-shape",
                f"returned shape {arr.shape} but expected {shape} (n={logits.size} answers"
                + (f", B={shape[0]} groups)" if self.batched else ")"),
                logits=logits,
                samples=samples,
                rewards=rewards,
                batched_call=self.batched,
                hint=self._shape_hint(),
            )
        out: FloatArray = arr if arr.dtype == np.float64 else arr.astype(np.float64)
        return out, output_eps(arr.dtype)

    # -- the batched interface used by the checker ------------------------------
    def __call__(
        self, logits: FloatArray, samples: IntArray, rewards: FloatArray
    ) -> tuple[FloatArray, float]:
        """``(B, n)`` float64 estimates for the groups ``samples`` and the output's round-off unit.

        All three inputs must already be read-only arrays.
        """
        n = logits.size
        b = samples.shape[0]
        if self.batched:
            try:
                raw = self._invoke(logits, samples, rewards)
            except EstimatorFault as fault:
                if fault.kind == "raised" and b > 1:
                    self._narrow(fault, logits, samples, rewards)
                raise
            g, eps = self._check_array(raw, (b, n), logits, samples, rewards)
        else:
            g = np.empty((b, n))
            eps = EPS64
            for i in range(b):
                x, r = samples[i], rewards[i]
                raw = self._invoke(logits, x, r)
                values, row_eps = self._check_array(raw, (n,), logits, x, r)
                g[i] = values
                eps = max(eps, row_eps)
        return g, eps

    def _narrow(
        self, fault: EstimatorFault, logits: FloatArray, samples: IntArray, rewards: FloatArray
    ) -> None:
        """Point ``fault`` at the first single group (a batch of one) that also raises."""
        for i in range(samples.shape[0]):
            try:
                self.fn(logits, samples[i : i + 1], rewards[i : i + 1])
            except Exception:
                fault.samples = np.array(samples[i : i + 1])
                fault.rewards = np.array(rewards[i : i + 1])
                return

    def non_finite(
        self, g: FloatArray, logits: FloatArray, samples: IntArray, rewards: FloatArray
    ) -> EstimatorFault:
        """The fault for a result ``g`` (from ``samples``/``rewards``) with non-finite values."""
        finite_rows = np.isfinite(g).all(axis=1)
        if finite_rows.all():
            return EstimatorFault(
                "non-finite",
                f"returned values so large (up to {float(np.abs(g).max()):.3g}) that E[g] "
                "overflows float64",
                logits=logits,
                samples=samples,
                rewards=rewards,
                batched_call=self.batched,
            )
        row = int(np.argmin(finite_rows))
        return EstimatorFault(
            "non-finite",
            f"returned non-finite values {g[row].tolist()!r} for the group samples="
            f"{samples[row].tolist()!r}, rewards={rewards[row].tolist()!r}",
            logits=logits,
            samples=samples[row],
            rewards=rewards[row],
            batched_call=False,
        )

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
        if np.array_equal(again, first):
            return
        scale = float(np.abs(first).max(initial=0.0))
        allowed = DETERMINISM_ULPS * eps * (np.abs(first) + np.abs(again) + scale)
        diff = np.abs(again - first)
        if np.all(diff <= allowed):
            return
        row = int(np.argmax((diff - allowed).max(axis=1)))
        raise EstimatorFault(
            "nondeterministic",
            f"returned {first[row].tolist()!r} and then {again[row].tolist()!r} for the same "
            f"inputs samples={samples[row].tolist()!r}, rewards={rewards[row].tolist()!r}. "
            "The exact checker needs a deterministic function of (logits, samples, rewards); "
            "an estimator with its own randomness needs a sampling check "
            "(the statistical tier, properties.stats)",
            logits=logits,
            samples=samples[row],
            rewards=rewards[row],
            batched_call=False,
        )


__all__ = [
    "DETERMINISM_ULPS",
    "EPS64",
    "FAULT_KINDS",
    "EstimatorFault",
    "GuardedEstimator",
    "all_groups",
    "output_eps",
]
