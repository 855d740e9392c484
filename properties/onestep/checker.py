r"""The estimator checker: hand it your estimator, get a verdict you can trust.

A REINFORCE-style estimator ``fn(logits, samples, rewards) -> gradient`` should have
expectation :math:`E[g] = \nabla_\theta J`, :math:`J = E_{X\sim\mathrm{softmax}(\theta)}[s(X)]`.
:func:`check_estimator` decides, **exactly** (no sampling), which of four verdicts holds:

* ``"unbiased"``: :math:`E[g] = \nabla J` on every problem tried, for every group size ``k``;
* ``"scaled"``: :math:`E[g] = c_k \nabla J` with one constant :math:`c_k > 0` per ``k``
  (:math:`c_k \ne 1` for some ``k``), e.g. the self-inclusive group mean, :math:`(k-1)/k`;
* ``"biased"``: anything else, with the simplest counterexample found;
* ``"error"``: the estimator raised or exited, returned ``None``/a wrong shape/a non-float
  dtype/non-finite values, was not deterministic for fixed inputs, wrote into its inputs,
  or (batched) computed a row from other rows of the batch; or its precision is too
  coarse to tell :math:`c_k` from 1 (kind ``imprecise``, e.g. float16 output).

**Precedence** (what is reported when several hold): an error of the estimator beats a
counterexample (``error`` > ``biased``), which beats an imprecise scale (``error``, kind
``imprecise``), which beats ``scaled`` > ``unbiased``.  To make the first rule hold, a
counterexample does not stop the battery: every battery problem (all shapes and sizes:
``n = 2`` to 16, ``n != k``, ``k = 1`` when asked) still runs, looking for errors; only
the Hypothesis search stops at the first counterexample.  A counterexample is
re-evaluated before it is reported: if the estimator then returns different values it
is ``nondeterministic`` (an error), not biased.

For a problem ``(theta, s, k)`` the expectation is the finite sum
:math:`E[g] = \sum_{x\in\{0..n-1\}^k} \prod_j p_{x_j}\; g(\theta, x, s(x))`, computed
in one batched call over all :math:`n^k` groups.  Problems come first from a fixed
battery of hard cases (ties, negative, tiny and huge scores, :math:`p` down to
:math:`10^{-44}`, :math:`\nabla J = 0`, logits shifted by up to :math:`\pm 1000`, ``n`` up
to 16 at small ``k``), then from Hypothesis (seeded, shrinking to a minimal
counterexample; pinned so that the problems depend on the seed only, and writing
nothing to disk).  Every report says which region was covered (:class:`CheckedRegion`).
Tolerances come from the output dtype and the size of the inputs
(:data:`properties.onestep.problems.ROUNDOFF_SAFETY`): float32 round-off is accepted
for a float32 output, a float64 bias of one part in a million is not.  When a
counterexample is within the round-off of a coarser dtype (float32, bfloat16, float16),
the verdict stays strict but the report says so, with the verdict at that precision
(:class:`RoundoffNote`).  Range likewise: a counterexample whose scores lie outside
float32's normal range (float32 flushes them to zero, or overflows) comes with the
verdict at representable magnitudes, every problem rescaled into that range
(:class:`RangeNote`); Hypothesis does not shrink toward such scores unless the bias is
there at normal magnitudes too.

**Several prompts per batch** (``num_prompts=(1, 2)``): the estimator is called as RL
code pools a batch, ``fn(logits (P*k, n), samples (P*k,), rewards (P*k,), group (P*k,))``,
each prompt with its own problem; the target is the gradient of the mean objective over
prompts, and one scale constant is measured per ``(k, P)`` (see :func:`check_estimator`;
the engine is :mod:`properties.onestep.prompts`).

>>> from impl.estimators import reinforce, group_mean_baseline
>>> check_estimator(reinforce, batched=True, max_examples=10).verdict
'unbiased'
>>> report = check_estimator(group_mean_baseline, batched=True, max_examples=10)
>>> report.verdict, {k: round(c, 6) for k, c in report.scale.items()}
('scaled', {2: 0.5, 3: 0.666667, 4: 0.75})
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from impl.errors import InvalidArgument, describe
from impl.types import Estimator, FloatArray
from properties.judging.seam import elapsed
from properties.judging.user_code import name_of
from properties.judging.verdict import (
    Verdict,
)
from properties.onestep.guard import (
    EstimatorFault,
    GuardedEstimator,
)
from properties.onestep.messages import (
    _c,
    _message,
)
from properties.onestep.problems import (
    evaluate,
)
from properties.onestep.prompts import (
    MAX_NUM_PROMPTS,
    MAX_SAMPLES_PER_BATCH,
    PromptsGuard,
    evaluate_prompts,
)
from properties.onestep.results import (
    ERROR_KINDS,
    CheckedRegion,
    Counterexample,
    EstimatorCheckFailure,
    EstimatorError,
    EstimatorReport,
    RangeNote,
    RoundoffNote,
)
from properties.onestep.run import (
    ROUNDOFF_NOTE_ULPS,
    _check,
    _counterexample,
    _decide,
    _keyed,
    _range_note,
    _roundoff_note,
    _Run,
    _scale_note,
)

DEFAULT_GROUP_SIZES = (2, 3, 4)
"""Group sizes checked unless told otherwise (add 1 to check ``k = 1``)."""

DEFAULT_MAX_EXAMPLES = 100
"""Generated problems after the battery (the battery alone: ``max_examples=0``)."""

MAX_GROUP_SIZE = 12
"""Largest ``k`` accepted (``n`` is reduced for large ``k`` so that ``n**k <= 4096``)."""

SCALE_MATCH_UNCERTAINTIES = 4.0
""":func:`assert_scaled` accepts a measured ``c_k`` within this many uncertainties of the claim."""

SCALE_MATCH_REL = 1e-12
"""... plus this relative slack (a perfectly measured scale has uncertainty ~0)."""


# --------------------------------------------------------------------------- validation


def _validate(
    fn: Any,
    group_sizes: Any,
    seed: Any,
    max_examples: Any,
    batched: Any,
    rtol: Any,
    atol: Any,
    name: Any,
    progress: Any,
) -> tuple[tuple[int, ...], int, int]:
    if not callable(fn):
        raise InvalidArgument(f"Expected a callable estimator but got {describe('fn', fn)}")
    if not isinstance(batched, bool):
        raise InvalidArgument(f"Expected batched=True or False but got {describe('batched', batched)}")
    if isinstance(group_sizes, str | bytes):
        raise InvalidArgument(
            f"Expected a sequence of group sizes but got {describe('group_sizes', group_sizes)}"
        )
    try:
        ks = tuple(group_sizes)
    except KeyboardInterrupt:
        raise
    except BaseException:  # a hostile iterable: say what it was, not its traceback
        raise InvalidArgument(
            f"Expected a sequence of group sizes but got {describe('group_sizes', group_sizes)}"
        ) from None
    if not ks or any(
        isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_GROUP_SIZE
        for k in ks
    ):
        raise InvalidArgument(
            f"Expected a non-empty sequence of integers 1 <= k <= {MAX_GROUP_SIZE} but got "
            f"{describe('group_sizes', group_sizes)}"
        )
    for label, value, low in (("seed", seed, 0), ("max_examples", max_examples, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise InvalidArgument(f"Expected an integer >= {low} but got {describe(label, value)}")
    if rtol is not None and (
        isinstance(rtol, bool)
        or not (isinstance(rtol, float | int) and math.isfinite(rtol) and rtol > 0)
    ):
        raise InvalidArgument(f"Expected rtol=None or a finite float > 0 but got {describe('rtol', rtol)}")
    if isinstance(atol, bool) or not (
        isinstance(atol, float | int) and math.isfinite(atol) and atol >= 0
    ):
        raise InvalidArgument(f"Expected a finite atol >= 0 but got {describe('atol', atol)}")
    if name is not None and not isinstance(name, str):
        raise InvalidArgument(f"Expected name=None or a str but got {describe('name', name)}")
    if progress is not None and not callable(progress):
        raise InvalidArgument(
            f"Expected progress=None or a callable (done, planned) but got {describe('progress', progress)}"
        )
    return tuple(sorted({int(k) for k in ks})), int(seed), int(max_examples)


def _validate_prompts(
    num_prompts: Any, batched: bool, ks: tuple[int, ...]
) -> tuple[int, ...] | None:
    """``None`` or the sorted ``P`` to check (bad values: :class:`InvalidArgument`)."""
    if num_prompts is None:
        return None
    if batched:
        raise InvalidArgument(
            "batched=True and num_prompts cannot be combined: the multi-prompt protocol calls "
            "fn(logits (P*k, n), samples (P*k,), rewards (P*k,), group (P*k,)) once per batch, "
            f"{describe('num_prompts', num_prompts)}"
        )
    message = (
        f"Expected num_prompts=None or a non-empty sequence of integers 1 <= P <= "
        f"{MAX_NUM_PROMPTS} but got {describe('num_prompts', num_prompts)}"
    )
    if isinstance(num_prompts, str | bytes):
        raise InvalidArgument(message)
    try:
        values = tuple(num_prompts)
    except KeyboardInterrupt:
        raise
    except BaseException:
        raise InvalidArgument(message) from None
    if not values or any(
        isinstance(p, bool) or not isinstance(p, int | np.integer) or not 1 <= p <= MAX_NUM_PROMPTS
        for p in values
    ):
        raise InvalidArgument(message)
    prompts = tuple(sorted({int(p) for p in values}))
    if max(ks) * max(prompts) > MAX_SAMPLES_PER_BATCH:
        raise InvalidArgument(
            f"Expected k*P <= {MAX_SAMPLES_PER_BATCH} for every group size and number of prompts "
            f"(2**(k*P) joint batches, one call each) but got group_sizes={ks!r} and "
            f"{describe('num_prompts', num_prompts)}; check fewer prompts or smaller groups"
        )
    return prompts


# --------------------------------------------------------------------------- the API


def check_estimator(
    fn: Callable[..., Any],
    *,
    group_sizes: Iterable[int] = DEFAULT_GROUP_SIZES,
    seed: int = 0,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    batched: bool = False,
    rtol: float | None = None,
    atol: float = 0.0,
    name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    num_prompts: Iterable[int] | None = None,
) -> EstimatorReport:
    r"""Decide whether :math:`E[g] = \nabla_\theta E_{X\sim\mathrm{softmax}(\theta)}[s(X)]` exactly.

    ``fn(logits, samples, rewards)``: per group (``batched=False``) ``logits`` float64
    ``(n,)``, ``samples`` int64 ``(k,)``, ``rewards`` float64 ``(k,)``, returning ``(n,)``;
    batched (``batched=True``) ``samples``/``rewards`` ``(B, k)`` returning ``(B, n)``, each
    row a function of its own group only (the checker also calls it on shuffled rows and
    sub-batches).  The inputs are read-only; float64, float32 and float16 arrays, lists
    and tensors are accepted as results (integer, bool, complex and object are errors).

    ``group_sizes``: the ``k`` to check (include 1 to check single-sample groups);
    ``seed``/``max_examples``: the Hypothesis search after the fixed battery (the
    verdict is reproducible from them, whatever modules the caller has imported);
    ``rtol``/``atol``: override the derived round-off tolerance :math:`\tau_i` with
    ``atol + rtol * (E|g_i| + S (2 p_i + 1))`` (e.g. ``rtol=2e-5`` for an estimator that
    computes in float32 internally but returns float64); ``name``: how to call the
    estimator in the report; ``progress(done, planned)``: called after every problem
    (``planned`` is an estimate: the battery plus ``max_examples``, at least ``done``);
    an exception it raises is re-raised once the check has finished.

    ``num_prompts`` (e.g. ``(1, 2)``): check the **multi-prompt protocol** instead, as RL
    code pools a batch: for every ``P`` given, ``fn(logits, samples, rewards, group)``
    with ``P`` prompts of ``k`` responses each, ``logits`` float64 ``(P*k, n)`` (row ``j``
    holds the logits of row ``j``'s prompt), ``samples`` int64 ``(P*k,)``, ``rewards``
    float64 ``(P*k,)`` and ``group`` int64 ``(P*k,)`` ``= np.repeat(np.arange(P), k)``
    (prompt-major, contiguous), all read-only; it returns ``(P*k, n)``, row ``j`` being
    row ``j``'s contribution to the gradient with respect to the logits of its own
    prompt (the estimate for prompt ``p`` is the sum of its rows).  Each prompt has its
    own problem (logits and scores, one ``n`` for all prompts of a problem).  The target is
    the gradient of the **mean** objective over prompts, :math:`J = \frac1P\sum_p J_p`,
    i.e. :math:`\nabla J_p / P` for prompt ``p``'s coordinates: the RL objective is an
    expectation over prompts, so a loss averaging over all ``P*k`` rows is unbiased, a
    baseline pooled over the batch is scaled or biased, and whitening over the batch is
    biased.  :math:`E[g]` is exact, summed over all :math:`n^{kP}` joint batches (one call
    each; ``n`` is capped so that a problem takes at most 1024 calls, and ``k*P <= 10``); a
    scale constant is measured per ``(k, P)`` (``report.scale`` is keyed by ``(k, P)``).
    ``batched=True`` does not combine with it, and the check that rows are independent
    does not apply: pooling the rows is what this protocol declares.

    Never raises for misbehaving user code (that is the ``"error"`` verdict; only a
    ``KeyboardInterrupt`` stops the run); raises :class:`impl.errors.InvalidArgument`
    for bad arguments to the checker itself.  Writes nothing to disk.

    >>> import numpy as np
    >>> def sign_bug(logits, samples, rewards):
    ...     p = np.exp(logits - logits.max()); p /= p.sum()
    ...     return -np.mean(rewards[:, None] * (np.eye(p.size)[samples] - p), axis=0)
    >>> report = check_estimator(sign_bug)
    >>> report.verdict, report.counterexample.multiple
    ('biased', -1.0)

    Several prompts per batch: a REINFORCE loss averaged over all ``P*k`` rows is unbiased,
    a baseline that is the mean reward of the whole batch is scaled by ``(Pk-1)/(Pk)``:

    >>> def batch_baseline(logits, samples, rewards, group):
    ...     p = np.exp(logits - logits.max(axis=1, keepdims=True))
    ...     p /= p.sum(axis=1, keepdims=True)
    ...     w = (rewards - rewards.mean()) / rewards.size
    ...     return w[:, None] * (np.eye(p.shape[1])[samples] - p)
    >>> report = check_estimator(batch_baseline, group_sizes=(2,), num_prompts=(1, 2),
    ...                          max_examples=5)
    >>> report.verdict, {key: round(c, 9) for key, c in report.scale.items()}
    ('scaled', {(2, 1): 0.5, (2, 2): 0.75})
    """
    ks, seed, max_examples = _validate(
        fn, group_sizes, seed, max_examples, batched, rtol, atol, name, progress
    )
    prompts = _validate_prompts(num_prompts, batched, ks)
    start = time.perf_counter()
    with warnings.catch_warnings(), np.errstate(**np.geterr()):  # user code may change both
        run = _check(
            fn, ks, seed=seed, max_examples=max_examples, batched=batched,
            rtol=None if rtol is None else float(rtol), atol=float(atol), progress=progress,
            prompts=prompts,
        )
        shown = name_of(fn) if name is None else str.__str__(name)  # a str subclass stays inert
        report = _make_report(shown, run, start)
    if run.progress_error is not None:
        raise run.progress_error
    return report


def _make_report(name: str, run: _Run, start: float) -> EstimatorReport:
    decision = _decide(run)
    verdict: Verdict = decision.verdict
    cex = None
    error = run.error
    if verdict == "biased":
        assert run.mismatch is not None
        cex = _counterexample(
            run, run.mismatch, _roundoff_note(run, run.mismatch), _range_note(run, run.mismatch)
        )
    if verdict == "error" and error is None:
        error = run.imprecise_error(decision.imprecise)
    scale = _keyed(decision.scale)
    unc = _keyed(decision.uncertainty)
    unchecked = run.unchecked() if verdict in ("unbiased", "scaled") else ()
    seconds = elapsed(start)
    inside = run.guard.user_seconds
    timing = {
        "battery": run.clock["battery"],
        "hypothesis": run.clock["hypothesis"],
        "estimator": inside,
        "evaluation": run.clock["evaluation"],
        "judging": run.clock["judging"],
        "generation": run.clock["generation"],
    }
    timing["other"] = max(
        seconds - sum(timing[k] for k in ("estimator", "evaluation", "judging", "generation")), 0.0
    )
    report = EstimatorReport(
        name=name,
        verdict=verdict,
        scale=scale,
        scale_uncertainty=unc,
        counterexample=cex,
        error=error,
        group_sizes=run.ks,
        seed=run.seed,
        max_examples=run.max_examples,
        batched=run.batched,
        problems_checked=run.problems,
        estimator_calls=run.guard.calls,
        estimator_seconds=inside,
        seconds=seconds,
        message="",
        region=run.region.region(),
        protocol="one-step",
        timing=timing,
        num_prompts=run.prompts,
        partial=bool(unchecked),
        unchecked=unchecked,
        scale_note=_scale_note(run, decision) if verdict == "scaled" else None,
    )
    object.__setattr__(report, "message", _message(report))
    return report


# --------------------------------------------------------------------------- helpers


def expectation_of(
    fn: Callable[..., Any],
    logits: Any,
    scores: Any,
    k: int,
    *,
    batched: bool = False,
    num_prompts: int | None = None,
) -> tuple[FloatArray, FloatArray]:
    r"""The exact :math:`(E[g], \nabla J)` of ``fn`` on one problem: the reproduction helper.

    Misbehaviour of ``fn`` raises :class:`impl.errors.InvalidArgument` naming it.  With
    ``num_prompts`` ``P`` (the multi-prompt protocol of :func:`check_estimator`), ``logits``
    and ``scores`` are ``(P, n)`` (row ``p``: prompt ``p``'s problem) and so are both
    results, the gradient being :math:`\nabla J_p / P` (the mean objective over prompts).

    >>> from impl.estimators import group_mean_baseline
    >>> E, G = expectation_of(group_mean_baseline, [0.0, 0.0], [0.0, 1.0], k=2, batched=True)
    >>> E.tolist(), G.tolist()
    ([-0.125, 0.125], [-0.25, 0.25])
    >>> from impl.catalogue import get_multi_prompt
    >>> E, G = expectation_of(get_multi_prompt("pooled-reinforce-sum").fn, [[0.0, 0.0], [0.0, 0.0]],
    ...                       [[0.0, 1.0], [0.0, 2.0]], k=1, num_prompts=2)
    >>> E.tolist(), G.tolist()
    ([[-0.25, 0.25], [-0.5, 0.5]], [[-0.125, 0.125], [-0.25, 0.25]])
    """
    from impl._validate import float_vector, positive_int

    if num_prompts is not None:
        return _expectation_of_prompts(fn, logits, scores, k, batched, num_prompts)
    theta = float_vector(logits, "logits", min_size=2)
    s = float_vector(scores, "scores", min_size=2)
    if s.size != theta.size:
        raise InvalidArgument(f"logits and scores must have the same length but got {describe('scores', scores)}")
    k = positive_int(k, "k")
    if not isinstance(batched, bool):
        raise InvalidArgument(f"Expected batched=True or False but got {describe('batched', batched)}")
    guard = GuardedEstimator(fn, batched=batched)
    try:
        ev = evaluate(guard, theta, s, k, rtol=None, atol=0.0)
    except EstimatorFault as fault:
        raise InvalidArgument(f"the estimator misbehaved: {fault}") from None
    return ev.mean, ev.gradient


def _expectation_of_prompts(
    fn: Callable[..., Any], logits: Any, scores: Any, k: Any, batched: Any, num_prompts: Any
) -> tuple[FloatArray, FloatArray]:
    from impl._validate import positive_int

    if batched is not False:
        raise InvalidArgument(
            f"batched=True and num_prompts cannot be combined but got {describe('batched', batched)}"
        )
    if (
        isinstance(num_prompts, bool)
        or not isinstance(num_prompts, int | np.integer)
        or not 1 <= num_prompts <= MAX_NUM_PROMPTS
    ):
        raise InvalidArgument(
            f"Expected an integer 1 <= num_prompts <= {MAX_NUM_PROMPTS} but got "
            f"{describe('num_prompts', num_prompts)}"
        )
    k = positive_int(k, "k")
    arrays = []
    for label, value in (("logits", logits), ("scores", scores)):
        try:
            a = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidArgument(f"Expected a (P, n) float array but got {describe(label, value)}") from None
        if a.ndim != 2 or a.shape[0] != num_prompts or a.shape[1] < 2 or not np.all(np.isfinite(a)):
            raise InvalidArgument(
                f"Expected a finite (P, n) array with P={num_prompts} rows and n >= 2 but got "
                f"{describe(label, value)}"
            )
        arrays.append(a)
    theta, s = arrays
    if theta.shape != s.shape:
        raise InvalidArgument(f"logits and scores must have the same shape but got {describe('scores', scores)}")
    if k * num_prompts > MAX_SAMPLES_PER_BATCH or theta.shape[1] ** (k * num_prompts) > 10**6:
        raise InvalidArgument(
            f"Expected n**(k*P) <= 1e6 joint batches and k*P <= {MAX_SAMPLES_PER_BATCH} but got "
            f"n={theta.shape[1]}, k={k}, {describe('num_prompts', num_prompts)}"
        )
    guard = PromptsGuard(fn)
    try:
        ev = evaluate_prompts(guard, theta, s, k, rtol=None, atol=0.0)
    except EstimatorFault as fault:
        raise InvalidArgument(f"the estimator misbehaved: {fault}") from None
    return ev.mean, ev.gradient


def _report_or_check(fn: Any, kwargs: dict[str, Any], who: str) -> EstimatorReport:
    if isinstance(fn, EstimatorReport):
        if kwargs:
            raise InvalidArgument(
                f"{who} got a finished EstimatorReport and check options {sorted(kwargs)}; pass "
                "either a report or an estimator with its options"
            )
        return fn
    return check_estimator(fn, **kwargs)


def _require_full(report: EstimatorReport, allow_partial: bool) -> None:
    """Raise :class:`EstimatorCheckFailure` for a partial check unless ``allow_partial``."""
    if not isinstance(allow_partial, bool):
        raise InvalidArgument(
            f"Expected allow_partial=True or False but got {describe('allow_partial', allow_partial)}"
        )
    if report.partial and not allow_partial:
        raise EstimatorCheckFailure(
            report,
            f"a full check (this one was partial, not checked: {'; '.join(report.unchecked)}; "
            "pass allow_partial=True to accept it)",
        )


def assert_unbiased(
    fn: Callable[..., Any] | EstimatorReport, *, allow_partial: bool = False, **kwargs: Any
) -> EstimatorReport:
    """:func:`check_estimator` (or a finished report), raising :class:`EstimatorCheckFailure` unless ``"unbiased"``.

    A partial check (``report.partial``: less was checked than asked) fails too, unless
    ``allow_partial=True``.

    >>> from impl.estimators import group_mean_baseline
    >>> assert_unbiased(group_mean_baseline, batched=True, max_examples=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    properties.onestep.results.EstimatorCheckFailure: expected unbiased, but Estimator ... is SCALED: ...
    """
    report = _report_or_check(fn, kwargs, "assert_unbiased")
    if report.verdict != "unbiased":
        raise EstimatorCheckFailure(report, "unbiased")
    _require_full(report, allow_partial)
    return report


def assert_scaled(
    fn: Callable[..., Any] | EstimatorReport,
    scale: Mapping[Any, float] | Callable[..., float] | None = None,
    *,
    allow_partial: bool = False,
    **kwargs: Any,
) -> EstimatorReport:
    """:func:`check_estimator` (or a finished report), raising :class:`EstimatorCheckFailure` unless ``"scaled"``.

    With ``scale`` (``{k: c_k}`` or ``k -> c_k``), also require the measured :math:`c_k`
    to equal it within the measurement's uncertainty; for a check with ``num_prompts``
    ``scale`` is ``{(k, P): c}`` or ``(k, P) -> c``.  A partial check fails unless
    ``allow_partial=True`` (as in :func:`assert_unbiased`).

    >>> from impl.estimators import group_mean_baseline
    >>> r = assert_scaled(group_mean_baseline, lambda k: (k - 1) / k, batched=True, max_examples=0)
    >>> r.verdict
    'scaled'
    """
    report = _report_or_check(fn, kwargs, "assert_scaled")
    if report.verdict != "scaled":
        raise EstimatorCheckFailure(report, "scaled")
    _require_full(report, allow_partial)
    if scale is not None:
        assert report.scale is not None and report.scale_uncertainty is not None
        for k, c in report.scale.items():
            if callable(scale):
                want = float(scale(*k) if isinstance(k, tuple) else scale(k))
            else:
                want = float(scale[k])
            allowed = (
                SCALE_MATCH_UNCERTAINTIES * report.scale_uncertainty[k]
                + SCALE_MATCH_REL * abs(want)
            )
            if abs(c - want) > allowed:
                raise EstimatorCheckFailure(
                    report, f"scaled with {_c(k)} = {want!r} (measured {c!r}, allowed +- {allowed:.2g})"
                )
    return report


def from_torch_surrogate(loss_fn: Callable[..., Any]) -> Estimator:
    r"""A per-group estimator from a PyTorch surrogate loss (minimised): :math:`g = -\partial L/\partial\theta`.

    ``loss_fn(logits, samples, rewards)`` takes torch tensors (``logits`` float64 ``(n,)``
    requiring grad, ``samples`` int64 ``(k,)``, ``rewards`` float64 ``(k,)``) and returns a
    scalar loss, e.g. ``-(rewards * torch.log_softmax(logits, 0)[samples]).mean()``.  Check
    the result with ``check_estimator(est, batched=False)``.  PyTorch is imported on first
    call, so this module does not depend on it.
    """

    def estimator(logits: Any, samples: Any, rewards: Any) -> FloatArray:
        import torch  # type: ignore[import-not-found,unused-ignore]  # optional, lazy

        theta = torch.tensor(np.array(logits, dtype=np.float64), requires_grad=True)
        x = torch.tensor(np.array(samples, dtype=np.int64))
        r = torch.tensor(np.array(rewards, dtype=np.float64))
        loss = loss_fn(theta, x, r)
        (grad,) = torch.autograd.grad(loss, theta, allow_unused=True)
        if grad is None:
            out: FloatArray = np.zeros(theta.shape[0])
            return out
        result: FloatArray = -grad.detach().numpy().astype(np.float64)
        return result

    estimator.__name__ = f"from_torch_surrogate({name_of(loss_fn)})"
    return estimator


__all__ = [
    "DEFAULT_GROUP_SIZES",
    "DEFAULT_MAX_EXAMPLES",
    "ERROR_KINDS",
    "MAX_GROUP_SIZE",
    "ROUNDOFF_NOTE_ULPS",
    "SCALE_MATCH_REL",
    "SCALE_MATCH_UNCERTAINTIES",
    "CheckedRegion",
    "Counterexample",
    "EstimatorCheckFailure",
    "EstimatorError",
    "EstimatorReport",
    "RangeNote",
    "RoundoffNote",
    "Verdict",
    "assert_scaled",
    "assert_unbiased",
    "check_estimator",
    "expectation_of",
    "from_torch_surrogate",
]
