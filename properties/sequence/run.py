"""One run of the sequence checker: the battery, the search over shapes, the reference book,
counterexamples and the round-off note."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky

from impl.sequence import advantages, response_probs
from properties.judging.verdict import (
    REFERENCE_MIN_SIGNAL,
    Mismatch,
    ReferenceBook,
    decide,
    norm,
    relative_residual,
    simple_value,
    ulps,
)
from properties.onestep.problems import checker_settings, pinned_hypothesis
from properties.onestep.results import (
    RoundoffNote,
    ScaleNote,
)
from properties.sequence.evaluation import (
    DETERMINISM_RECHECKS,
    DETERMINISM_ULPS,
    EPS64,
    ROUNDOFF_SAFETY,
    TINY,
    Evaluation,
    ModeChanged,
    RouteChanged,
    SequenceFault,
)
from properties.sequence.multisets import Route, asymmetry, binned_weights
from properties.sequence.problems import (
    FULL_BATTERY_BATCHES,
    LOOPED_EXTRA_VOCAB_BATCHES,
    LOOPED_FULL_BATTERY_BATCHES,
    MAX_BATCHES_LOOPED,
    MULTISET_BATCHES_LOOPED,
    MULTISET_BATCHES_VECTORISED,
    SequenceProblem,
    Shape,
    battery,
    generated_problems,
    plan_shapes,
    shape_data,
)
from properties.sequence.region import ValueRanges
from properties.sequence.results import (
    SequenceCounterexample,
    SequenceError,
    WeightRow,
    key_text,
)

SCALE_MATCH_UNCERTAINTIES = 4.0
"""A known scale formula (and :func:`assert_scaled`) matches a measured constant within this many uncertainties."""


SCALE_MATCH_FLOOR = 1e-12
"""... or within this absolute slack."""


class _Mismatch(Exception):
    def __init__(self, mismatch: Mismatch[Evaluation]) -> None:
        super().__init__(mismatch.reason)
        self.mismatch = mismatch


class _Run:
    def __init__(
        self,
        evaluator: Any,
        *,
        ks: tuple[int, ...],
        prompts: tuple[int, ...],
        vocab_size: int,
        max_len: int,
        kl_coef: float,
        off_policy: bool,
        seed: int,
        max_examples: int,
        rtol: float | None,
        atol: float,
        budget: int,
        tool_tokens: bool = False,
        sampling_mismatch: bool = False,
        values: str = "",
        multiset: bool = False,
    ) -> None:
        self.evaluator = evaluator
        self.multiset = multiset
        self.ks, self.prompts = ks, prompts
        self.vocab_size, self.max_len = vocab_size, max_len
        self.kl_coef, self.off_policy = kl_coef, off_policy
        self.seed, self.max_examples = seed, max_examples
        self.rtol, self.atol = rtol, atol
        self.budget = budget
        looped = budget <= MAX_BATCHES_LOOPED
        self.full_up_to = LOOPED_FULL_BATTERY_BATCHES if looped else FULL_BATTERY_BATCHES
        if multiset:  # counted in evaluated batches (multisets and their re-ordered copies)
            budget = MULTISET_BATCHES_LOOPED if looped else MULTISET_BATCHES_VECTORISED
        self.shapes = plan_shapes(
            ks,
            prompts,
            vocab_size,
            max_len,
            budget=budget,
            extra_vocab_budget=LOOPED_EXTRA_VOCAB_BATCHES if looped and not multiset else None,
            tool_tokens=tool_tokens,
            sampling_mismatch=sampling_mismatch,
            values=values,
            multiset=multiset,
        )
        self.plan_budget = budget
        self.book: ReferenceBook[Evaluation] = ReferenceBook()
        self.mismatch: Mismatch[Evaluation] | None = None
        self.found_by = ""
        self.fault: SequenceFault | None = None
        self.fault_found_by = ""
        self.flaky: str | None = None
        self.problems: dict[str, int] = {}
        self.max_eps = EPS64
        self.evaluated: list[Shape] = []
        self.ranges = ValueRanges()

    def _count(self, source: str, n: int = 1) -> None:
        self.problems[source] = self.problems.get(source, 0) + n

    def evaluate(self, problems: list[SequenceProblem], *, check_determinism: bool) -> list[Evaluation]:
        """:func:`evaluate_checked` with this run's tolerances."""
        return evaluate_checked(
            self.evaluator,
            problems,
            rtol=self.rtol,
            atol=self.atol,
            check_determinism=check_determinism,
        )

    def run_battery(self) -> None:
        first = True
        for shape in self.shapes:
            problems = battery(
                shape, kl_coef=self.kl_coef, off_policy=self.off_policy, full_up_to=self.full_up_to
            )
            try:
                evs = self.evaluate(problems, check_determinism=first)
            except SequenceFault as fault:
                self.fault, self.fault_found_by = fault, "battery"
                return
            first = False
            self.evaluated.append(shape)
            self._count("battery", len(evs))
            for ev in evs:
                self.ranges.add(ev.problem)
                self.max_eps = max(self.max_eps, ev.eps_out)
                found = self.book.offer(ev)
                if found:
                    self.mismatch, self.found_by = found[0], "battery"
                    return
        found = self.book.close()
        if found:
            self.mismatch, self.found_by = found[0], "battery"

    def run_hypothesis(self) -> None:
        if self.max_examples == 0 or not self.shapes:
            return
        failure: dict[str, Any] = {}

        @checker_settings(self.max_examples)
        @hypothesis_seed(self.seed)
        @given(generated_problems(self.shapes, kl_coef=self.kl_coef, off_policy=self.off_policy))
        def property_(problem: SequenceProblem) -> None:
            if "mode" in failure:  # the evaluation mode or route changed: the run is re-planned
                return
            try:
                (ev,) = self.evaluate([problem], check_determinism=False)
            except SequenceFault as fault:
                failure["last"] = fault
                raise
            except (ModeChanged, RouteChanged) as exc:  # not a failure to shrink (nor flaky)
                failure["mode"] = exc
                return
            self._count("hypothesis")
            self.ranges.add(problem)
            self.max_eps = max(self.max_eps, ev.eps_out)
            found = self.book.offer(ev)
            if found:
                raise _Mismatch(found[0])

        try:
            with pinned_hypothesis():
                property_()
        except _Mismatch as exc:
            self.mismatch, self.found_by = exc.mismatch, "hypothesis (shrunk)"
        except SequenceFault as fault:
            self.fault, self.fault_found_by = fault, "hypothesis (shrunk)"
        except Flaky as exc:
            self.flaky = type(exc).__name__
        if "mode" in failure:
            raise failure["mode"]

    def confirm(self) -> None:
        """Evaluate the counterexample's problem again: an E[g] that moves is ``nondeterministic``."""
        m = self.mismatch
        if m is None or self.fault is not None:
            return
        ev = m.evaluation
        if getattr(self.evaluator, "connected", True) is False:  # E[g] = 0 for want of a path
            self.fault = SequenceFault("no-grad", NO_PATH_TEXT, problem=ev.problem)
            self.fault_found_by = f"the counterexample found by {self.found_by}"
            return
        confirm = getattr(self.evaluator, "confirm_counterexample", None)
        if confirm is not None:  # what vmap computed must be what plain calls compute
            try:
                confirm(ev.problem)
            except SequenceFault as fault:
                self.fault, self.fault_found_by = fault, "re-checking the counterexample"
                return
        for _ in range(DETERMINISM_RECHECKS):
            try:
                (again,) = self.evaluator.evaluate(
                    [ev.problem], rtol=self.rtol, atol=self.atol, check_determinism=False
                )
            except SequenceFault as fault:  # it ran before: only a loss that changes gets here
                self.fault, self.fault_found_by = fault, "re-checking the counterexample"
                return
            diff = np.abs(again.mean - ev.mean)
            allowed = (
                DETERMINISM_ULPS * ev.eps_out * (np.abs(ev.mean) + np.abs(again.mean) + ev.magnitude)
            )
            if not np.all(diff <= allowed):
                break
        else:
            return
        self.fault = SequenceFault(
            "nondeterministic",
            "gave a different E[g] when the counterexample's problem was evaluated again "
            f"(largest change {float(diff.max()):.3g}); the exact checker needs a deterministic "
            "function of the batch (no random numbers, no state kept between calls)",
            problem=ev.problem,
        )
        self.fault_found_by = f"re-checking the counterexample found by {self.found_by}"


NO_PATH_TEXT = (
    "returned a loss with no gradient path to the policy on any batch (it requires grad, but no "
    "backward pass reached log_probs, logits or the model: a fresh tensor such as "
    "torch.tensor(0.0, requires_grad=True), or one built from detached values), so minimising "
    "it cannot move the policy"
)
"""The ``no-grad`` fault of a loss that requires grad but never depends on the policy
(issue 15, F5: it was "biased" with ``c = 0``).  A loss without a path on some batches only
(a filter returning a fresh zero where nothing is learnt) is judged as usual: its gradient
there is 0."""


def evaluate_checked(
    evaluator: Any,
    problems: list[SequenceProblem],
    *,
    rtol: float | None,
    atol: float,
    check_determinism: bool,
) -> list[Evaluation]:
    """The evaluator's :class:`Evaluation` of problems of one shape; on the multiset route the
    re-ordered copies too, which must agree (else :class:`RouteChanged`, with the batch)."""
    evs: list[Evaluation] = evaluator.evaluate(
        problems, rtol=rtol, atol=atol, check_determinism=check_determinism
    )
    shape = problems[0].shape
    if shape.route != "multiset" or shape_data(shape.on_route("reordered")).batches.size == 0:
        return evs
    copies = [
        dataclasses.replace(pr, shape=shape.on_route("reordered"), _cache={}) for pr in problems
    ]
    again: list[Evaluation] = evaluator.evaluate(
        copies, rtol=rtol, atol=atol, check_determinism=False
    )
    for ev, other in zip(evs, again, strict=True):
        reason = _asymmetry(ev, other)
        if reason:
            raise RouteChanged(reason)
    return evs


def _asymmetry(ev: Evaluation, other: Evaluation) -> str:
    r"""Why a problem's multisets and their re-ordered copies (``other``) disagree ("" when they agree).

    Per batch, the gradients must agree within the round-off bound of one batch,
    :data:`ROUNDOFF_SAFETY` :math:`B\,T\,\epsilon\,(\max(|g_b|, |g'_b|) + S)` (:math:`S` the
    size of the values that may cancel, as in :meth:`Evaluation.rtol_scale`; a user's
    ``rtol``/``atol`` replace it, as in the tolerance of :math:`E[g]`), and so must the token
    weights binned by prompt, response and position.
    """
    pr, copy = ev.problem, other.problem
    shape = pr.shape
    data, moved = shape_data(shape), shape_data(copy.shape)
    assert moved.source is not None and ev.per_batch is not None and other.per_batch is not None
    eps = max(ev.eps_out, other.eps_out)
    size = ev._size()
    first, again = ev.per_batch[moved.source], other.per_batch

    def allowed(a: Any, b: Any, scale: float) -> Any:
        big = np.maximum(np.abs(a), np.abs(b))
        if ev.rtol is not None:
            return ev.atol + ev.rtol * (big + scale)
        positions = shape.rows * shape.max_len
        tiny = TINY.get(eps, TINY[EPS64])
        return ROUNDOFF_SAFETY * (positions * eps * (big + scale) + tiny) + ev.atol

    where = asymmetry(first, again, allowed(first, again, size))
    what = "gradients"
    if where is None and ev._raw_weights is not None and other._raw_weights is not None:
        r = shape.space.num_responses
        w1 = binned_weights(ev._raw_weights[moved.source], data.batches[moved.source], data.prompt, r)
        w2 = binned_weights(other._raw_weights, moved.batches, moved.prompt, r)
        scale = float(max(np.abs(w1).max(initial=0.0), np.abs(w2).max(initial=0.0)))
        where, what = asymmetry(w1, w2, allowed(w1, w2, scale)), "token weights"
    if where is None:
        return ""
    b = int(moved.source[where])
    rows = ", ".join(_row_text(shape, pr, data.batches[b]))
    again_rows = ", ".join(_row_text(shape, pr, moved.batches[where]))
    return (
        f"it is not symmetric in the rows of a prompt's group: the batch [{rows}] and its re-ordering "
        f"[{again_rows}] gave different {what} ({shape.describe()}, {pr.label}), so every ordered "
        "batch is enumerated instead of one ordering of each multiset"
    )


def _row_text(shape: Shape, problem: SequenceProblem, ids: Any) -> list[str]:
    space = shape.space
    prompt = shape_data(shape).prompt
    return [
        f"p{int(p)}: {space.strings[int(r)]}" + (" (truncated)" if space.truncated[int(r)] else "")
        for p, r in zip(prompt, ids, strict=True)
    ]


FLOAT32_EPS = float(np.finfo(np.float32).eps)
"""A float64 counterexample within the float32 round-off bound says so (the verdict stays)."""


ROUNDOFF_DTYPES = (
    ("float32", FLOAT32_EPS),
    ("bfloat16", 2.0**-7),
    ("float16", float(np.finfo(np.float16).eps)),
)
"""Coarser dtypes a counterexample may be the round-off of (16-bit ones only when seen in the loss)."""


def _roundoff_note(
    run: _Run, evaluator: Any, opts: dict[str, Any], budget: int, *, seen: set[str]
) -> RoundoffNote | None:
    """Issue 9: a counterexample within a coarser dtype's round-off says so, with the verdict at that precision.

    The dtype must be float32, or a 16-bit dtype the loss was seen computing in, and its
    bound must still be precise enough to tell a scale (``|tau| < |grad J| / 100``).  The
    verdict itself stays strict; the note reruns the whole check with the ``rtol`` that
    accepts that round-off.
    """
    m = run.mismatch
    if m is None or run.fault is not None or run.rtol is not None or m.kind == "nonpositive":
        return None
    ev = m.evaluation
    g = norm(ev.gradient)
    found: tuple[str, float] | None = None
    for dtype, eps in ROUNDOFF_DTYPES:
        if eps <= ev.eps_out or (dtype != "float32" and dtype not in seen):
            continue
        tol = ev.tolerance_at(eps)
        if norm(tol) * REFERENCE_MIN_SIGNAL >= g:
            continue
        if np.all(np.abs(m.discrepancy) <= tol + m.reference.uncertainty * np.abs(ev.gradient)):
            found = (dtype, eps)
            break
    if found is None:
        return None
    dtype, eps = found
    denominator = ev.rtol_scale()
    need = np.abs(m.discrepancy) - m.reference.uncertainty * np.abs(ev.gradient) - ev.atol
    needed = float(np.max(need / np.where(denominator > 0, denominator, np.inf)))
    positions = max((s.rows * s.max_len for s in run.shapes), default=1)
    rtol, atol = roundoff_tolerance(eps, positions, run.atol)
    rtol = max(rtol, _round_up(2.0 * needed))
    again = _execute(evaluator, opts, budget, rtol=rtol, atol=atol, multiset=run.multiset)
    decision = decide(
        fault=again.fault is not None,
        mismatch=again.mismatch is not None,
        references=again.book.references(),
        keys=sorted({s.key for s in again.shapes}),
    )
    relative = relative_residual(m)
    return RoundoffNote(
        relative_residual=relative,
        ulps=ulps(relative),
        dtype=dtype,
        rtol=rtol,
        atol=atol,
        verdict=decision.verdict,
        scale=None if decision.scale is None else dict(decision.scale),
    )


def _scale_note(
    run: _Run, evaluator: Any, opts: dict[str, Any], budget: int, *, seen: set[str]
) -> ScaleNote | None:
    """A ``scaled`` verdict whose every ``c`` is a coarser dtype's rounding of a simple value says so.

    Like :func:`_roundoff_note` (float32 always, a 16-bit dtype only when seen in the loss;
    never under a user ``rtol``): at least one ``c`` must depart from its value by more
    than its uncertainty (else the value itself was measured), and the note reruns the
    whole check with the ``rtol`` that accepts that dtype's round-off.  The verdict stays.
    """
    if run.mismatch is not None or run.fault is not None or run.flaky is not None or run.rtol is not None:
        return None
    refs = run.book.references()
    keys = sorted({s.key for s in run.shapes})
    decision = decide(fault=False, mismatch=False, references=refs, keys=keys)
    if decision.verdict != "scaled" or decision.scale is None or decision.uncertainty is None:
        return None
    for dtype, eps in ROUNDOFF_DTYPES:
        if eps <= run.max_eps or (dtype != "float32" and dtype not in seen):
            continue
        simple = {
            key: simple_value(int(key[0]), c, eps) if isinstance(key, tuple) else None
            for key, c in decision.scale.items()
        }
        values = {key: v for key, v in simple.items() if v is not None}
        if len(values) < len(simple) or all(
            abs(decision.scale[key] - v) <= decision.uncertainty[key] for key, (_, v) in values.items()
        ):
            continue
        positions = max((s.rows * s.max_len for s in run.shapes), default=1)
        rtol, atol = roundoff_tolerance(eps, positions, run.atol)
        again = _execute(evaluator, opts, budget, rtol=rtol, atol=atol, multiset=run.multiset)
        verdict = decide(
            fault=again.fault is not None,
            mismatch=again.mismatch is not None,
            references=again.book.references(),
            keys=sorted({s.key for s in again.shapes}),
        )
        return ScaleNote(
            dtype=dtype,
            epsilon=eps,
            values={key_text(key): text for key, (text, _) in values.items()},
            departure={key_text(key): decision.scale[key] / v - 1.0 for key, (_, v) in values.items()},
            rtol=rtol,
            atol=atol,
            verdict=verdict.verdict,
            scale=None if verdict.scale is None else {key_text(k): c for k, c in verdict.scale.items()},
            inside="the loss",
        )
    return None


def roundoff_tolerance(eps: float, positions: int, atol: float = 0.0) -> tuple[float, float]:
    """``(rtol, atol)`` accepting the round-off of a dtype of epsilon ``eps`` on batches of ``positions``
    token positions (``B T``): the rule of the round-off and scale notes, public for a caller that
    judges at a declared precision (:mod:`properties.audit.core`).

    ``rtol`` is :data:`ROUNDOFF_SAFETY` ``* positions * eps`` rounded up to one digit; ``atol`` adds
    :data:`ROUNDOFF_SAFETY` times the dtype's smallest normal number (below it relative round-off
    no longer holds: it flushes).

    >>> rtol, atol = roundoff_tolerance(FLOAT32_EPS, 16)
    >>> rtol, f"{atol:.2g}"
    (7e-05, '3.8e-37')
    """
    return _round_up(ROUNDOFF_SAFETY * positions * eps), atol + ROUNDOFF_SAFETY * TINY.get(eps, 0.0)


def _round_up(x: float) -> float:
    """``x`` rounded up to one significant digit.

    >>> _round_up(1.53e-5), _round_up(2e-5)
    (2e-05, 2e-05)
    """
    if x <= 0 or not math.isfinite(x):
        return x
    unit = 10.0 ** math.floor(math.log10(x))
    return float(f"{math.ceil(round(x / unit, 9)) * unit:.1g}")


def _make_run(evaluator: Any, opts: dict[str, Any], budget: int, *, multiset: bool = False) -> _Run:
    return _Run(
        evaluator,
        ks=opts["group_sizes"],
        prompts=opts["num_prompts"],
        vocab_size=opts["vocab_size"],
        max_len=opts["max_len"],
        kl_coef=opts["kl_coef"],
        off_policy=opts["off_policy"],
        seed=opts["seed"],
        max_examples=opts["max_examples"],
        rtol=opts["rtol"],
        atol=opts["atol"],
        budget=budget,
        tool_tokens=bool(opts.get("tool_tokens", False)),
        sampling_mismatch=bool(opts.get("sampling_mismatch", False)),
        values=str(opts.get("values") or ""),
        multiset=multiset,
    )


def _batch_rows(problem: SequenceProblem, batch: int) -> tuple[tuple[int, str, float], ...]:
    data = shape_data(problem.shape)
    ids = data.batches[batch]
    space = problem.shape.space
    return tuple(
        (
            int(p),
            space.strings[int(r)] + (" (truncated)" if space.truncated[int(r)] else ""),
            float(problem.rewards[p, r]),
        )
        for p, r in zip(data.prompt, ids, strict=True)
    )


def _error_from_fault(fault: SequenceFault, found_by: str) -> SequenceError:
    pr = fault.problem
    rows: tuple[tuple[int, str, float], ...] = ()
    samples: Any = np.zeros(0, dtype=np.int64)
    rewards: Any = np.zeros(0)
    if pr is not None and fault.batch is not None:
        rows = _batch_rows(pr, fault.batch)
        data = shape_data(pr.shape)
        samples = data.batches[fault.batch]
        rewards = pr.rewards[data.prompt, samples]
    return SequenceError(
        kind=fault.kind,
        detail=fault.detail,
        logits=np.zeros(0) if pr is None else pr.theta.ravel(),
        samples=samples,
        rewards=rewards,
        scores=None if pr is None else pr.rewards.ravel(),
        k=None if pr is None else pr.shape.k,
        hint=fault.hint,
        found_by=found_by,
        shape=None if pr is None else pr.shape,
        problem_label="" if pr is None else pr.label,
        batch=rows,
    )


def _coordinates(problem: SequenceProblem) -> tuple[tuple[int, str, str], ...]:
    from impl.sequence import token_name

    space = problem.shape.space
    return tuple(
        (p, space.node_string(n), token_name(v))
        for p in range(problem.shape.num_prompts)
        for n in range(space.num_rows)
        for v in range(space.vocab_size)
    )


MISFIT_SHOWN = 0.5
"""A response joins the weight table when its misfit is at least this fraction of the largest."""

MAX_WEIGHT_ROWS = 3
"""At most this many responses in the weight table."""


def _length_pair(ev: Evaluation, multiple: float) -> tuple[WeightRow, ...]:
    r"""The responses whose tokens get the weights furthest from REINFORCE's form (the weight table).

    Per prompt, the expected per-token weight :math:`\bar\omega(y)` is compared with
    :math:`c\,(\pi/\pi_{old})(y) A(y)/P` at the reference multiple ``c`` (only a constant
    baseline :math:`b\,(\pi/\pi_{old})(y)` is fitted, weighted by :math:`\pi_{old}`), so
    that the misfit is where the estimator departs from ``c grad J``, not spread by a fitted
    ``c``.  Shown: the response with the largest misfit, one of another length (the
    contrast a length bias needs) and any truncated response with a misfit of at least
    :data:`MISFIT_SHOWN` of the largest (a truncation bug), at most :data:`MAX_WEIGHT_ROWS`.
    """
    omega = ev.token_weights
    if omega is None:
        return ()
    pr = ev.problem
    space = pr.shape.space
    pi = response_probs(space, pr.theta)
    old = response_probs(space, pr.behaviour)
    a = advantages(space, pr.theta, pr.rewards, kl_coef=pr.kl_coef, ref_theta=pr.ref_theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(old > 0, pi / old, 0.0)
    target = ratio * a / pr.shape.num_prompts  # the target is the prompts' mean objective
    best: tuple[float, int, list[int]] | None = None
    for p in range(pr.shape.num_prompts):
        visible = old[p] > 1e-12
        if visible.sum() < 1:
            continue
        per_token = np.array(
            [np.nanmean(omega[p, r, : space.lengths[r]]) for r in range(space.num_responses)]
        )
        rest = per_token[visible] - multiple * target[p][visible]
        w = np.sqrt(old[p][visible])
        design = ratio[p][visible][:, None]
        coef, *_ = np.linalg.lstsq(design * w[:, None], rest * w, rcond=None)
        residual = np.zeros(space.num_responses)
        residual[visible] = rest - design[:, 0] * coef[0]
        order = [int(r) for r in np.argsort(-np.abs(residual)) if visible[r]]
        top = abs(residual[order[0]])
        if not top > 0:
            continue
        rows = [order[0]]
        other = next((r for r in order if space.lengths[r] != space.lengths[order[0]]), None)
        if other is None and len(order) > 1:
            other = order[1]
        if other is not None:
            rows.append(other)
        rows += [
            r
            for r in order
            if space.truncated[r] and r not in rows and abs(residual[r]) >= MISFIT_SHOWN * top
        ]
        if best is None or top > best[0]:
            best = (top, p, rows[:MAX_WEIGHT_ROWS])
    if best is None:
        return ()
    _, p, chosen = best
    out = []
    for r in sorted(chosen, key=lambda r: (space.lengths[r], r)):
        length = int(space.lengths[r])
        out.append(
            WeightRow(
                prompt=p,
                response=space.strings[r] + (" (truncated)" if space.truncated[r] else ""),
                length=length,
                probability=float(old[p, r]),
                reward=float(pr.rewards[p, r]),
                weights=tuple(float(x) for x in omega[p, r, :length]),
                reinforce=float(multiple * target[p, r]),
                current=None if pr.old_theta is None else float(pi[p, r]),
            )
        )
    return tuple(out)


def _counterexample(
    m: Mismatch[Evaluation], found_by: str, note: RoundoffNote | None = None
) -> SequenceCounterexample:
    ev = m.evaluation
    pr = ev.problem
    ref = m.reference.evaluation.problem
    return SequenceCounterexample(
        logits=pr.theta.ravel(),
        scores=pr.rewards.ravel(),
        k=pr.shape.k,
        expectation=ev.mean.ravel(),
        gradient=ev.gradient.ravel(),
        multiple=m.multiple,
        residual=m.residual.ravel(),
        reference_multiple=m.reference.multiple,
        reference_logits=ref.theta.ravel(),
        reference_scores=ref.rewards.ravel(),
        discrepancy=m.discrepancy.ravel(),
        tolerance=m.allowed.ravel(),
        reason=m.reason.replace(f"for {pr.shape.key!r}", f"for {key_text(pr.shape.key)}"),
        found_by=found_by
        if found_by != "battery"
        else f"battery ({pr.label.removeprefix('battery: ')})",
        roundoff=note,
        shape=pr.shape,
        theta=pr.theta,
        rewards=pr.rewards,
        ref_theta=pr.ref_theta,
        old_theta=pr.old_theta,
        kl_coef=pr.kl_coef,
        sampler_theta=pr.sampler_theta,
        value_table=pr.value_table,
        reference_label=ref.label,
        kind=m.kind,
        coordinates=_coordinates(pr),
        responses=pr.shape.space.strings,
        length_pair=_length_pair(ev, m.reference.multiple),
        weights_complete=not ev.direct,
    )


def _execute(
    evaluator: Any,
    opts: dict[str, Any],
    budget: int,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    multiset: bool = False,
    precision: float | None = None,
) -> _Run:
    """The battery, then Hypothesis, then the re-check of a counterexample (``rtol``/``atol`` override).

    ``multiset``: shapes where it is cheaper take the multiset route (raises
    :class:`RouteChanged` when the loss is not symmetric within a group).  ``precision``: the
    epsilon of a declared dtype; the run is judged at its round-off on the planned shapes
    (:func:`roundoff_tolerance` on their largest batch, the round-off note's rule).
    """
    if rtol is not None:
        opts = {**opts, "rtol": rtol}
    if atol is not None:
        opts = {**opts, "atol": atol}
    run = _make_run(evaluator, opts, budget, multiset=multiset)
    if precision is not None:
        positions = max((s.rows * s.max_len for s in run.shapes), default=1)
        run.rtol, run.atol = roundoff_tolerance(precision, positions, run.atol)
    run.run_battery()
    if run.fault is None and run.mismatch is None:
        run.run_hypothesis()
    run.confirm()
    return run


def _execute_with_notes(
    evaluator: Any, opts: dict[str, Any], budget: int, route: Route, *, seen: set[str]
) -> tuple[_Run, RoundoffNote | None, ScaleNote | None]:
    """:func:`_execute` and the round-off and scale notes on the route's batches; re-planned on
    ordered batches when the loss shows an asymmetry (``route`` keeps the reason)."""
    while True:
        try:
            run = _execute(evaluator, opts, budget, multiset=route.multiset)
            # the notes rerun the check: a new problem may show vmap and plain calls apart
            note = _roundoff_note(run, evaluator, opts, budget, seen=seen)
            return run, note, _scale_note(run, evaluator, opts, budget, seen=seen)
        except RouteChanged as exc:
            route.abandon(str(exc))
