r"""The trainer-loss checker: exact verdicts on ``fn(model, inputs) -> loss`` with the trainer's plumbing.

:func:`check_trainer_loss` enumerates every batch as the sequence checker does
(:func:`properties.check_sequence_loss`: same problems, judging, verdicts, errors, region line
and counterexample), but the loss receives what a trainer's ``compute_loss`` receives: a causal
LM (:class:`~properties.trainer.model.TabularCausalLM`, holding the tabular policy) and a dict of
inputs with TRL's names (:data:`~properties.trainer.evaluation.ROW_FIELDS`,
:data:`~properties.trainer.evaluation.GLOBAL_FIELDS`).  The loss calls the model itself, shifts
the logits, applies the temperature and masks, so mistakes in any of these show as a bias
(a gradient on the wrong node, or on the after-the-end node).  ``micro_batches``/``dp_size``
split the batch as gradient accumulation and data parallelism do
(:mod:`properties.trainer.evaluation`), and the combined gradient is judged.

>>> import pytest; torch = pytest.importorskip("torch")
>>> def reinforce(model, inputs):   # REINFORCE through the model: unbiased
...     ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
...     mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"].long()], 1)
...     t = inputs["completion_ids"].shape[1]
...     logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=t + 1).logits[:, :-1]
...     logps = logits.log_softmax(-1).gather(-1, inputs["completion_ids"][..., None])[..., 0]
...     per_seq = (logps * inputs["completion_mask"]).sum(-1)
...     return -(inputs["rewards"] * per_seq).sum() / inputs["global_batch_size"]
>>> check_trainer_loss(reinforce, group_sizes=(2,), max_len=2, num_prompts=(1, 2),
...                    micro_batches=2, max_examples=3).verdict
'unbiased'
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from impl.errors import InvalidArgument, describe
from properties.judging.user_code import name_of
from properties.sequence.checker import (
    DEFAULT_GROUP_SIZES,
    DEFAULT_MAX_EXAMPLES,
    DEFAULT_MAX_LEN,
    DEFAULT_VOCAB_SIZE,
    _make_report,
    assert_sequence_scaled,
    assert_sequence_unbiased,
)
from properties.sequence.evaluation import Sandbox
from properties.sequence.options import (
    _field_options,
    _validate,
)
from properties.sequence.problems import (
    MAX_BATCHES_LOOPED,
    MAX_BATCHES_VECTORISED,
    unreachable_keys,
)
from properties.sequence.region import describe_shapes, requested_shapes
from properties.sequence.results import SequenceReport, SequenceRun
from properties.sequence.run import (
    _execute,
    _roundoff_note,
)

DEFAULT_NUM_PROMPTS = (1, 2)
"""Prompts per batch checked unless told otherwise: ``P = 2`` brings prompts of different
lengths, hence left padding, into the batch.  By default ``P = 2`` is asked for only where
the batch budget admits it (not at ``k = 4, T = 3``, :math:`4^8` batches at ``V = 2``): the
region line lists the shapes left out, and a default check is not partial for them (issue
15, F3); ``num_prompts=(1, 2)`` given explicitly asks for every shape."""

AGAINST = ("objective", "one-call")
"""What a trainer check compares :math:`E[g]` with (see :func:`check_trainer_loss`)."""

MAX_SPLIT = 8
"""Largest ``micro_batches`` and ``dp_size`` accepted."""


def _split_options(
    micro_batches: Any, dp_size: Any, temperature: Any, advantages: Any
) -> tuple[int, int, float]:
    from properties.trainer.model import MAX_TEMPERATURE

    for name, value in (("micro_batches", micro_batches), ("dp_size", dp_size)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SPLIT:
            raise InvalidArgument(
                f"Expected an integer 1 <= {name} <= {MAX_SPLIT} but got {describe(name, value)}"
            )
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not (math.isfinite(temperature) and 0 < temperature <= MAX_TEMPERATURE)
    ):
        raise InvalidArgument(
            f"Expected a temperature 0 < t <= {MAX_TEMPERATURE} but got "
            f"{describe('temperature', temperature)}"
        )
    if advantages is not None and not callable(advantages):
        raise InvalidArgument(
            f"Expected advantages=None or a callable but got {describe('advantages', advantages)}"
        )
    return int(micro_batches), int(dp_size), float(temperature)


def _against(against: Any, micro_batches: int, dp_size: int) -> str:
    """``against`` checked: one of :data:`AGAINST`, and ``"one-call"`` only with a split.

    With ``micro_batches = dp_size = 1`` the one-call reference *is* the call judged, so the
    comparison is an identity and would certify any loss (a silent pass): refused.

    >>> _against("one-call", 2, 1)
    'one-call'
    >>> _against("one-call", 1, 1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    impl.errors.InvalidArgument: against='one-call' compares the split step with ... nothing would be checked ...
    """
    if against not in AGAINST:
        raise InvalidArgument(f"Expected against in {AGAINST} but got {describe('against', against)}")
    if against == "one-call" and micro_batches * dp_size == 1:
        raise InvalidArgument(
            "against='one-call' compares the split step with the same loss called once, and with "
            "micro_batches = dp_size = 1 they are the same call: nothing would be checked (pass "
            "micro_batches > 1 or dp_size > 1, or against='objective')"
        )
    return str(against)


def _precision(precision: Any, rtol: Any) -> float | None:
    """The epsilon of ``precision`` (``None``: strict).

    >>> _precision("float32", None) > 1e-7, _precision(None, None)
    (True, None)
    """
    from properties.sequence.run import ROUNDOFF_DTYPES

    if precision is None:
        return None
    names = dict(ROUNDOFF_DTYPES)
    if not isinstance(precision, str) or precision not in names:
        raise InvalidArgument(
            f"Expected precision=None or one of {sorted(names)} but got {describe('precision', precision)}"
        )
    if rtol is not None:
        raise InvalidArgument("precision and rtol both set a tolerance: give one of them")
    return float(names[precision])


def shape_hint(micro_batches: int, dp_size: int) -> str:
    """The hint of a trainer loss's exception about shapes: the rows one call holds.

    >>> shape_hint(1, 1)[:38]
    'each call holds the batch: B = P*k row'
    >>> shape_hint(2, 2)[:36]
    'each call holds one micro-batch: B/4'
    """
    fields = (
        "(completion_ids/completion_mask (rows, T), prompt_ids/prompt_mask (rows, prompt width), "
        "rewards/group/advantages (rows,)); P, k and T vary between problems"
    )
    parts = micro_batches * dp_size
    if parts == 1:
        return f"each call holds the batch: B = P*k rows padded to T = max_len {fields}"
    return (
        f"each call holds one micro-batch: B/{parts} of the batch's B = P*k rows "
        f"(micro_batches*dp_size = {parts} parts; num_items_in_batch and global_batch_size "
        f"count the whole batch) {fields}"
    )


def _group_sizes(
    group_sizes: Iterable[int] | None, num_prompts: Iterable[int], parts: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ``k`` to check: every ``P k`` must split into ``parts`` equal parts."""
    try:
        prompts = tuple(num_prompts)
    except TypeError:
        prompts = ()  # _validate reports it
    if group_sizes is None:
        ks = tuple(
            k for k in DEFAULT_GROUP_SIZES if all(isinstance(p, int) and (k * p) % parts == 0 for p in prompts)
        )
        if not ks:
            raise InvalidArgument(
                f"no default group size k in {DEFAULT_GROUP_SIZES} gives batches of P*k rows that split "
                f"into micro_batches*dp_size = {parts} equal parts for num_prompts={prompts}; pass group_sizes"
            )
        return ks, prompts
    try:
        ks = tuple(group_sizes)
    except TypeError:
        return (), prompts  # _validate reports it
    bad = [
        (k, p)
        for k in ks
        for p in prompts
        if isinstance(k, int) and isinstance(p, int) and (k * p) % parts != 0
    ]
    if bad:
        k, p = bad[0]
        raise InvalidArgument(
            f"a batch of P*k = {p}*{k} rows cannot be split into micro_batches*dp_size = {parts} "
            "equal parts; choose group_sizes and num_prompts with P*k divisible by it"
        )
    return ks, prompts


def check_trainer_loss(
    fn: Callable[..., Any],
    *,
    group_sizes: Iterable[int] | None = None,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    max_len: int = DEFAULT_MAX_LEN,
    kl_coef: float = 0.0,
    off_policy: bool = False,
    num_prompts: Iterable[int] | None = None,
    micro_batches: int = 1,
    dp_size: int = 1,
    temperature: float = 1.0,
    advantages: Callable[..., Any] | None = None,
    against: str = "objective",
    seed: int = 0,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    rtol: float | None = None,
    atol: float = 0.0,
    name: str | None = None,
    tool_tokens: bool = False,
    sampling_mismatch: bool = False,
    values: str | None = None,
    precision: str | None = None,
) -> SequenceReport:
    r"""Decide whether a trainer loss's :math:`E[g]` equals :math:`\nabla J`, exactly.

    ``fn(model, inputs) -> scalar tensor`` is minimised; ``model`` is a
    :class:`~properties.trainer.model.TabularCausalLM` (call it with ``input_ids``,
    ``attention_mask`` and optionally ``logits_to_keep``; responses were sampled at
    ``temperature``) and ``inputs`` a dict with TRL's names
    (:mod:`properties.trainer.evaluation`).  ``micro_batches``/``dp_size`` split each batch
    into ``dp_size * micro_batches`` equal parts, one call each; the judged gradient is summed
    over micro-batches and averaged over ranks.  ``advantages(inputs) -> (B,)``, if given, is
    computed on the whole batch first and passed as ``inputs["advantages"]``.
    ``against="one-call"`` judges against the same loss's :math:`E[g]` without the split
    (``micro_batches = dp_size = 1``) instead of :math:`\nabla J`: whether accumulation
    changes the expected step.  A token-mean loss with a global token count
    (``num_items_in_batch``) is therefore ``unbiased`` against ``"one-call"`` (its accumulation
    is exact) but ``biased`` against ``"objective"``, as the same loss called once is: a token
    mean's normaliser, the step's number of response tokens, depends on the sampled lengths;
    a per-micro-batch token mean is biased against both.
    ``group_sizes`` defaults to those of (2, 3, 4) that split evenly.  ``num_prompts``
    defaults to :data:`DEFAULT_NUM_PROMPTS`, with ``P >= 2`` asked for only within the batch
    budget (the shapes left out are listed as not evaluated, and do not make the check
    partial).  The other arguments are
    :func:`properties.check_sequence_loss`'s (the objective is the same), the fields libraries
    pass included: ``sampling_mismatch`` fills ``inputs["sampling_per_token_logps"]`` with the
    inference engine's log-probabilities (the responses are the engine's), ``values``
    (``"random"`` or ``"exact"``) fills ``inputs["values"]`` with a critic's values, and
    ``tool_tokens`` makes every odd position a tool's output, marked 0 in
    ``inputs["tool_mask"]`` as TRL marks it (``completion_mask`` stays the attention mask;
    :data:`~properties.trainer.evaluation.TOOL_FIELD`).
    ``precision`` (``"float32"``, ...; not with ``rtol``) judges at that dtype's round-off
    instead of strictly: the round-off note's rule on the largest batch evaluated, recorded in the
    report's ``settings`` (``rtol``, ``atol``, ``precision``); for a loss that computes in that
    dtype by design.

    Never raises for misbehaving user code (that is the ``"error"`` verdict); raises
    :class:`impl.errors.InvalidArgument` for bad arguments.
    """
    m, d, temp = _split_options(micro_batches, dp_size, temperature, advantages)
    against = _against(against, m, d)
    default_prompts = num_prompts is None
    ks, prompts = _group_sizes(
        group_sizes, DEFAULT_NUM_PROMPTS if num_prompts is None else num_prompts, m * d
    )
    opts = _validate(
        fn, ks, vocab_size, max_len, kl_coef, off_policy, prompts, seed, max_examples, rtol, atol
    )
    _field_options(opts, tool_tokens, sampling_mismatch, values)
    eps = _precision(precision, rtol)
    try:
        import torch  # type: ignore[import-not-found,unused-ignore]  # noqa: F401 - optional dependency
    except ImportError:  # pragma: no cover - torch is installed wherever this is tested
        raise InvalidArgument("check_trainer_loss needs PyTorch (pip install torch)") from None
    from properties.sequence.torch_loss import ModeChanged, torch_threads
    from properties.trainer.evaluation import TrainerLoss

    start = time.perf_counter()
    sandbox = Sandbox(shape_hint=shape_hint(m, d))
    evaluator = TrainerLoss(
        fn,
        sandbox=sandbox,
        micro_batches=m,
        dp_size=d,
        temperature=temp,
        advantage_fn=advantages,
        against=against,
    )
    budget = MAX_BATCHES_VECTORISED
    with torch_threads():
        while True:
            try:
                run = _execute(evaluator, opts, budget, precision=eps)
            except ModeChanged:
                if budget == MAX_BATCHES_LOOPED:  # pragma: no cover - the loop mode never changes
                    raise
                budget = MAX_BATCHES_LOOPED
                continue
            break
        note = _roundoff_note(run, evaluator, opts, budget, seen=evaluator.dtypes)
    unchecked = unreachable_keys(run.ks, run.prompts, run.max_len, run.shapes)
    if default_prompts:  # P >= 2 only within the budget (DEFAULT_NUM_PROMPTS)
        unchecked = [cell for cell in unchecked if cell[2] == 1]
    planned = set(run.shapes)
    over = [s for s in requested_shapes(run.ks, run.prompts, run.vocab_size, run.max_len) if s not in planned]
    info = SequenceRun(
        protocol="trainer loss",
        mode=evaluator.mode,
        fallback_reason=evaluator.fallback_reason,
        shapes=tuple((s.describe(), s.space.num_responses, s.num_batches) for s in run.shapes),
        unchecked=tuple(unchecked),
        over_budget=describe_shapes(over) if over else "",
        batch_budget=budget,
        batches_evaluated=evaluator.batches_evaluated,
        probe_seconds=evaluator.probe_seconds,
        dtypes=tuple(sorted(evaluator.dtypes)),
        problems=dict(run.problems),
    )
    settings = {**opts, "micro_batches": m, "dp_size": d, "temperature": temp, "against": against}
    if precision is not None:
        settings.update(rtol=run.rtol, atol=run.atol, precision=precision)
    report = _make_report(
        name or name_of(fn),
        "trainer-loss",
        run,
        info,
        sandbox,
        settings,
        start,
        batched=True,
        note=note,
    )
    if against == "objective":
        return report
    target = (
        "the target is not grad J but the same loss's E[g] without the split "
        "(micro_batches = dp_size = 1), written 'grad J' below, so 'unbiased' means the "
        "accumulation does not change the expected step"
    )
    region = replace(report.region, notes=(*report.region.notes, target))
    return replace(
        report,
        region=region,
        message=f"[against='one-call': {target}]\n{report.message}",
    )


def trainer_expectation(
    fn: Callable[..., Any],
    *,
    theta: Any,
    rewards: Any,
    k: int,
    ref_theta: Any = None,
    old_theta: Any = None,
    kl_coef: float = 0.0,
    micro_batches: int = 1,
    dp_size: int = 1,
    temperature: float = 1.0,
    advantages: Callable[..., Any] | None = None,
    against: str = "objective",
    tool_tokens: bool = False,
    sampler_theta: Any = None,
    value_table: Any = None,
    exact_values: bool = False,
) -> tuple[Any, Any]:
    r"""The exact :math:`(E[g], \nabla J)` of a trainer loss on one problem (the reproduction helper).

    The arguments are :func:`properties.sequence.checker.sequence_expectation`'s (``tool_tokens``,
    ``sampler_theta``, ``value_table`` and ``exact_values`` included) and
    :func:`check_trainer_loss`'s (with ``against="one-call"`` the second array is the same
    loss's :math:`E[g]` without the split); misbehaviour of ``fn`` raises
    :class:`impl.errors.InvalidArgument` naming it.
    """
    import numpy as np

    from properties.sequence.checker import sequence_expectation
    from properties.sequence.evaluation import SequenceFault
    from properties.sequence.problems import SequenceProblem, Shape
    from properties.sequence.torch_loss import ModeChanged, torch_threads
    from properties.trainer.evaluation import TrainerLoss

    m, d, temp = _split_options(micro_batches, dp_size, temperature, advantages)
    against = _against(against, m, d)
    th = np.asarray(theta, dtype=np.float64)
    # the shape, as sequence_expectation finds it (it validates theta and rewards)
    _, gradient = sequence_expectation(
        lambda batch: (batch.log_probs * 0.0).sum(), theta=th, rewards=rewards, k=k,
        ref_theta=ref_theta, old_theta=old_theta, kl_coef=kl_coef, tool_tokens=tool_tokens,
        sampler_theta=sampler_theta, value_table=value_table, exact_values=exact_values,
    )
    v, rows = th.shape[2], th.shape[1]
    t = next(tt for tt in range(1, 9) if sum((v - 1) ** j for j in range(tt)) + 1 == rows)
    kind = "exact" if exact_values else "random" if value_table is not None else ""
    shape = Shape(v, t, int(k), th.shape[0], bool(tool_tokens), sampler_theta is not None, kind)
    if shape.rows % (m * d):
        raise InvalidArgument(f"P*k = {shape.rows} rows do not split into {m * d} equal parts")
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
    evaluator = TrainerLoss(
        fn,
        sandbox=Sandbox(),
        micro_batches=m,
        dp_size=d,
        temperature=temp,
        advantage_fn=advantages,
        against=against,
    )
    try:
        with torch_threads():
            try:
                (ev,) = evaluator.evaluate([problem], rtol=None, atol=0.0, check_determinism=False)
            except ModeChanged:
                (ev,) = evaluator.evaluate([problem], rtol=None, atol=0.0, check_determinism=False)
    except SequenceFault as fault:
        raise InvalidArgument(f"the loss misbehaved: {fault}") from None
    return ev.mean, (gradient if against == "objective" else ev.gradient)


def _report_or_check(fn: Any, kwargs: dict[str, Any], who: str) -> SequenceReport:
    if isinstance(fn, SequenceReport):
        if kwargs:
            raise InvalidArgument(f"{who} got a finished report and check options {sorted(kwargs)}")
        return fn
    return check_trainer_loss(fn, **kwargs)


def assert_trainer_unbiased(
    fn: Callable[..., Any] | SequenceReport, *, allow_partial: bool = False, **kwargs: Any
) -> SequenceReport:
    """:func:`check_trainer_loss` (or a finished report); :class:`EstimatorCheckFailure` unless ``"unbiased"``.

    A partial check fails too, unless ``allow_partial=True`` (as :func:`assert_sequence_unbiased`).
    """
    report = _report_or_check(fn, kwargs, "assert_trainer_unbiased")
    return assert_sequence_unbiased(report, allow_partial=allow_partial)


def assert_trainer_scaled(
    fn: Callable[..., Any] | SequenceReport,
    scale: Mapping[Any, float] | Callable[..., float] | None = None,
    *,
    allow_partial: bool = False,
    **kwargs: Any,
) -> SequenceReport:
    """:func:`check_trainer_loss` (or a report); raises unless ``"scaled"`` (as ``scale`` if given).

    ``scale`` is ``scale(k, T, P)`` or ``scale(k, T, P, V)``, or a mapping keyed either way, as
    for :func:`assert_sequence_scaled`; a partial check fails unless ``allow_partial=True``.
    """
    report = _report_or_check(fn, kwargs, "assert_trainer_scaled")
    return assert_sequence_scaled(report, scale, allow_partial=allow_partial)


__all__ = [
    "AGAINST",
    "DEFAULT_NUM_PROMPTS",
    "MAX_SPLIT",
    "assert_trainer_scaled",
    "assert_trainer_unbiased",
    "check_trainer_loss",
    "trainer_expectation",
]
