"""One run of the one-step checker: the battery, the Hypothesis search, the reference book, the round-off note."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky

from impl.types import FloatArray
from properties.judging.seam import wrap_guard
from properties.judging.user_code import replay_detail
from properties.judging.verdict import (
    RANGE_DTYPE,
    REFERENCE_MIN_SIGNAL,
    ROUNDOFF_DTYPES,
    Mismatch,
    ReferenceBook,
    decide,
    explained_by,
    into_range,
    judge,
    norm,
    outside_range,
    precise_rtol,
    relative_residual,
    simple_value,
    ulps,
)
from properties.onestep.guard import (
    EPS64,
    EstimatorFault,
    GuardedEstimator,
    all_groups,
    frozen,
)
from properties.onestep.problems import (
    ROUNDOFF_SAFETY,
    Evaluation,
    battery,
    checker_settings,
    evaluate,
    generated_problems,
    pinned_hypothesis,
    unchecked_group_n,
)
from properties.onestep.prompts import (
    PromptsEvaluation,
    PromptsGuard,
    PromptsProblem,
    evaluate_prompts,
    generated_prompt_problems,
    joint_inputs,
    key_text,
    prompts_battery,
    unchecked_n,
)
from properties.onestep.results import (
    _DTYPE_NAMES,
    CheckedRegion,
    Counterexample,
    EstimatorError,
    RangeNote,
    RoundoffNote,
    ScaleNote,
)
from properties.strategies import PolicyProblem

ROUNDOFF_NOTE_ULPS = 4.0
"""A counterexample "is round-off of dtype D" when every mismatch is within the checker's
round-off bound for D with this factor in place of ``ROUNDOFF_SAFETY * k``: a few ulps of
D of the summed terms, not the generous bound used to avoid false alarms; and when the
residual :math:`|E - cG|/|G|` of the mismatch with the largest :math:`|G|` is at most this
many ulps of D (a bias of 10% of :math:`|G|` is not "round-off of bfloat16", even where
the scores are large enough for the absolute bound to allow it)."""


class _Mismatch(Exception):
    """Raised inside the Hypothesis test so that it shrinks; carries the mismatch."""

    def __init__(self, mismatch: Mismatch[Evaluation]) -> None:
        super().__init__(mismatch.reason)
        self.mismatch = mismatch


class _Region:
    """Accumulates the :class:`CheckedRegion` over the evaluated problems."""

    def __init__(self, ks: tuple[int, ...], prompts: tuple[int, ...] | None = None) -> None:
        self.ks, self.prompts = ks, prompts
        self.n: list[int] = []
        self.logits = [math.inf, -math.inf]
        self.gap = 0.0
        self.p = 1.0
        self.scores = [math.inf, -math.inf]
        self.problems: dict[str, int] = {}
        self.largest_n: dict[Any, int] = {}

    def add(self, ev: Evaluation, source: str) -> None:
        n = ev.scores.shape[-1]
        self.n = [min(self.n[0], n), max(self.n[1], n)] if self.n else [n, n]
        self.largest_n[ev.key] = max(self.largest_n.get(ev.key, 0), n)
        lo, hi = float(ev.logits.min()), float(ev.logits.max())
        self.logits = [min(self.logits[0], lo), max(self.logits[1], hi)]
        self.gap = max(self.gap, hi - lo)
        self.p = min(self.p, float(ev.p.min()))
        self.scores = [min(self.scores[0], float(ev.scores.min())), max(self.scores[1], float(ev.scores.max()))]
        self.problems[source] = self.problems.get(source, 0) + 1

    def region(self) -> CheckedRegion:
        if not self.n:
            return CheckedRegion(self.ks, problems=dict(self.problems), num_prompts=self.prompts)
        return CheckedRegion(
            group_sizes=self.ks,
            n_range=(self.n[0], self.n[1]),
            logit_range=(self.logits[0], self.logits[1]),
            logit_gap=self.gap,
            smallest_p=self.p,
            score_range=(self.scores[0], self.scores[1]),
            problems=dict(self.problems),
            notes=self._n_notes(),
            num_prompts=self.prompts,
        )

    def _n_notes(self) -> tuple[str, ...]:
        """Where the largest ``n`` tried is smaller than the overall one (the enumeration
        budget caps ``n`` as ``k`` and ``P`` grow): a bias only at larger ``n`` there is
        outside what was checked."""
        top = self.n[1]
        below: dict[int, list[Any]] = {}
        for key, n in sorted(self.largest_n.items()):
            if n < top:
                below.setdefault(n, []).append(key)
        parts = []
        for n, keys in sorted(below.items(), reverse=True):
            if isinstance(keys[0], tuple):
                where = "(k, P) in " + ", ".join(f"({k}, {p})" for k, p in keys)
            else:
                where = "k in {" + ", ".join(str(k) for k in keys) + "}"
            parts.append(f"n at most {n} for {where}")
        return ("; ".join(parts),) if parts else ()


class _Run:
    """One run of the checker: the battery, the Hypothesis search, the confirmation."""

    def __init__(
        self,
        fn: Callable[..., Any],
        ks: tuple[int, ...],
        *,
        batched: bool,
        seed: int,
        max_examples: int,
        rtol: float | None,
        atol: float,
        progress: Callable[[int, int], None] | None,
        rescale: bool = False,
    ) -> None:
        self.fn, self.ks, self.batched = fn, ks, batched
        # rescale: the range note's re-check, every problem whose scores lie outside
        # float32's normal range is first rescaled into it
        self.rescale = rescale
        # mismatches that vanish once their problem is rescaled into float32's range
        self.range_only: list[Mismatch[Evaluation]] = []
        self.seed, self.max_examples, self.rtol, self.atol = seed, max_examples, rtol, atol
        self.guard: GuardedEstimator = wrap_guard(GuardedEstimator(fn, batched=batched))
        self.book: ReferenceBook[Evaluation] = ReferenceBook()
        self.mismatch: Mismatch[Evaluation] | None = None
        self.mismatches: list[Mismatch[Evaluation]] = []
        self.found_by = ""
        self.error: EstimatorError | None = None
        self.region = _Region(ks)
        self.problems = 0
        self.planned = max_examples
        self.max_eps = EPS64
        self.progress = progress
        self.progress_error: Exception | None = None
        self.clock = {
            "evaluation": 0.0, "judging": 0.0, "generation": 0.0, "battery": 0.0, "hypothesis": 0.0,
        }

    prompts: tuple[int, ...] | None = None

    def keys(self) -> tuple[Any, ...]:
        """What one scale constant is measured for: the ``k`` here."""
        return self.ks

    def largest_factor(self) -> int:
        """The most samples in one group or batch (``max k``), for the round-off note's ``rtol``."""
        return max(self.ks)

    def unchecked(self) -> tuple[str, ...]:
        """The ``n`` up to ``MAX_N`` that the group budget left out, per ``k``."""
        return unchecked_group_n(self.ks)

    # -- bookkeeping ----------------------------------------------------------------
    def _tick(self) -> None:
        if self.progress is None:
            return
        try:
            self.progress(self.problems, max(self.planned, self.problems))
        except Exception as exc:  # the caller's callback: stop calling it, re-raise at the end
            self.progress_error = exc
            self.progress = None

    def _evaluate(
        self,
        theta: FloatArray,
        scores: FloatArray,
        k: int,
        *,
        source: str,
        order: int,
        determinism: bool,
        rows: bool,
    ) -> Evaluation:
        start, inside = time.perf_counter(), self.guard.user_seconds
        if self.rescale and outside_range(scores) is not None:
            scores = into_range(scores)[0]
        try:
            ev = self._compute(theta, scores, k, determinism=determinism, rows=rows)
        finally:
            spent = time.perf_counter() - start
            self.clock["evaluation"] += spent - (self.guard.user_seconds - inside)
        ev.order, ev.source = order, source
        self.max_eps = max(self.max_eps, ev.eps_out)
        self.region.add(ev, source)
        self.problems += 1
        self._tick()
        return ev

    def _compute(
        self, theta: FloatArray, scores: FloatArray, k: int, *, determinism: bool, rows: bool
    ) -> Evaluation:
        return evaluate(
            self.guard, theta, scores, k, rtol=self.rtol, atol=self.atol,
            check_determinism=determinism, check_rows=rows,
        )

    def _keep(self, found: list[Mismatch[Evaluation]], found_by: str) -> None:
        self.mismatches += found
        for m in found:
            if self.mismatch is None or m.evaluation.order < self.mismatch.evaluation.order:
                self.mismatch = m
                self.found_by = found_by

    def _fault(self, fault: EstimatorFault, scores: FloatArray | None, k: int | None, found_by: str) -> None:
        group = fault.group
        self.error = EstimatorError(
            group=group,
            num_prompts=None if group is None or group.size == 0 else int(group.max()) + 1,
            kind=fault.kind,
            detail=fault.detail,
            logits=fault.logits,
            samples=fault.samples,
            rewards=fault.rewards,
            scores=scores,
            k=k,
            hint=fault.hint,
            found_by=found_by,
        )

    # -- phases -----------------------------------------------------------------------
    def run_battery(self) -> None:
        start = time.perf_counter()
        problems = self._battery()
        self.planned = len(problems) + self.max_examples
        for order, bp in enumerate(problems):
            try:
                ev = self._evaluate(
                    bp.theta, bp.scores, bp.k, source=bp.source, order=order,
                    determinism=bp.check_determinism, rows=self.batched,
                )
            except EstimatorFault as fault:
                where = "battery" if bp.source == "battery" else f"battery ({bp.source} problems)"
                self._fault(fault, bp.scores, bp.k, where)
                break
            judging = time.perf_counter()
            self._keep(self.book.offer(ev), "battery")
            self.clock["judging"] += time.perf_counter() - judging
        judging = time.perf_counter()
        self._keep(self.book.close(), "battery")
        self.clock["judging"] += time.perf_counter() - judging
        self.clock["battery"] += time.perf_counter() - start

    def _battery(self) -> list[Any]:
        return list(battery(self.ks))

    def _strategy(self) -> Any:
        return generated_problems(self.ks)

    def _ours(self) -> float:
        return self.guard.user_seconds + self.clock["evaluation"] + self.clock["judging"]

    def run_hypothesis(self) -> None:
        start, before = time.perf_counter(), self._ours()
        try:
            self._hypothesis()
        finally:
            spent = time.perf_counter() - start
            self.clock["hypothesis"] += spent
            self.clock["generation"] += max(spent - (self._ours() - before), 0.0)

    def _hypothesis(self) -> None:
        failure: dict[str, Any] = {}
        base = self.problems
        @checker_settings(self.max_examples)
        @hypothesis_seed(self.seed)
        @given(self._strategy())
        def property_(problem: PolicyProblem | PromptsProblem) -> None:
            try:
                ev = self._evaluate(
                    problem.logits, problem.scores, problem.k, source="hypothesis",
                    order=base + self.problems, determinism=False, rows=False,
                )
            except EstimatorFault as fault:
                failure["last"] = (fault, problem)
                raise
            ref = self.book.reference(ev.key)
            if ref is None:  # no problem could measure c_k: the verdict will say so
                return
            judging = time.perf_counter()
            found = judge(ev, ref)
            self.clock["judging"] += time.perf_counter() - judging
            if found is not None and outside_range(ev.scores) is not None:
                found = self._at_representable_magnitudes(found)
            if found is not None:
                raise _Mismatch(found)

        try:
            with pinned_hypothesis():
                property_()
        except _Mismatch as exc:
            self.mismatch = exc.mismatch
            self.mismatches.append(exc.mismatch)
            self.found_by = "hypothesis (shrunk)"
        except EstimatorFault as fault:
            last = failure.get("last")
            problem = last[1] if last is not None and last[0] is fault else None
            self._fault(
                fault,
                None if problem is None else problem.scores,
                None if problem is None else problem.k,
                "hypothesis (shrunk)",
            )
        except Flaky as exc:
            self.error = EstimatorError.without_call(
                "nondeterministic",
                replay_detail(
                    type(exc).__name__,
                    outcome="verdicts",
                    inputs="(logits, samples, rewards)",
                    advice=": an estimator with its own randomness or hidden state needs a "
                    "sampling check (properties.stats)",
                ),
                hint="",
                found_by="hypothesis",
            )

    def _at_representable_magnitudes(self, found: Mismatch[Evaluation]) -> Mismatch[Evaluation] | None:
        """A mismatch on scores outside float32's range, judged again rescaled into it.

        If the rescaled problem is a mismatch too, that one (the bias is there at normal
        magnitudes); else ``None``, and the mismatch is kept aside in ``range_only``, so
        that Hypothesis does not shrink toward scores that float32 flushes to zero.
        """
        ev = found.evaluation
        again = self._evaluate(
            ev.logits, into_range(ev.scores)[0], ev.k, source="hypothesis",
            order=ev.order, determinism=False, rows=False,
        )
        judging = time.perf_counter()
        rescaled = judge(again, found.reference)
        self.clock["judging"] += time.perf_counter() - judging
        if rescaled is None:
            self.range_only.append(found)
        return rescaled

    def take_range_only(self) -> None:
        """No other counterexample: the simplest one kept aside (fewest answers, smallest
        ``k``, first found) is the counterexample; its report carries a :class:`RangeNote`."""
        if self.mismatch is not None or self.error is not None or not self.range_only:
            return
        m = min(self.range_only, key=lambda x: (x.evaluation.scores.size, x.evaluation.k, x.evaluation.order))
        self.mismatch = m
        self.mismatches.append(m)
        self.found_by = "hypothesis (not shrunk: its scores lie outside float32's range)"

    def confirm(self) -> None:
        """Re-evaluate the counterexample: a result that moves is ``nondeterministic``."""
        m = self.mismatch
        if m is None or self.error is not None:
            return
        ev = m.evaluation
        try:
            self._recheck(ev)
        except EstimatorFault as fault:
            self._fault(fault, ev.scores, ev.k, f"re-checking the counterexample found by {self.found_by}")

    def _recheck(self, ev: Evaluation) -> None:
        x = all_groups(ev.scores.size, ev.k)
        logits, rewards = frozen(ev.logits), frozen(ev.scores[x])
        self.guard.check_deterministic(logits, x, rewards, ev.g, ev.eps_out)
        if self.batched:
            self.guard.check_rows_independent(logits, x, rewards, ev.g, ev.eps_out, seed=self.seed)

    # -- the verdict --------------------------------------------------------------------
    def imprecise_error(self, keys: tuple[Any, ...]) -> EstimatorError:
        refs = self.book.references()
        best = [(k, refs.get(k)) for k in keys]
        measured = "; ".join(
            f"{key_text(k)}: no problem had |grad J| above the tolerance"
            if ref is None
            else f"{key_text(k)}: best c_k = {ref.multiple:.4g} +- {ref.uncertainty:.2g}"
            for k, ref in best
        )
        if self.rtol is not None:
            cause = (
                f"could not be judged with rtol={self.rtol!r}: that tolerance is more than "
                f"1/{REFERENCE_MIN_SIGNAL:g} of |grad J| on every problem checked"
            )
            smaller = precise_rtol(self.rtol, refs, keys) if self.atol == 0.0 else None
            fix = "pass a smaller rtol" if smaller is None else f"pass a smaller rtol: rtol={smaller:g} or below"
        else:
            dtype = _DTYPE_NAMES.get(self.max_eps, f"a dtype with epsilon {self.max_eps:.2g}")
            cause = (
                f"returns {dtype} (round-off unit {self.max_eps:.2g}), too coarse to judge: the "
                f"round-off tolerance that keeps correct {dtype} estimators from false alarms "
                f"is more than 1/{REFERENCE_MIN_SIGNAL:g} of |grad J| on every problem checked"
            )
            fix = (
                "return float32 or float64 (if fn computes in float16, the checker can still "
                "find biases larger than float16 round-off, but cannot certify it)"
                if self.max_eps > float(np.finfo(np.float32).eps)
                else "this should not happen for a float32 or float64 output: please report it"
            )
        ref = next((r for _, r in best if r is not None), None)
        return EstimatorError(
            kind="imprecise",
            detail=(
                f"{cause}, so the scale c_k cannot be told from 1 ({measured}) and no verdict "
                f"between unbiased and scaled is possible; {fix}"
            ),
            logits=np.zeros(0) if ref is None else ref.evaluation.logits,
            samples=np.zeros(0, dtype=np.int64),
            rewards=np.zeros(0),
            scores=None if ref is None else ref.evaluation.scores,
            k=None if ref is None else ref.evaluation.k,
            hint="",
            found_by="the battery (scale reference)",
        )


class _PromptsRun(_Run):
    """A run of the multi-prompt protocol: keys ``(k, P)``, one call per joint batch."""

    def __init__(
        self,
        fn: Callable[..., Any],
        ks: tuple[int, ...],
        prompts: tuple[int, ...],
        **kwargs: Any,
    ) -> None:
        super().__init__(fn, ks, batched=False, **kwargs)
        self.prompts = prompts
        self._keys = tuple((k, p) for k in ks for p in prompts)
        self.guard = wrap_guard(PromptsGuard(fn))
        self.region = _Region(ks, prompts)

    def keys(self) -> tuple[Any, ...]:
        return self._keys

    def largest_factor(self) -> int:
        return max(k * p for k, p in self._keys)

    def unchecked(self) -> tuple[str, ...]:
        """The ``n`` up to ``MAX_N`` that the call budget left out, per ``(k, P)``."""
        return unchecked_n(self._keys)

    def _compute(
        self, theta: FloatArray, scores: FloatArray, k: int, *, determinism: bool, rows: bool
    ) -> Evaluation:
        assert isinstance(self.guard, PromptsGuard)
        return evaluate_prompts(
            self.guard, theta, scores, k, rtol=self.rtol, atol=self.atol,
            check_determinism=determinism,
        )

    def _battery(self) -> list[Any]:
        return list(prompts_battery(self.keys()))

    def _strategy(self) -> Any:
        return generated_prompt_problems(self.keys())

    def _recheck(self, ev: Evaluation) -> None:
        assert isinstance(self.guard, PromptsGuard) and isinstance(ev, PromptsEvaluation)
        args = joint_inputs(ev.logits, ev.scores, ev.k)[:4]
        self.guard.check_deterministic4(args, ev.num_prompts, ev.k, ev.g, ev.eps_out)


_EPSILONS = {name: eps for name, eps in ROUNDOFF_DTYPES}


_SMALLEST_NORMAL = {
    "float32": float(np.finfo(np.float32).tiny),
    "bfloat16": float(np.finfo(np.float32).tiny),  # bfloat16 keeps float32's exponent range
    "float16": float(np.finfo(np.float16).tiny),
}


def _roundoff_note(run: _Run, m: Mismatch[Evaluation]) -> RoundoffNote | None:
    """A :class:`RoundoffNote` if every mismatch found is within a coarser dtype's round-off."""
    if run.rtol is not None or any(x.kind == "nonpositive" for x in run.mismatches):
        return None
    order = [name for name, _ in ROUNDOFF_DTYPES]
    finest = -1
    for x in run.mismatches or [m]:
        ev = x.evaluation
        # "a few ulps": the checker's own bound for that dtype without its safety factor
        shrink = ROUNDOFF_NOTE_ULPS / (ROUNDOFF_SAFETY * ev.factor_k)

        def bound(eps: float, ev: Evaluation = ev, shrink: float = shrink) -> FloatArray:
            out: FloatArray = ev.tolerance_at(eps) * shrink
            return out

        dtype = explained_by(x, bound, finer_than=ev.eps_out)
        if dtype is None:
            return None
        finest = max(finest, order.index(dtype))
    dtype = order[finest]
    eps = _EPSILONS[dtype]
    # ... and relative to |grad J| where grad J is best determined (where it nearly cancels,
    # round-off is large relative to it): a few ulps there too, or it is not round-off
    clearest = max(run.mismatches or [m], key=lambda x: norm(x.evaluation.gradient))
    if relative_residual(clearest) > ROUNDOFF_NOTE_ULPS * eps:
        return None
    ev = m.evaluation
    # the rtol that reproduces the derived tolerance at that precision for the largest k
    # (and at least twice what this counterexample needs), one significant digit, rounded up
    size = max(float(np.abs(ev.scores).max()), float(np.abs(ev.g).max(initial=0.0)))
    need = np.abs(m.discrepancy) - m.reference.uncertainty * np.abs(ev.gradient) - ev.atol
    denominator = ev.magnitude + size * (2.0 * ev.p + 1.0)
    needed = float(np.max(need / np.where(denominator > 0, denominator, np.inf)))
    rtol = _round_up(max(ROUNDOFF_SAFETY * run.largest_factor() * eps, 2.0 * needed))
    atol = _round_up(max(run.atol, ROUNDOFF_SAFETY * _SMALLEST_NORMAL[dtype]))
    again = _check(
        run.fn, run.ks, seed=run.seed, max_examples=run.max_examples, batched=run.batched,
        rtol=rtol, atol=atol, progress=None, prompts=run.prompts,
    )
    _add_costs(run, again)
    decision = _decide(again)
    scale = _keyed(decision.scale)
    relative = relative_residual(m)
    return RoundoffNote(
        relative_residual=relative,
        ulps=ulps(relative),
        dtype=dtype,
        rtol=rtol,
        atol=atol,
        verdict=decision.verdict,
        scale=scale,
    )


def _scale_note(run: _Run, decision: Any) -> ScaleNote | None:
    """A ``scaled`` verdict whose every ``c_k`` is float32's rounding of a simple value says so.

    Like :func:`_roundoff_note` (never under a user ``rtol``): every ``c_k`` lies within
    :data:`properties.judging.verdict.SCALE_NOTE_EPSILONS` float32 epsilons of 1 or of a
    known scale at ``k``, at least one departs from it by more than its uncertainty (else
    the value itself was measured), and the note reruns the whole check with the ``rtol``
    of float32 round-off.  Only float32: NumPy has no bfloat16, and a 16-bit output has no
    coarser dtype worth naming.  The verdict itself stays.
    """
    if run.rtol is not None or decision.scale is None or decision.uncertainty is None:
        return None
    dtype, eps = ROUNDOFF_DTYPES[0]
    if eps <= run.max_eps:
        return None
    scale, unc = decision.scale, decision.uncertainty
    simple = {key: simple_value(key[0] if isinstance(key, tuple) else key, c, eps) for key, c in scale.items()}
    values = {key: v for key, v in simple.items() if v is not None}
    if len(values) < len(simple) or all(abs(scale[key] - v) <= unc[key] for key, (_, v) in values.items()):
        return None
    rtol = _round_up(ROUNDOFF_SAFETY * run.largest_factor() * eps)
    atol = _round_up(max(run.atol, ROUNDOFF_SAFETY * _SMALLEST_NORMAL[dtype]))
    again = _check(
        run.fn, run.ks, seed=run.seed, max_examples=run.max_examples, batched=run.batched,
        rtol=rtol, atol=atol, progress=None, prompts=run.prompts,
    )
    _add_costs(run, again)
    rerun = _decide(again)
    return ScaleNote(
        dtype=dtype,
        epsilon=eps,
        values={key_text(key): text for key, (text, _) in values.items()},
        departure={key_text(key): scale[key] / v - 1.0 for key, (_, v) in values.items()},
        rtol=rtol,
        atol=atol,
        verdict=rerun.verdict,
        scale=None if rerun.scale is None else {key_text(k): c for k, c in rerun.scale.items()},
    )


def _range_note(run: _Run, m: Mismatch[Evaluation]) -> RangeNote | None:
    """A :class:`RangeNote` if the counterexample's scores lie outside float32's normal range:
    the verdict of a second run with every such problem rescaled into that range."""
    direction = outside_range(m.evaluation.scores)
    if direction is None:
        return None
    again = _check(
        run.fn, run.ks, seed=run.seed, max_examples=run.max_examples, batched=run.batched,
        rtol=run.rtol, atol=run.atol, progress=None, prompts=run.prompts, rescale=True,
    )
    _add_costs(run, again)
    decision = _decide(again)
    return RangeNote(
        largest=float(np.max(np.abs(m.evaluation.scores))),
        direction=direction,
        dtype=RANGE_DTYPE,
        verdict=decision.verdict,
        scale=_keyed(decision.scale),
        scale_uncertainty=_keyed(decision.uncertainty),
    )


def _add_costs(run: _Run, again: _Run) -> None:
    """Count a second run's time and calls in the first one's report."""
    for key in ("evaluation", "judging", "generation"):
        run.clock[key] += again.clock[key]
    run.guard.calls += again.guard.calls
    run.guard.user_seconds += again.guard.user_seconds


def _round_up(x: float) -> float:
    """``x`` rounded up to one significant digit.

    >>> _round_up(1.53e-5), _round_up(2e-5)
    (2e-05, 2e-05)
    """
    if x <= 0 or not math.isfinite(x):
        return x
    exponent = math.floor(math.log10(x))
    unit = 10.0**exponent
    digit = math.ceil(round(x / unit, 9))
    return float(f"{digit * unit:.1g}")


def _decide(run: _Run) -> Any:
    return decide(
        fault=run.error is not None,
        mismatch=run.mismatch is not None,
        references=run.book.references(),
        keys=run.keys(),
    )


def _keyed(values: Mapping[Any, float] | None) -> dict[Any, float] | None:
    """Scale keys as ints (``k``) or ``(k, P)`` tuples of ints."""
    if values is None:
        return None
    return {
        (tuple(int(x) for x in key) if isinstance(key, tuple) else int(key)): c
        for key, c in values.items()
    }


def _counterexample(
    run: _Run, m: Mismatch[Evaluation], note: RoundoffNote | None, out_of_range: RangeNote | None = None
) -> Counterexample:
    ev, ref = m.evaluation, m.reference
    return Counterexample(
        logits=ev.logits.copy(),
        scores=ev.scores.copy(),
        k=ev.k,
        expectation=ev.mean,
        gradient=ev.gradient,
        multiple=m.multiple,
        residual=m.residual,
        reference_multiple=ref.multiple,
        reference_logits=ref.evaluation.logits.copy(),
        reference_scores=ref.evaluation.scores.copy(),
        discrepancy=m.discrepancy,
        tolerance=m.allowed,
        reason=m.reason,
        found_by=run.found_by if ev.source in ("battery", "hypothesis") else f"{run.found_by} ({ev.source})",
        roundoff=note,
        num_prompts=ev.num_prompts if isinstance(ev, PromptsEvaluation) else None,
        out_of_range=out_of_range,
    )


def _check(
    fn: Callable[..., Any],
    ks: tuple[int, ...],
    *,
    seed: int,
    max_examples: int,
    batched: bool,
    rtol: float | None,
    atol: float,
    progress: Callable[[int, int], None] | None,
    prompts: tuple[int, ...] | None = None,
    rescale: bool = False,
) -> _Run:
    run = (
        _Run(
            fn, ks, batched=batched, seed=seed, max_examples=max_examples, rtol=rtol, atol=atol,
            progress=progress, rescale=rescale,
        )
        if prompts is None
        else _PromptsRun(
            fn, ks, prompts, seed=seed, max_examples=max_examples, rtol=rtol, atol=atol,
            progress=progress, rescale=rescale,
        )
    )
    run.run_battery()
    if run.error is None and run.mismatch is None and max_examples > 0:
        run.run_hypothesis()
        run.take_range_only()
    run.confirm()
    return run
