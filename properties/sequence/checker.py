r"""The sequence-level checker: exact verdicts for token-level policy-gradient losses of LLM RL.

Two protocols (``properties.SequenceBatch`` states the conventions):

* :func:`check_sequence_loss`: a PyTorch loss ``loss_fn(batch) -> scalar`` (minimised); the
  estimate of a batch is :math:`g = -\nabla_\theta\,\mathrm{loss}`;
* :func:`check_token_weights`: NumPy ``fn(rewards (B,), mask (B,T), log_probs (B,T)) ->
  weights (B,T)`` meaning :math:`g = \sum_{j,t} w_{jt}\nabla\log\pi(y_{jt}\mid y_{j,<t})`.

The policy is tabular and autoregressive over a vocabulary of ``V`` tokens with responses
of at most ``T`` tokens (:mod:`impl.sequence`), so there are finitely many batches of
``P`` prompts with ``k`` responses each and

.. math::

    E[g] = \sum_{\text{batches } b} \Big(\prod_j \pi_{\mathrm{old}}(y_{bj})\Big)\, g(b)

is a finite sum, compared with the exact :math:`\nabla J`, :math:`J = \frac1P\sum_p (E_{\pi_p}[R_p]
- \beta\,\mathrm{KL}(\pi_p\|\pi_{\mathrm{ref},p}))` (the mean over the prompts: RL maximises
the expectation over the prompt distribution).  The verdicts are the one-step
checker's: ``unbiased``, ``scaled`` (one constant per ``(k, T, P, V)``, everything fixed
for a model: dividing by the constant ``max_len`` or averaging over the vocabulary is
scaled, a weighting by the sampled lengths is biased), ``biased``
(with the smallest counterexample found, responses printed as token strings and the
expected weight each response's tokens receive), ``error`` (the loss raised, returned a
non-scalar / non-tensor / non-finite value or one without a gradient, was not
deterministic, wrote into the batch, or printed).  A check that could not fit a requested
``(k, T, P)`` in its batch budget is *partial* (``report.partial``): its verdict holds on
the shapes checked only, and says so.

>>> import pytest; torch = pytest.importorskip("torch")
>>> def reinforce(batch):  # token-sum per response, mean over the batch: unbiased (P = 1)
...     return -(batch.rewards * (batch.log_probs * batch.mask).sum(-1)).mean()
>>> check_sequence_loss(reinforce, group_sizes=(2, 3), max_len=2, max_examples=5).verdict
'unbiased'
>>> def token_mean(batch):  # length-normalised: biased
...     per = (batch.log_probs * batch.mask).sum(-1) / batch.mask.sum(-1)
...     return -(batch.rewards * per).mean()
>>> report = check_sequence_loss(token_mean, max_examples=5)
>>> report.verdict, report.counterexample.shape.describe()
('biased', 'V=2, T=2, k=2, P=1')
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from impl.errors import InvalidArgument, describe
from impl.types import FloatArray
from properties.judging.seam import elapsed, stand_in_evaluator, wrap_evaluator
from properties.judging.user_code import name_of, replay_detail
from properties.judging.verdict import (
    REFERENCE_MIN_SIGNAL,
    decide,
    precise_rtol,
)
from properties.onestep.results import (
    EstimatorCheckFailure,
    RoundoffNote,
    ScaleNote,
)
from properties.sequence.evaluation import (
    Evaluation,
    ModeChanged,
    Sandbox,
    SequenceFault,
    TokenWeights,
)
from properties.sequence.messages import (
    _message,
)
from properties.sequence.multisets import Route
from properties.sequence.options import (
    FIELD_OPTIONS,
    MAX_GROUP_SIZE,
    MAX_LEN_LIMIT,
    MAX_MAX_EXAMPLES,
    MAX_NUM_PROMPTS,
    MAX_SEED,
    _field_options,
    _require_some_shape,
    _validate,
    batch_budget,
    smallest_over_budget,
)
from properties.sequence.problems import (
    MAX_BATCHES_LOOPED,
    MAX_BATCHES_VECTORISED,
    Key,
    SequenceProblem,
    Shape,
)
from properties.sequence.region import (
    blind_spots,
    describe_shapes,
    requested_shapes,
    unchecked_cells,
)
from properties.sequence.results import (
    SequenceCounterexample,
    SequenceError,
    SequenceReport,
    SequenceRun,
    WeightRow,
    key_text,
)
from properties.sequence.run import (
    SCALE_MATCH_FLOOR,
    SCALE_MATCH_UNCERTAINTIES,
    _counterexample,
    _error_from_fault,
    _execute_with_notes,
    _Run,
)

DEFAULT_GROUP_SIZES = (2, 3, 4)
"""Group sizes ``k`` checked unless told otherwise."""

DEFAULT_VOCAB_SIZE = 3
"""Largest vocabulary tried (``V = 2`` appears too)."""

DEFAULT_MAX_LEN = 3
"""Largest length cap tried (every ``T`` from 1 appears too)."""

DEFAULT_MAX_EXAMPLES = 30
"""Generated problems after the battery (the battery alone: ``max_examples=0``)."""


# --------------------------------------------------------------------------- the API


def check_sequence_loss(
    loss_fn: Callable[..., Any],
    *,
    group_sizes: Iterable[int] = DEFAULT_GROUP_SIZES,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    max_len: int = DEFAULT_MAX_LEN,
    kl_coef: float = 0.0,
    off_policy: bool = False,
    num_prompts: Iterable[int] = (1,),
    seed: int = 0,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    rtol: float | None = None,
    atol: float = 0.0,
    name: str | None = None,
    tool_tokens: bool = False,
    sampling_mismatch: bool = False,
    values: str | None = None,
    diagnose: bool = False,
) -> SequenceReport:
    r"""Decide whether a PyTorch loss's :math:`E[-\nabla_\theta\mathrm{loss}]` equals :math:`\nabla J`, exactly.

    ``loss_fn(batch: SequenceBatch) -> scalar tensor`` is minimised; ``batch`` holds
    ``B = P*k`` responses (``num_prompts`` ``P``, ``group_sizes`` ``k``) over vocabularies
    of 2..``vocab_size`` tokens and length caps 1..``max_len``, within a batch budget;
    ``kl_coef`` is the :math:`\beta` of the objective (``batch.kl_coef``); ``off_policy``
    draws the responses from a behaviour policy (``batch.old_log_probs``) other than the
    current one.  ``seed``/``max_examples``: the Hypothesis search after the battery;
    ``rtol``/``atol`` override the derived round-off tolerance
    (:data:`properties.sequence.evaluation.ROUNDOFF_SAFETY`); ``name`` labels the report.
    ``tool_tokens`` makes every odd position of a response the environment's (a tool's
    output in a multi-turn rollout: a hole in ``batch.mask``, no gradient in :math:`J`;
    see :class:`~properties.sequence.batch.SequenceBatch`).  ``sampling_mismatch`` draws the
    responses from an inference engine's policy, a small perturbation of the behaviour
    policy, whose log-probabilities are ``batch.sampling_log_probs`` (without it they equal
    ``old_log_probs``): the training-inference mismatch that TIS and masked IS correct.
    ``values`` ``"random"`` or ``"exact"`` fills ``batch.values`` with a critic's values
    (drawn independently of the policy, or the current policy's exact ones).
    ``diagnose=True`` names, on a biased or scaled verdict, every cause that holds
    (:func:`properties.sequence.diagnosis.diagnose`: targeted probes, which re-run the loss)
    in ``report.diagnosis`` and a "Causes:" block of the message.

    The losses of many batches are evaluated at once with ``torch.func.vmap``; a loss that
    ``vmap`` cannot run is called once per batch instead (smaller problems; the report
    says so).  Never raises for misbehaving user code (that is the ``"error"`` verdict);
    raises :class:`impl.errors.InvalidArgument` for bad arguments.
    """
    opts = _validate(
        loss_fn,
        group_sizes,
        vocab_size,
        max_len,
        kl_coef,
        off_policy,
        num_prompts,
        seed,
        max_examples,
        rtol,
        atol,
    )
    _field_options(opts, tool_tokens, sampling_mismatch, values)
    _refuse_diagnose(opts, diagnose)
    _require_some_shape(opts, MAX_BATCHES_VECTORISED, "the loss evaluated with torch.func.vmap")
    sandbox = Sandbox()
    evaluator = stand_in_evaluator(sandbox)  # the command line's re-run: no user code, no PyTorch
    threads: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if evaluator is None:
        try:
            import torch  # type: ignore[import-not-found,unused-ignore]  # noqa: F401 - optional dependency
        except ImportError:
            raise InvalidArgument(
                "check_sequence_loss needs PyTorch, which is not installed: "
                "pip install 'ida-verify[torch]' (from a clone: pip install '.[torch]')"
            ) from None
        from properties.sequence.torch_loss import TorchLoss, torch_threads

        evaluator = wrap_evaluator(TorchLoss(loss_fn, sandbox=sandbox, seed=opts["seed"]), sandbox)
        threads = torch_threads()
    start = time.perf_counter()
    budget = MAX_BATCHES_VECTORISED
    route = Route()
    with threads:
        while True:
            try:
                run, note, scale_note = _execute_with_notes(
                    evaluator, opts, budget, route, seen=evaluator.dtypes
                )
            except ModeChanged:
                if budget == MAX_BATCHES_LOOPED:  # pragma: no cover - the loop mode never changes
                    raise
                budget = MAX_BATCHES_LOOPED
                continue
            break
    info = _run_info(
        run,
        protocol="pytorch loss",
        mode=evaluator.mode,
        fallback_reason=evaluator.fallback_reason,
        budget=run.plan_budget,
        route_reason=route.reason,
        batches_evaluated=evaluator.batches_evaluated,
        probe_seconds=evaluator.probe_seconds,
        dtypes=tuple(sorted(evaluator.dtypes)),
    )
    report = _make_report(
        name or name_of(loss_fn),
        "sequence-loss",
        run,
        info,
        sandbox,
        opts,
        start,
        batched=True,
        note=note,
        scale_note=scale_note,
    )
    return _diagnosed(report, run, loss_fn, diagnose)


def check_token_weights(
    fn: Callable[..., Any],
    *,
    batched: bool = False,
    group_sizes: Iterable[int] = DEFAULT_GROUP_SIZES,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    max_len: int = DEFAULT_MAX_LEN,
    kl_coef: float = 0.0,
    off_policy: bool = False,
    num_prompts: Iterable[int] = (1,),
    seed: int = 0,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    rtol: float | None = None,
    atol: float = 0.0,
    name: str | None = None,
    tool_tokens: bool = False,
    sampling_mismatch: bool = False,
    values: str | None = None,
    diagnose: bool = False,
) -> SequenceReport:
    r"""Decide whether token weights give :math:`E[\sum_{j,t} w_{jt}\nabla\log\pi(y_{jt}\mid y_{j,<t})] = \nabla J`.

    ``fn(rewards (B,), mask (B, T), log_probs (B, T)) -> weights (B, T)`` (NumPy); it also
    receives, by keyword, whichever of ``group``, ``tokens``, ``old_log_probs``,
    ``ref_log_probs``, ``sampling_log_probs``, ``values`` and ``kl_coef`` its signature names
    (the arrays of :class:`~properties.sequence.batch.SequenceBatch`'s fields of those names).
    ``batched=True``: every array has a leading axis of ``G`` batches and the result is
    ``(G, B, T)`` (much faster).  The other arguments, ``tool_tokens``, ``sampling_mismatch``
    and ``values`` included, are :func:`check_sequence_loss`'s.

    >>> def reinforce(rewards, mask, log_probs):
    ...     return rewards[:, None] * mask / rewards.shape[0]
    >>> check_token_weights(reinforce, max_examples=0).verdict
    'unbiased'
    """
    opts = _validate(
        fn,
        group_sizes,
        vocab_size,
        max_len,
        kl_coef,
        off_policy,
        num_prompts,
        seed,
        max_examples,
        rtol,
        atol,
    )
    if not isinstance(batched, bool):
        raise InvalidArgument(
            f"Expected batched=True or False but got {describe('batched', batched)}"
        )
    _field_options(opts, tool_tokens, sampling_mismatch, values)
    _refuse_diagnose(opts, diagnose)
    budget = batch_budget(weights=True, batched=batched)
    _require_some_shape(opts, budget, "batched" if batched else "one call per batch")
    start = time.perf_counter()
    sandbox = Sandbox()
    evaluator = wrap_evaluator(TokenWeights(fn, batched=batched, sandbox=sandbox), sandbox)
    route = Route()
    run, note, scale_note = _execute_with_notes(evaluator, opts, budget, route, seen=set())
    info = _run_info(
        run,
        protocol="token weights",
        mode=evaluator.mode,
        fallback_reason=None,
        budget=run.plan_budget,
        route_reason=route.reason,
        batches_evaluated=sum(run.problems.values()),
        probe_seconds=None,
        dtypes=(),
    )
    report = _make_report(
        name or name_of(fn),
        "token-weights",
        run,
        info,
        sandbox,
        opts,
        start,
        batched=batched,
        note=note,
        scale_note=scale_note,
    )
    return _diagnosed(report, run, fn, diagnose)


# --------------------------------------------------------------------------- the report


def _check_flag(diagnose: Any) -> None:
    if not isinstance(diagnose, bool):
        raise InvalidArgument(f"Expected diagnose=True or False but got {describe('diagnose', diagnose)}")


def _refuse_diagnose(opts: dict[str, Any], diagnose: Any) -> None:
    """``diagnose=True`` with a field option is refused before the check, not after it."""
    _check_flag(diagnose)
    modelled = [flag for flag in FIELD_OPTIONS if flag in opts]
    if diagnose and modelled:
        raise InvalidArgument(
            f"diagnose=True does not model {', '.join(modelled)} (its probes have no such batches): "
            "check without diagnose, or without " + ", ".join(modelled)
        )


def _diagnosed(report: SequenceReport, run: _Run, fn: Callable[..., Any], diagnose: Any) -> SequenceReport:
    """``report`` with its diagnosis (``diagnose=True`` and a biased or scaled verdict)."""
    _check_flag(diagnose)
    # decided from the run too, not from the report alone: the command line's parent re-runs
    # this on the child's record, and a report forged in the child must not skip the probes
    counterexample = run.mismatch is not None and run.fault is None and run.flaky is None
    if not diagnose or not (counterexample or report.verdict in ("biased", "scaled")):
        return report
    from properties.sequence.diagnosis import diagnose as run_diagnosis

    found = run_diagnosis(fn, report, protocol=report.protocol, batched=report.batched)
    if report.verdict not in ("biased", "scaled"):
        return report
    out = dataclasses.replace(report, diagnosis=found)
    object.__setattr__(out, "message", _message(out, run))
    return out


def _run_info(
    run: _Run,
    *,
    protocol: str,
    mode: str,
    fallback_reason: str | None,
    budget: int,
    batches_evaluated: int,
    probe_seconds: float | None,
    dtypes: tuple[str, ...],
    route_reason: str | None = None,
) -> SequenceRun:
    """How the check ran: exactly the shapes evaluated, the requested ones that were not, the ranges,
    and which shapes took the multiset route (``route_reason``: why none could)."""
    requested = requested_shapes(run.ks, run.prompts, run.vocab_size, run.max_len)
    planned = {s.key for s in run.shapes}
    evaluated = {s.key for s in run.evaluated}
    multiset = [s for s in run.evaluated if s.route == "multiset"]
    return SequenceRun(
        protocol=protocol,
        mode=mode,
        fallback_reason=fallback_reason,
        shapes=tuple((s.describe(), s.space.num_responses, s.num_batches) for s in run.evaluated),
        unchecked=tuple(unchecked_cells(run.shapes, requested)),
        batch_budget=budget,
        batches_evaluated=batches_evaluated,
        probe_seconds=probe_seconds,
        dtypes=dtypes,
        problems=dict(run.problems),
        over_budget=describe_shapes(s for s in requested if s.key not in planned)
        if any(s.key not in planned for s in requested)
        else "",
        not_reached=describe_shapes(s for s in run.shapes if s.key not in evaluated)
        if any(s.key not in evaluated for s in run.shapes)
        else "",
        multiset=describe_shapes(multiset) if multiset else "",
        route_fallback=route_reason or "",
        # what the planned shapes cannot show (a check stopped early lists what it did not reach)
        blind_spots=tuple(blind_spots(run.shapes, requested)),
        ranges=run.ranges.to_dict(),
    )


def _imprecise_error(run: _Run, keys: tuple[Any, ...]) -> SequenceError:
    """The ``imprecise`` error: no key's scale told from 1; blames a user's ``rtol`` if one was given."""
    refs = run.book.references()
    measured = "; ".join(
        f"{key_text(k)}: no problem had |grad J| above the tolerance"
        if (ref := refs.get(k)) is None
        else f"{key_text(k)}: best c = {ref.multiple:.4g} +- {ref.uncertainty:.2g}"
        for k in keys
    )
    if run.atol > 0.0 and run.rtol is None:
        cause = (
            f"could not be judged with atol={run.atol!r}: that tolerance is more than "
            f"1/{REFERENCE_MIN_SIGNAL:g} of |grad J| on every problem checked"
        )
        hint = f"pass a smaller atol (the loss's own round-off unit is {run.max_eps:.2g})"
    elif run.rtol is not None:
        cause = (
            f"could not be judged with rtol={run.rtol!r}: that tolerance is more than "
            f"1/{REFERENCE_MIN_SIGNAL:g} of |grad J| on every problem checked"
        )
        smaller = precise_rtol(run.rtol, refs, keys) if run.atol == 0.0 else None
        hint = (
            "pass a smaller rtol" if smaller is None else f"pass a smaller rtol: rtol={smaller:g} or below"
        ) + f" (the loss's own round-off unit is {run.max_eps:.2g})"
    else:
        cause = (
            f"could not be judged: the round-off tolerance of its output (round-off unit "
            f"{run.max_eps:.2g}) is more than 1/{REFERENCE_MIN_SIGNAL:g} of |grad J| on every problem checked"
        )
        hint = (
            "compute the loss in float64 (or float32), not half precision"
            if run.max_eps > float(np.finfo(np.float32).eps)
            else "this should not happen for a float32 or float64 loss: please report it"
        )
    return SequenceError.without_call(
        "imprecise",
        f"{cause}, so the scale c cannot be told from 1 ({measured}) and no verdict between "
        "unbiased and scaled is possible",
        hint=hint,
        found_by="the battery (scale reference)",
    )


def _make_report(
    name: str,
    protocol: str,
    run: _Run,
    info: SequenceRun,
    sandbox: Sandbox,
    opts: dict[str, Any],
    start: float,
    *,
    batched: bool,
    note: RoundoffNote | None = None,
    scale_note: ScaleNote | None = None,
) -> SequenceReport:
    keys = sorted({s.key for s in run.shapes})
    error: SequenceError | None = None
    if run.fault is not None:
        error = _error_from_fault(run.fault, run.fault_found_by)
    elif run.flaky is not None:
        error = SequenceError.without_call(
            "nondeterministic",
            replay_detail(run.flaky, outcome="results", inputs="the batch"),
            hint="",
            found_by="hypothesis",
        )
    cex = None
    if error is None and run.mismatch is not None:
        cex = _counterexample(run.mismatch, run.found_by, note)
    decision = decide(
        fault=error is not None,
        mismatch=cex is not None,
        references=run.book.references(),
        keys=keys,
    )
    verdict = decision.verdict
    if verdict == "error" and error is None:
        error = _imprecise_error(run, decision.imprecise)
    if not keys and error is None:
        # only after the vmap fallback: _require_some_shape refused the rest beforehand
        _require_some_shape(
            opts,
            info.batch_budget,
            "; ".join(
                filter(None, [info.fallback_reason or "torch.func.vmap could not run it", info.route_fallback])
            ),
            fallback=True,
        )
        raise InvalidArgument(  # pragma: no cover - the smallest shape fits whenever any does
            "no shape within the batch budget: nothing could be checked"
        )
    from properties.onestep.results import CheckedRegion

    region = CheckedRegion(
        group_sizes=run.ks,
        problems=dict(run.problems),
        notes=tuple(
            [f"shapes evaluated ({info.mode}): {describe_shapes(run.evaluated)}"]
            + (
                [f"not evaluated (over the batch budget {info.batch_budget}): {info.over_budget}"]
                if info.over_budget
                else []
            )
            + ([f"not reached: {info.not_reached}"] if info.not_reached else [])
            + list(info.blind_spots)
        ),
    )
    report = SequenceReport(
        name=name,
        verdict=verdict,
        scale=None if decision.scale is None else dict(decision.scale),
        scale_uncertainty=None if decision.uncertainty is None else dict(decision.uncertainty),
        counterexample=cex,
        error=error,
        group_sizes=run.ks,
        seed=run.seed,
        max_examples=run.max_examples,
        batched=batched,
        problems_checked=sum(run.problems.values()),
        estimator_calls=sandbox.calls,
        estimator_seconds=sandbox.user_seconds,
        seconds=elapsed(start),
        message="",
        region=region,
        protocol=protocol,
        run=info,
        settings=dict(opts),
        # only a pass can be partial: a counterexample or an error holds whatever was left out
        partial=info.partial and verdict in ("unbiased", "scaled"),
        scale_note=scale_note if verdict == "scaled" else None,
    )
    object.__setattr__(report, "message", _message(report, run))
    return report


# --------------------------------------------------------------------------- helpers


def sequence_expectation(
    fn: Callable[..., Any],
    *,
    theta: Any,
    rewards: Any,
    k: int,
    ref_theta: Any = None,
    old_theta: Any = None,
    kl_coef: float = 0.0,
    protocol: str = "sequence-loss",
    batched: bool = False,
    tool_tokens: bool = False,
    sampler_theta: Any = None,
    value_table: Any = None,
    exact_values: bool = False,
) -> tuple[FloatArray, FloatArray]:
    r"""The exact :math:`(E[g], \nabla J)` of ``fn`` on one problem, both ``(P, N+1, V)``: the reproduction helper.

    ``theta`` ``(P, N+1, V)`` fixes ``P`` and (through ``N``) the shape ``(V, T)``;
    ``rewards`` ``(P, R)``; ``ref_theta`` defaults to ``theta``; ``old_theta`` ``None`` is
    on-policy.  ``protocol`` is ``"sequence-loss"`` or ``"token-weights"``; ``tool_tokens``
    as in :func:`check_sequence_loss` (``ref_theta``/``old_theta`` then take ``theta``'s
    values at the environment's nodes); ``sampler_theta`` the inference engine's policy
    (``sampling_mismatch``: it draws the responses); ``value_table`` ``(P, N+1)`` the critic's
    values, or ``exact_values`` the exact ones.  Misbehaviour
    of ``fn`` raises :class:`impl.errors.InvalidArgument` naming it.

    >>> import numpy as np
    >>> def reinforce(rewards, mask, log_probs):
    ...     return rewards[:, None] * mask / rewards.shape[0]
    >>> theta = np.zeros((1, 2, 2))          # V = 2, T = 1: responses '<eos>' and 'a'
    >>> E, G = sequence_expectation(reinforce, theta=theta, rewards=[[0.0, 1.0]], k=2,
    ...                             protocol="token-weights")
    >>> E[0, 0].tolist(), G[0, 0].tolist()
    ([-0.25, 0.25], [-0.25, 0.25])
    """
    ev = evaluate_one(
        fn, theta=theta, rewards=rewards, k=k, ref_theta=ref_theta, old_theta=old_theta,
        kl_coef=kl_coef, protocol=protocol, batched=batched, tool_tokens=tool_tokens,
        sampler_theta=sampler_theta, value_table=value_table, exact_values=exact_values,
    )
    return ev.mean, ev.gradient


def evaluate_one(
    fn: Callable[..., Any],
    *,
    theta: Any,
    rewards: Any,
    k: int,
    ref_theta: Any = None,
    old_theta: Any = None,
    kl_coef: float = 0.0,
    protocol: str = "sequence-loss",
    batched: bool = False,
    tool_tokens: bool = False,
    sampler_theta: Any = None,
    value_table: Any = None,
    exact_values: bool = False,
) -> Evaluation:
    """The exact evaluation of ``fn`` on one problem (arguments of :func:`sequence_expectation`),
    with its variance (``Evaluation.variance``)."""
    th = np.asarray(theta, dtype=np.float64)
    if th.ndim != 3 or th.shape[2] < 2:
        raise InvalidArgument(
            f"Expected theta of shape (P, N+1, V) but got {describe('theta', theta)}"
        )
    v = th.shape[2]
    rows = th.shape[1]
    t = next(
        (
            tt
            for tt in range(1, MAX_LEN_LIMIT + 1)
            if sum((v - 1) ** d for d in range(tt)) + 1 == rows
        ),
        None,
    )
    if t is None:
        raise InvalidArgument(
            f"theta's second axis must be N + 1 for some max_len but got {describe('theta', theta)}"
        )
    kind = "exact" if exact_values else "random" if value_table is not None else ""
    shape = Shape(v, t, int(k), th.shape[0], bool(tool_tokens), sampler_theta is not None, kind)
    problem = SequenceProblem(
        shape=shape,
        theta=th,
        rewards=np.asarray(rewards, dtype=np.float64),
        ref_theta=th if ref_theta is None else np.asarray(ref_theta, dtype=np.float64),
        old_theta=None if old_theta is None else np.asarray(old_theta, dtype=np.float64),
        kl_coef=float(kl_coef),
        label="reproduction",
        sampler_theta=None if sampler_theta is None else np.asarray(sampler_theta, dtype=np.float64),
        value_table=None if value_table is None else np.asarray(value_table, dtype=np.float64),
    )
    sandbox = Sandbox()
    evaluator: Any
    if protocol == "sequence-loss":
        # through the seam, so that the command line's parent can re-run this on the record
        evaluator = stand_in_evaluator(sandbox)
        threads: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if evaluator is None:
            from properties.sequence.torch_loss import TorchLoss, torch_threads

            evaluator = wrap_evaluator(TorchLoss(fn, sandbox=sandbox), sandbox)
            threads = torch_threads()
        try:
            with threads:
                try:
                    (ev,) = evaluator.evaluate(
                        [problem], rtol=None, atol=0.0, check_determinism=False
                    )
                except ModeChanged:
                    (ev,) = evaluator.evaluate(
                        [problem], rtol=None, atol=0.0, check_determinism=False
                    )
        except SequenceFault as fault:
            raise InvalidArgument(f"the loss misbehaved: {fault}") from None
    elif protocol == "token-weights":
        evaluator = wrap_evaluator(TokenWeights(fn, batched=batched, sandbox=sandbox), sandbox)
        try:
            (ev,) = evaluator.evaluate([problem], rtol=None, atol=0.0, check_determinism=False)
        except SequenceFault as fault:
            raise InvalidArgument(f"the weight function misbehaved: {fault}") from None
    else:
        raise InvalidArgument(
            f"Expected protocol='sequence-loss' or 'token-weights' but got {describe('protocol', protocol)}"
        )
    return ev  # type: ignore[no-any-return]


def _report_or_check(fn: Any, kwargs: dict[str, Any], who: str) -> SequenceReport:
    if isinstance(fn, SequenceReport):
        if kwargs:
            raise InvalidArgument(f"{who} got a finished report and check options {sorted(kwargs)}")
        return fn
    return check_sequence_loss(fn, **kwargs)


def _refuse_partial(report: SequenceReport, allow_partial: Any, expected: str) -> None:
    if not isinstance(allow_partial, bool):
        raise InvalidArgument(
            f"Expected allow_partial=True or False but got {describe('allow_partial', allow_partial)}"
        )
    if report.partial and not allow_partial:
        raise EstimatorCheckFailure(
            report,
            f"{expected} on every shape asked for (the check was partial; pass allow_partial=True "
            "to accept a verdict on the shapes checked)",
        )


def _wanted_scale(scale: Mapping[Any, float] | Callable[..., float], key: Key) -> float:
    """``scale`` at ``key = (k, T, P, V)``: a callable of 4 (or 3) arguments, or a mapping by either key."""
    if callable(scale):
        try:
            arity = len(inspect.signature(scale).parameters)
        except (TypeError, ValueError):
            arity = 3
        return float(scale(*key) if arity >= 4 else scale(*key[:3]))
    return float(scale[key] if key in scale else scale[key[:3]])


def assert_sequence_unbiased(
    fn: Callable[..., Any] | SequenceReport, *, allow_partial: bool = False, **kwargs: Any
) -> SequenceReport:
    """:func:`check_sequence_loss` (or a finished report); :class:`EstimatorCheckFailure` unless ``"unbiased"``.

    A partial check (a requested ``(k, T, P)`` over the batch budget, ``report.partial``)
    fails too, unless ``allow_partial=True``.
    """
    report = _report_or_check(fn, kwargs, "assert_sequence_unbiased")
    if report.verdict != "unbiased":
        raise EstimatorCheckFailure(report, "unbiased")
    _refuse_partial(report, allow_partial, "unbiased")
    return report


def assert_sequence_scaled(
    fn: Callable[..., Any] | SequenceReport,
    scale: Mapping[Any, float] | Callable[..., float] | None = None,
    *,
    allow_partial: bool = False,
    **kwargs: Any,
) -> SequenceReport:
    """:func:`check_sequence_loss` (or a report); raises unless ``"scaled"`` (as ``scale`` if given).

    ``scale`` is ``scale(k, T, P)`` or ``scale(k, T, P, V)`` (a callable of 3 or 4 arguments),
    or a mapping keyed by ``(k, T, P, V)`` or ``(k, T, P)``.  A partial check fails unless
    ``allow_partial=True``.
    """
    report = _report_or_check(fn, kwargs, "assert_sequence_scaled")
    if report.verdict != "scaled":
        raise EstimatorCheckFailure(report, "scaled")
    _refuse_partial(report, allow_partial, "scaled")
    if scale is not None:
        assert report.scale is not None and report.scale_uncertainty is not None
        for key, c in report.scale.items():
            want = _wanted_scale(scale, key)
            allowed = SCALE_MATCH_UNCERTAINTIES * report.scale_uncertainty[
                key
            ] + SCALE_MATCH_FLOOR * abs(want)
            if abs(c - want) > allowed:
                raise EstimatorCheckFailure(
                    report,
                    f"scaled with c = {want!r} at {key_text(key)} (measured {c!r}, allowed +- {allowed:.2g})",
                )
    return report


__all__ = [
    "DEFAULT_GROUP_SIZES",
    "DEFAULT_MAX_EXAMPLES",
    "DEFAULT_MAX_LEN",
    "DEFAULT_VOCAB_SIZE",
    "MAX_GROUP_SIZE",
    "MAX_LEN_LIMIT",
    "MAX_MAX_EXAMPLES",
    "MAX_NUM_PROMPTS",
    "MAX_SEED",
    "SequenceCounterexample",
    "SequenceError",
    "SequenceReport",
    "SequenceRun",
    "WeightRow",
    "assert_sequence_scaled",
    "assert_sequence_unbiased",
    "batch_budget",
    "check_sequence_loss",
    "check_token_weights",
    "evaluate_one",
    "key_text",
    "sequence_expectation",
    "smallest_over_budget",
]
