r"""The multi-prompt protocol of the one-step checker (private to :mod:`properties.onestep.checker`).

With ``num_prompts`` the estimator is called as real RL code pools a batch:
``fn(logits, samples, rewards, group)`` with ``P`` prompts of ``k`` responses each,

* ``logits`` float64 ``(P*k, n)``: row ``j`` holds the logits of row ``j``'s prompt (the
  ``k`` rows of one prompt are identical);
* ``samples`` int64 ``(P*k,)``, ``rewards`` float64 ``(P*k,)``;
* ``group`` int64 ``(P*k,)`` ``= np.repeat(np.arange(P), k)`` (prompt-major, contiguous,
  as a library's ``view(-1, k)`` assumes),

returning ``(P*k, n)``: row ``j`` is row ``j``'s contribution to the gradient with respect
to the logits of its own prompt, so the estimate for prompt ``p`` is the sum of its rows.
Each prompt ``p`` has its own problem :math:`(\theta_p, s_p)` (the same ``n`` for all
prompts of one problem) and its rows are iid from :math:`\mathrm{softmax}(\theta_p)`.

The target is the gradient of the **mean** objective over prompts,
:math:`J = \frac1P\sum_p J_p`: prompt ``p``'s coordinates should have expectation
:math:`\nabla J_p / P` (the RL objective is an expectation over prompts; a textbook loss
averaging over all ``P*k`` rows is then unbiased).  :math:`E[g]` is exact: the sum over
all :math:`n^{kP}` joint batches (one call each; ``n`` is capped so that at most
:data:`MAX_BATCHES_PER_PROBLEM` calls are made per problem).  A scale constant is measured
per key ``(k, P)``.

>>> from impl.catalogue import get_multi_prompt
>>> ev = evaluate_prompts(PromptsGuard(get_multi_prompt("pooled-reinforce-mean").fn),
...                       np.zeros((2, 2)), np.array([[0.0, 1.0], [1.0, 3.0]]), 1,
...                       rtol=None, atol=0.0)
>>> ev.mean.tolist() == ev.gradient.tolist() == [[-0.125, 0.125], [-0.25, 0.25]]
True
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from hypothesis import strategies as st

from impl.exact import group_probs
from impl.types import FloatArray, IntArray
from properties.judging.user_code import UserCodeError
from properties.judging.verdict import HINT_MATCH_FLOOR, HINT_MATCH_UNCERTAINTIES
from properties.onestep.guard import (
    EPS64,
    LEAVE_ONE_OUT_HINT,
    EstimatorFault,
    GuardedEstimator,
    _looks_like_shape_trouble,
    _mentions_read_only,
    all_groups,
    coerce,
    frozen,
    mutated_detail,
)
from properties.onestep.problems import (
    BATTERY,
    LARGE_N,
    LOGIT_SHIFTS,
    MAX_N,
    SHIFTED_N,
    Evaluation,
    _large_n_problem,
    _problems_of_size,
    tolerance,
)
from properties.strategies import PolicyProblem

MAX_NUM_PROMPTS = 4
"""Largest ``P`` accepted (as the sequence checker)."""

MAX_BATCHES_PER_PROBLEM = 1024
"""Most joint batches (calls) enumerated for one multi-prompt problem: ``n**(k*P) <= 1024``.

There is no vectorised call in this protocol, so a problem costs one call per joint
batch; ``n`` is capped per ``(k, P)`` to stay under this (``n = 2`` needs ``k*P <= 10``)."""

MAX_SAMPLES_PER_BATCH = 10
"""Largest ``k*P`` accepted (``2**(k*P) <= MAX_BATCHES_PER_PROBLEM``)."""

PROTOCOL_HINT = (
    "checked with the multi-prompt protocol (num_prompts): fn(logits (P*k, n), samples "
    "(P*k,), rewards (P*k,), group (P*k,)) must return (P*k, n), row j being row j's "
    "contribution to the gradient with respect to its own prompt's logits"
)

Key = tuple[int, int]
"""``(k, P)``: what one scale constant is measured for."""

_F64 = np.dtype(np.float64)
_NAMES = ("logits", "samples", "rewards", "group")


def key_text(key: Hashable) -> str:
    """``k=2, P=1`` for a multi-prompt key (``k=2`` for a plain ``k``).

    >>> key_text((2, 1)), key_text(3)
    ('k=2, P=1', 'k=3')
    """
    if isinstance(key, tuple) and len(key) == 2:
        return f"k={key[0]}, P={key[1]}"
    return f"k={key}"


def max_n_for_prompts(k: int, num_prompts: int) -> int:
    """The largest ``n <= MAX_N`` with ``n**(k*P) <= MAX_BATCHES_PER_PROBLEM`` (at least 2).

    >>> [max_n_for_prompts(k, p) for k, p in ((2, 1), (4, 1), (2, 2), (3, 2), (4, 2))]
    [5, 5, 5, 3, 2]
    """
    n = MAX_N
    while n > 2 and n ** (k * num_prompts) > MAX_BATCHES_PER_PROBLEM:
        n -= 1
    return n


def unchecked_n(keys: tuple[Key, ...]) -> tuple[str, ...]:
    """Where :func:`max_n_for_prompts` is below ``MAX_N``: the ``n`` left out, with the reason.

    >>> unchecked_n(((2, 1), (4, 2)))
    ('n=3..5 at k=4, P=2 (n**(k*P) = 6561 joint batches at n=3, over the budget of 1024 calls per problem)',)
    """
    out = []
    for k, num in keys:
        top = max_n_for_prompts(k, num)
        if top >= MAX_N:
            continue
        first = top + 1
        ns = f"n={first}" if first == MAX_N else f"n={first}..{MAX_N}"
        out.append(
            f"{ns} at {key_text((k, num))} (n**(k*P) = {first ** (k * num)} joint batches at "
            f"n={first}, over the budget of {MAX_BATCHES_PER_PROBLEM} calls per problem)"
        )
    return tuple(out)


def prompt_index(num_prompts: int, k: int) -> IntArray:
    """``group``: the prompt of each row, ``np.repeat(np.arange(P), k)``.

    >>> prompt_index(2, 3).tolist()
    [0, 0, 0, 1, 1, 1]
    """
    out: IntArray = np.repeat(np.arange(num_prompts, dtype=np.int64), k)
    return out


# --------------------------------------------------------------------------- evaluation


class PromptsEvaluation(Evaluation):
    """The exact expectation on one multi-prompt problem (``logits``/``scores``/``p`` ``(P, n)``).

    ``mean`` and ``gradient`` are ``(P, n)``: ``gradient[p]`` is :math:`\\nabla J_p / P`;
    ``g`` is ``(n**(k P), P, n)``, the estimate of every prompt for every joint batch;
    ``key`` is ``(k, P)``.
    """

    __slots__ = ("num_prompts",)

    def __init__(
        self,
        logits: FloatArray,
        scores: FloatArray,
        k: int,
        num_prompts: int,
        mean: FloatArray,
        gradient: FloatArray,
        p: FloatArray,
        weights: FloatArray,
        g: FloatArray,
        eps_out: float,
        rtol: float | None,
        atol: float,
    ) -> None:
        super().__init__(logits, scores, k, mean, gradient, p, weights, g, eps_out, rtol, atol)
        self.num_prompts = num_prompts

    @property
    def key(self) -> Key:  # type: ignore[override]
        """``(k, P)``: one scale constant is measured per key."""
        return (self.k, self.num_prompts)

    @property
    def factor_k(self) -> int:
        """``k*P``: the samples in one batch, which the round-off bound scales with."""
        return self.k * self.num_prompts

    @property
    def magnitude(self) -> FloatArray:
        """:math:`E|g|` per coordinate, ``(P, n)``."""
        out: FloatArray = np.tensordot(self.weights, np.abs(self.g), axes=1)
        return out

    def tolerance_at(self, eps_out: float, *, rtol: float | None = None) -> FloatArray:
        """The tolerance of :func:`properties.onestep.problems.tolerance` with ``k*P`` samples.

        The size :math:`S` covers every prompt's scores (a baseline pooled over the batch
        mixes them), the largest output and :math:`|c|\\max|s|`; the smallest probability
        is over all prompts.
        """
        absg = np.abs(self.g)
        largest = float(absg.max()) if absg.size else 0.0
        gg = float(np.vdot(self.gradient, self.gradient))
        if gg > 0.0 and math.isfinite(gg):
            c = abs(float(np.vdot(self.mean, self.gradient)) / gg)
            if c > 1.0 and math.isfinite(c):
                largest = max(largest, c * float(np.max(np.abs(self.scores))))
        out = tolerance(
            self.p.ravel(),
            self.scores.ravel(),
            self.factor_k,
            np.tensordot(self.weights, absg, axes=1).ravel(),
            largest,
            eps_out,
            rtol=rtol,
            atol=self.atol,
            max_logit=float(np.max(np.abs(self.logits))),
        )
        shaped: FloatArray = out.reshape(self.p.shape)
        return shaped


class PromptsGuard(GuardedEstimator):
    """A user estimator of the multi-prompt protocol behind a guard.

    :meth:`run` calls ``fn(logits, samples[i], rewards[i], group)`` for every joint batch
    ``i`` and returns the per-prompt sums of the rows, ``(B, P, n)``, or raises
    :class:`EstimatorFault` naming the call.  All four inputs are read-only views of
    immutable buffers and are compared with private copies after the calls (and those of
    the previous problem too: a reference kept and written later is caught).
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__(fn, batched=False)
        self._earlier: tuple[tuple[Any, ...], tuple[bytes, ...]] | None = None

    def _pfault(self, kind: str, detail: str, args: tuple[Any, ...], hint: str = "") -> EstimatorFault:
        logits, samples, rewards, group = args
        return EstimatorFault(
            kind, detail, logits=logits, samples=samples, rewards=rewards,
            batched_call=False, hint=hint, group=group,
        )

    def _write_fault(self, changed: list[str], how: str, args: tuple[Any, ...]) -> EstimatorFault:
        return self._pfault("mutated-input", mutated_detail(changed, how), args)

    def _raised4(self, err: UserCodeError, args: tuple[Any, ...]) -> EstimatorFault:
        if _mentions_read_only(err):
            copies = tuple(np.array(a, copy=True) for a in args)
            _, again = self._quiet_call(*copies)
            changed = [
                name
                for name, a, c in zip(_NAMES, args, copies, strict=True)
                if c.shape != a.shape or not np.array_equal(c, a, equal_nan=True)
            ]
            if not changed and again is None:
                for size in (1, 2, 3, 4):
                    for subset in itertools.combinations(range(4), size):
                        trial = tuple(
                            np.array(a, copy=True) if i in subset else a for i, a in enumerate(args)
                        )
                        if self._quiet_call(*trial)[1] is None:
                            changed = [_NAMES[i] for i in subset]
                            break
                    if changed:
                        break
            if changed:
                return self._write_fault(changed, f"the write raised {err.text}", args)
        hint = PROTOCOL_HINT if err.kind == "raised" and _looks_like_shape_trouble(err) else ""
        return self._pfault(err.kind, err.describe, args, hint=hint)

    def _output(
        self, raw: Any, shape: tuple[int, int], args: tuple[Any, ...], num_prompts: int, k: int
    ) -> tuple[FloatArray, float]:
        start = time.perf_counter()
        arr, reason, eps = coerce(raw)  # may run user code
        self.user_seconds += time.perf_counter() - start
        if arr is None:
            raise self._pfault("returned-none" if raw is None else "bad-type", reason, args)
        if arr.shape != shape:
            raise self._pfault(
                "wrong-shape",
                f"returned shape {arr.shape} but expected {shape} (P*k = {num_prompts}*{k} rows, "
                f"one per response of the batch, and n={shape[1]} answers)",
                args,
                hint=PROTOCOL_HINT,
            )
        out: FloatArray = np.array(arr, dtype=np.float64, copy=True)
        return out, eps

    def _check_earlier(self, current: tuple[Any, ...], at: tuple[Any, ...]) -> None:
        earlier = self._earlier
        if earlier is None or earlier[0] is current:
            return
        changed = [
            name for name, a, b in zip(_NAMES, earlier[0], earlier[1], strict=True) if a.tobytes() != b
        ]
        if changed:
            self._earlier = None
            raise self._write_fault(
                changed,
                "during a later call: it kept a reference to an input and wrote into it "
                "afterwards (the checker compares the inputs of recent calls with private copies)",
                at,
            )

    def _verify4(self, inputs: tuple[Any, ...], saved: tuple[bytes, ...], count: int) -> None:
        changed = [name for name, a, b in zip(_NAMES, inputs, saved, strict=True) if a.tobytes() != b]
        if not changed:
            return
        logits, xs, rs, group = (
            np.frombuffer(b, dtype=a.dtype).reshape(a.shape).copy() for a, b in zip(inputs, saved, strict=True)
        )
        culprit = (logits, xs[0], rs[0], group)
        for i in range(count):  # the first call that writes, on fresh copies
            args = (frozen(logits), frozen(xs[i]), frozen(rs[i]), frozen(group))
            before = tuple(a.tobytes() for a in args)
            self._quiet_call(*args)
            if any(a.tobytes() != b for a, b in zip(args, before, strict=True)):
                culprit = (logits, xs[i], rs[i], group)
                break
        raise self._write_fault(
            changed,
            "the inputs are read-only, yet they differed from the checker's private copies "
            "after the call: a write through torch.from_numpy, ctypes or a reference kept from "
            "an earlier call",
            culprit,
        )

    def run(
        self,
        logits: FloatArray,
        xs: IntArray,
        rs: FloatArray,
        group: IntArray,
        num_prompts: int,
        k: int,
    ) -> tuple[FloatArray, float]:
        """``(B, P, n)`` per-prompt sums of the rows for every joint batch, and the output's round-off unit."""
        with self._no_output(logits, xs, rs, group):
            return self._run(logits, xs, rs, group, num_prompts, k)

    def _run(
        self,
        logits: FloatArray,
        xs: IntArray,
        rs: FloatArray,
        group: IntArray,
        num_prompts: int,
        k: int,
    ) -> tuple[FloatArray, float]:
        rows, n = logits.shape
        shape = (rows, n)
        count = xs.shape[0]
        inputs = (logits, xs, rs, group)
        saved = tuple(a.tobytes() for a in inputs)
        self._check_earlier(inputs, (logits, xs[0], rs[0], group))
        raw_rows = np.empty((count, rows, n))
        eps = EPS64
        fn = self.fn
        perf = time.perf_counter
        inside = 0.0
        i = 0
        try:
            for i in range(count):
                x, r = xs[i], rs[i]
                start = perf()
                try:
                    raw = fn(logits, x, r, group)
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:
                    inside += perf() - start
                    err = UserCodeError(exc)
                    self._verify4(inputs, saved, i + 1)
                    raise self._raised4(err, (logits, x, r, group)) from None
                inside += perf() - start
                if type(raw) is np.ndarray and raw.dtype == _F64 and raw.shape == shape:
                    raw_rows[i] = raw
                else:
                    values, row_eps = self._output(raw, shape, (logits, x, r, group), num_prompts, k)
                    raw_rows[i] = values
                    eps = max(eps, row_eps)
        finally:
            self.calls += i + 1
            self.user_seconds += inside
        self._verify4(inputs, saved, count)
        self._check_earlier(inputs, (logits, xs[0], rs[0], group))  # a write during these calls
        self._earlier = (inputs, saved)
        g: FloatArray = raw_rows.reshape(count, num_prompts, k, n).sum(axis=2)
        return g, eps

    def non_finite4(self, g: FloatArray, args: tuple[Any, ...]) -> EstimatorFault:
        """The fault for per-prompt sums ``g`` with non-finite values (or an overflowing mean)."""
        logits, xs, rs, group = args
        finite = np.isfinite(g.reshape(g.shape[0], -1)).all(axis=1)
        if finite.all():
            return self._pfault(
                "non-finite",
                f"returned values so large (up to {float(np.abs(g).max()):.3g}) that E[g] "
                "overflows float64",
                (logits, xs[0], rs[0], group),
            )
        i = int(np.argmin(finite))
        return self._pfault(
            "non-finite",
            f"returned non-finite values (per-prompt sums {g[i].tolist()!r}) for the batch "
            f"samples={xs[i].tolist()!r}, rewards={rs[i].tolist()!r}, group={group.tolist()!r}",
            (logits, xs[i], rs[i], group),
            hint=LEAVE_ONE_OUT_HINT if np.bincount(np.asarray(group)).min() == 1 else "",
        )

    def check_deterministic4(
        self, args: tuple[Any, ...], num_prompts: int, k: int, first: FloatArray, eps: float
    ) -> None:
        """Run every joint batch again; raise ``nondeterministic`` if any per-prompt sum moved."""
        logits, xs, rs, group = args
        first = first.copy()
        again, _ = self.run(logits, xs, rs, group, num_prompts, k)
        count = xs.shape[0]
        moved, i = self._moved(first.reshape(count, -1), again.reshape(count, -1), eps)
        if not moved:
            return
        raise self._pfault(
            "nondeterministic",
            f"returned per-prompt sums {first[i].tolist()!r} and then {again[i].tolist()!r} for the "
            f"same inputs samples={xs[i].tolist()!r}, rewards={rs[i].tolist()!r}. The exact "
            "checker needs a deterministic function of (logits, samples, rewards, group); an "
            "estimator with its own randomness needs a sampling check (properties.stats)",
            (logits, xs[i], rs[i], group),
        )


def joint_inputs(
    theta: FloatArray, scores: FloatArray, k: int
) -> tuple[FloatArray, IntArray, FloatArray, IntArray, FloatArray, FloatArray]:
    """``(logits, samples, rewards, group, p, weights)`` of every joint batch of a problem.

    ``samples``/``rewards`` are ``(n**(kP), kP)`` in lexicographic order (prompt 0 most
    significant), ``weights`` their probabilities; the arrays are read-only.
    """
    num_prompts, n = theta.shape
    x = all_groups(n, k * num_prompts)
    group = frozen(prompt_index(num_prompts, k))
    with np.errstate(all="ignore"):
        top = theta.max(axis=1, keepdims=True)
        e = np.exp(theta - top)
        p = e / e.sum(axis=1, keepdims=True)
        weights = group_probs(p[0], k)
        for q in range(1, num_prompts):
            weights = np.multiply.outer(weights, group_probs(p[q], k)).ravel()
        rewards = frozen(scores[group[None, :], x])
    logits = frozen(np.repeat(theta, k, axis=0))
    return logits, x, rewards, group, p, weights


def evaluate_prompts(
    guard: PromptsGuard,
    theta: FloatArray,
    scores: FloatArray,
    k: int,
    *,
    rtol: float | None,
    atol: float,
    check_determinism: bool = False,
) -> PromptsEvaluation:
    r"""Exact :math:`E[g]` (``(P, n)``) over all ``n**(kP)`` joint batches, one call each.

    ``theta`` and ``scores`` are finite float64 ``(P, n)`` arrays (prompt ``p``'s problem
    in row ``p``); the gradient is :math:`\nabla J_p / P` per prompt.
    """
    num_prompts = theta.shape[0]
    logits, x, rewards, group, p, weights = joint_inputs(theta, scores, k)
    args = (logits, x, rewards, group)
    g, eps = guard.run(logits, x, rewards, group, num_prompts, k)
    with np.errstate(all="ignore"):
        mean: FloatArray = np.tensordot(weights, g, axes=1)
        finite = math.isfinite(float(mean.sum()))
    if not finite:
        raise guard.non_finite4(g, args)
    if check_determinism:
        guard.check_deterministic4(args, num_prompts, k, g, eps)
    with np.errstate(all="ignore"):
        top = theta.argmax(axis=1)
        centred = scores - scores[np.arange(num_prompts), top][:, None]
        j = np.einsum("pi,pi->p", p, centred)[:, None]
        gradient: FloatArray = p * (centred - j) / num_prompts
    return PromptsEvaluation(
        theta, scores, k, num_prompts, mean, gradient, p, weights, g, eps, rtol, atol
    )


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class PromptsProblem:
    """One multi-prompt problem: ``theta``/``scores`` ``(P, n)``, ``k``, where it comes from."""

    theta: FloatArray
    scores: FloatArray
    k: int
    source: str = "hypothesis"
    check_determinism: bool = False

    @property
    def num_prompts(self) -> int:
        """``P``."""
        return int(self.theta.shape[0])

    @property
    def logits(self) -> FloatArray:
        """``theta`` (as :class:`properties.strategies.PolicyProblem` names it)."""
        return self.theta


def _vec(values: tuple[float, ...]) -> FloatArray:
    return np.array(values, dtype=np.float64)


def prompts_battery(keys: tuple[Key, ...]) -> list[PromptsProblem]:
    """The battery for the keys ``(k, P)``, in the order it runs.

    Problem ``i`` of a key gives prompt ``q`` the battery problem ``q`` places after the
    ``i``-th among those of the same ``n`` (so the prompts of one problem differ), for
    every :data:`properties.onestep.problems.BATTERY` problem within
    :func:`max_n_for_prompts`; then shifted copies (every prompt's logits shifted by each
    of :data:`LOGIT_SHIFTS`) of the first problem with distinct logits of each ``n`` in
    :data:`SHIFTED_N`; then the large-``n`` problems for ``P = 1``, ``k <= 2``.

    >>> [(p.source, p.theta.shape) for p in prompts_battery(((2, 2),))][:2]
    [('battery', (2, 2)), ('battery', (2, 2))]
    """
    per_key: dict[Key, list[PromptsProblem]] = {}
    for k, num in keys:
        n_max = max_n_for_prompts(k, num)
        entries = [(t, s) for t, s in BATTERY if len(t) <= n_max]
        by_n: dict[int, list[int]] = {}
        for i, (t, _) in enumerate(entries):
            by_n.setdefault(len(t), []).append(i)
        seen: set[int] = set()
        out: list[PromptsProblem] = []
        for i, (t, _) in enumerate(entries):
            same = by_n[len(t)]
            pos = same.index(i)
            chosen = [entries[same[(pos + q) % len(same)]] for q in range(num)]
            theta = np.stack([_vec(c[0]) for c in chosen])
            scores = np.stack([_vec(c[1]) for c in chosen])
            out.append(PromptsProblem(theta, scores, k, "battery", len(t) not in seen))
            seen.add(len(t))
        for n in SHIFTED_N:
            first = [pb for pb in out if pb.theta.shape[1] == n and len(set(pb.theta[0].tolist())) == n][:1]
            for pb in first:
                for j, shift in enumerate(LOGIT_SHIFTS):
                    out.append(PromptsProblem(pb.theta + shift, pb.scores, k, "shifted", j == 0))
        if num == 1 and k <= 2:
            for n in LARGE_N:
                if n**k <= MAX_BATCHES_PER_PROBLEM:
                    big_theta, big_s = _large_n_problem(n)
                    out.append(PromptsProblem(big_theta[None, :], big_s[None, :], k, "large-n", True))
        per_key[(k, num)] = out
    ordered: list[PromptsProblem] = []
    battery_part = {key: [pb for pb in v if pb.source == "battery"] for key, v in per_key.items()}
    longest = max((len(v) for v in battery_part.values()), default=0)
    for i in range(longest):
        for key in keys:
            if i < len(battery_part[key]):
                ordered.append(battery_part[key][i])
    for key in keys:
        ordered += [pb for pb in per_key[key] if pb.source != "battery"]
    return ordered


def _combine(k: int, problems: tuple[PolicyProblem, ...]) -> PromptsProblem:
    return PromptsProblem(
        np.stack([pr.logits for pr in problems]), np.stack([pr.scores for pr in problems]), k
    )


@cache
def _prompts_of_size(n: int, k: int, num_prompts: int) -> st.SearchStrategy[PromptsProblem]:
    one = _problems_of_size(n, k)
    return st.tuples(*([one] * num_prompts)).map(lambda probs: _combine(k, probs))


@cache
def _prompts_for_key(k: int, num_prompts: int) -> st.SearchStrategy[PromptsProblem]:
    return st.one_of(
        *(_prompts_of_size(n, k, num_prompts) for n in range(2, max_n_for_prompts(k, num_prompts) + 1))
    )


def generated_prompt_problems(keys: tuple[Key, ...]) -> st.SearchStrategy[PromptsProblem]:
    """Problems of ``P`` prompts of one ``n``, each prompt drawn as the per-``k`` strategies draw one."""
    return st.one_of(*(_prompts_for_key(k, num) for k, num in keys))


# --------------------------------------------------------------------------- scales


PROMPT_SCALES: tuple[tuple[str, Callable[[int, int], float]], ...] = (
    (
        "P*k, the scale of a sum over all P*k rows of the batch instead of a mean",
        lambda k, p: float(k * p),
    ),
    (
        "P, the scale of a sum over prompts (of per-prompt means) instead of a mean over prompts",
        lambda k, p: float(p),
    ),
    (
        "(Pk-1)/(Pk), the scale of the self-inclusive mean reward of the whole batch as baseline",
        lambda k, p: (k * p - 1) / (k * p),
    ),
    ("(k-1)/k, the scale of a self-inclusive group mean", lambda k, p: (k - 1) / k),
    ("k, the scale of a sum over the group instead of a mean", lambda k, p: float(k)),
    (
        "P(k-1)/k, the scale of a self-inclusive group mean and a sum over prompts",
        lambda k, p: p * (k - 1) / k,
    ),
    ("1/P", lambda k, p: 1.0 / p),
)
"""Scale formulas :math:`f(k, P)` worth naming when measured constants match them (printed
after :data:`properties.judging.verdict.SCALE_HINT_LEAD`: the value matches, the cause is
not shown)."""


def prompt_scale_hints(
    scale: Mapping[Any, float], uncertainty: Mapping[Any, float]
) -> dict[Any, str]:
    """``{(k, P): text}`` naming a known :math:`f(k, P)` where it explains the measured scale.

    As :func:`properties.judging.verdict.scale_hints`: a formula is named only where it matches
    at two or more keys at which the estimator is not unbiased; the formula matching the
    most keys is preferred (``(Pk-1)/(Pk)`` and ``(k-1)/k`` agree at ``P = 1``).

    >>> prompt_scale_hints({(2, 1): 0.5, (2, 2): 0.75}, {})[(2, 2)][:10]
    '(Pk-1)/(Pk'
    >>> prompt_scale_hints({(2, 1): 1.0, (2, 2): 2.0}, {})
    {}
    """

    def matches(f: Callable[[int, int], float], key: Key) -> bool:
        c = scale[key]
        slack = max(uncertainty.get(key, 0.0) * HINT_MATCH_UNCERTAINTIES, HINT_MATCH_FLOOR)
        return abs(c - 1.0) > slack and abs(c - f(key[0], key[1])) <= slack

    found = []
    for order, (text, f) in enumerate(PROMPT_SCALES):
        keys = [key for key in scale if matches(f, key)]
        if len(keys) >= 2:
            found.append((-len(keys), order, text, keys))
    hints: dict[Any, str] = {}
    for _, _, text, keys in sorted(found):
        for key in keys:
            hints.setdefault(key, text)
    return dict(sorted(hints.items()))


__all__ = [
    "MAX_BATCHES_PER_PROBLEM",
    "MAX_NUM_PROMPTS",
    "MAX_SAMPLES_PER_BATCH",
    "PROMPT_SCALES",
    "PROTOCOL_HINT",
    "PromptsEvaluation",
    "PromptsGuard",
    "PromptsProblem",
    "evaluate_prompts",
    "generated_prompt_problems",
    "joint_inputs",
    "key_text",
    "max_n_for_prompts",
    "prompt_index",
    "prompt_scale_hints",
    "prompts_battery",
    "unchecked_n",
]
