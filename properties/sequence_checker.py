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
checker's: ``unbiased``, ``scaled`` (one constant per ``(k, T, P)``: dividing by the
constant ``max_len`` is scaled, a weighting by the sampled lengths is biased), ``biased``
(with the smallest counterexample found, responses printed as token strings and the
expected weight each response's tokens receive), ``error`` (the loss raised, returned a
non-scalar / non-tensor / non-finite value or one without a gradient, was not
deterministic, wrote into the batch, or printed).

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

import json
import math
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky

from impl.errors import InvalidArgument, describe
from impl.sequence import MAX_VOCAB, advantages, response_probs
from impl.types import FloatArray
from properties._checker_problems import checker_settings, pinned_hypothesis
from properties._judging import (
    REFERENCE_MIN_SIGNAL,
    Mismatch,
    ReferenceBook,
    decide,
    norm,
    relative_residual,
    ulps,
)
from properties._sequence_eval import (
    DETERMINISM_RECHECKS,
    DETERMINISM_ULPS,
    EPS64,
    ROUNDOFF_SAFETY,
    TINY,
    Evaluation,
    Sandbox,
    SequenceFault,
    TokenWeights,
)
from properties._sequence_problems import (
    FULL_BATTERY_BATCHES,
    LOOPED_EXTRA_VOCAB_BATCHES,
    LOOPED_FULL_BATTERY_BATCHES,
    MAX_BATCHES_LOOPED,
    MAX_BATCHES_VECTORISED,
    Key,
    SequenceProblem,
    Shape,
    battery,
    generated_problems,
    plan_shapes,
    shape_data,
    unreachable_keys,
)
from properties._user_code import name_of
from properties.checker import (
    Counterexample,
    EstimatorCheckFailure,
    EstimatorError,
    EstimatorReport,
    RoundoffNote,
)

DEFAULT_GROUP_SIZES = (2, 3, 4)
"""Group sizes ``k`` checked unless told otherwise."""

DEFAULT_VOCAB_SIZE = 3
"""Largest vocabulary tried (``V = 2`` appears too)."""

DEFAULT_MAX_LEN = 3
"""Largest length cap tried (every ``T`` from 1 appears too)."""

DEFAULT_MAX_EXAMPLES = 30
"""Generated problems after the battery (the battery alone: ``max_examples=0``)."""

MAX_GROUP_SIZE = 12
"""Largest ``k`` accepted (only ``V = 2, T = 1`` fits the budget at ``k = 12``)."""

MAX_NUM_PROMPTS = 4
"""Largest ``P`` accepted."""

MAX_LEN_LIMIT = 8
"""Largest ``max_len`` accepted."""

SCALE_MATCH_UNCERTAINTIES = 4.0
"""A known scale formula (and :func:`assert_scaled`) matches a measured constant within this many uncertainties."""

SCALE_MATCH_FLOOR = 1e-12
"""... or within this absolute slack."""

_KNOWN_SCALES: tuple[tuple[str, Callable[[int, int, int], float]], ...] = (
    ("(k-1)/k, the self-inclusive group mean", lambda k, t, p: (k - 1) / k),
    ("1/T, a division by the constant max_len", lambda k, t, p: 1.0 / t),
    (
        "P, a sum over the prompts where the target is their mean (the RL objective averages over prompts)",
        lambda k, t, p: float(p),
    ),
    (
        "(Pk-1)/(Pk), a baseline that is the self-inclusive mean of the whole batch",
        lambda k, t, p: (p * k - 1) / (p * k),
    ),
    (
        "(k-1)/k * P, the self-inclusive group mean and a sum over the prompts",
        lambda k, t, p: (k - 1) * p / k,
    ),
    ("P/T, a division by max_len and a sum over the prompts", lambda k, t, p: p / t),
    (
        "(k-1)/(k T), the self-inclusive group mean and a division by max_len",
        lambda k, t, p: (k - 1) / (k * t),
    ),
    ("k, a sum over the group instead of a mean", lambda k, t, p: float(k)),
    ("k P, a sum over all P*k responses of the batch instead of a mean", lambda k, t, p: float(k * p)),
    ("1/k", lambda k, t, p: 1.0 / k),
)


def key_text(key: Hashable) -> str:
    """``k=2, T=3, P=1`` for a sequence key.

    >>> key_text((2, 3, 1))
    'k=2, T=3, P=1'
    """
    if isinstance(key, tuple) and len(key) == 3:
        return f"k={key[0]}, T={key[1]}, P={key[2]}"
    return str(key)


# --------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class WeightRow:
    """One response of a counterexample: what its tokens receive in expectation.

    ``weights`` are :math:`\\omega(y, t) = \\sum_j E[w_{jt} \\mid y_j = y]` on its tokens;
    ``reinforce`` is the per-token weight of the exact gradient's own form,
    :math:`(\\pi/\\pi_{\\mathrm{old}})(y)\\,A(y)/P` with
    :math:`A = R - \\beta(\\log\\pi - \\log\\pi_{\\mathrm{ref}})` (the target is the mean over
    the ``P`` prompts), times the measured multiple.
    """

    prompt: int
    response: str
    length: int
    probability: float
    reward: float
    weights: tuple[float, ...]
    reinforce: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return {
            "prompt": self.prompt,
            "response": self.response,
            "length": self.length,
            "probability": self.probability,
            "reward": self.reward,
            "weights": list(self.weights),
            "reinforce": self.reinforce,
        }


_NO_SHAPE = Shape(2, 1, 1, 1)

FLOAT32_EPS = float(np.finfo(np.float32).eps)
"""A float64 counterexample within the float32 round-off bound says so (the verdict stays)."""


@dataclass(frozen=True)
class SequenceCounterexample(Counterexample):
    """A sequence problem on which :math:`E[g]` is not the key's multiple of :math:`\\nabla J`.

    The inherited fields hold the flattened arrays (``logits`` is ``theta.ravel()``,
    ``scores`` the reward table, ``k`` the group size); ``shape`` and the policies give the
    problem itself, ``coordinates`` names each entry of ``theta`` as ``(prompt, node
    prefix, token)``, ``responses`` lists the responses as token strings, and
    ``length_pair`` shows two responses of different lengths with the expected weight
    their tokens receive (when the loss's weights are available).
    """

    shape: Shape = _NO_SHAPE
    theta: FloatArray = field(default_factory=lambda: np.zeros(0))
    rewards: FloatArray = field(default_factory=lambda: np.zeros(0))
    ref_theta: FloatArray = field(default_factory=lambda: np.zeros(0))
    old_theta: FloatArray | None = None
    kl_coef: float = 0.0
    reference_label: str = ""
    kind: str = ""
    coordinates: tuple[tuple[int, str, str], ...] = ()
    responses: tuple[str, ...] = ()
    length_pair: tuple[WeightRow, ...] = ()
    weights_complete: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields (the one-step fields plus the sequence problem)."""
        out = super().to_dict()
        out.update(
            {
                "shape": {
                    "vocab_size": self.shape.vocab_size,
                    "max_len": self.shape.max_len,
                    "group_size": self.shape.k,
                    "num_prompts": self.shape.num_prompts,
                },
                "theta": self.theta.tolist(),
                "rewards": self.rewards.tolist(),
                "ref_theta": self.ref_theta.tolist(),
                "old_theta": None if self.old_theta is None else self.old_theta.tolist(),
                "kl_coef": self.kl_coef,
                "reference_label": self.reference_label,
                "kind": self.kind,
                "responses": list(self.responses),
                "length_pair": [row.to_dict() for row in self.length_pair],
                "weights_complete": self.weights_complete,
            }
        )
        return out


@dataclass(frozen=True)
class SequenceError(EstimatorError):
    """What went wrong, on which batch: the inherited fields plus the batch as token strings.

    ``samples`` holds the batch's response indices and ``rewards`` its rewards (both empty
    when the failure is not tied to one batch); ``batch`` lists ``(prompt, response text,
    reward)`` per row; ``shape`` and ``problem_label`` locate the problem.
    """

    shape: Shape | None = None
    problem_label: str = ""
    batch: tuple[tuple[int, str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        out = super().to_dict()
        out.update(
            {
                "shape": None
                if self.shape is None
                else {
                    "vocab_size": self.shape.vocab_size,
                    "max_len": self.shape.max_len,
                    "group_size": self.shape.k,
                    "num_prompts": self.shape.num_prompts,
                },
                "problem": self.problem_label,
                "batch": [list(row) for row in self.batch],
            }
        )
        return out


@dataclass(frozen=True)
class SequenceRun:
    """How the check ran: the evaluation mode, the shapes and batches, the costs.

    ``mode`` is ``vmap``/``loop`` (PyTorch) or ``batched``/``per-batch`` (weights);
    ``fallback_reason`` says why ``vmap`` was not used; ``shapes`` the ``(V, T, k, P)``
    checked with their response and batch counts; ``unchecked`` the keys over budget;
    ``probe_seconds`` one plain call of the loss on one batch; ``dtypes`` the floating
    dtypes the loss computed in.
    """

    protocol: str
    mode: str
    fallback_reason: str | None
    shapes: tuple[tuple[str, int, int], ...]
    unchecked: tuple[Key, ...]
    batch_budget: int
    batches_evaluated: int
    probe_seconds: float | None
    dtypes: tuple[str, ...]
    problems: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return {
            "protocol": self.protocol,
            "mode": self.mode,
            "fallback_reason": self.fallback_reason,
            "shapes": [{"shape": s, "responses": r, "batches": g} for s, r, g in self.shapes],
            "unchecked": [key_text(k) for k in self.unchecked],
            "batch_budget": self.batch_budget,
            "batches_evaluated": self.batches_evaluated,
            "probe_seconds": self.probe_seconds,
            "dtypes": list(self.dtypes),
            "problems": dict(self.problems),
        }


@dataclass(frozen=True)
class SequenceReport(EstimatorReport):
    """An :class:`EstimatorReport` for a sequence check (same verdicts, ``assert_*``, JSON).

    ``scale``/``scale_uncertainty`` are keyed by ``(k, T, P)``; ``run`` says how the check
    ran (:class:`SequenceRun`); ``settings`` the checker's arguments (for reruns).
    """

    run: SequenceRun | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields (``json.dumps(report.to_dict())`` works)."""
        out = super().to_dict()
        out["scale"] = (
            None if self.scale is None else {key_text(k): c for k, c in self.scale.items()}
        )
        out["scale_uncertainty"] = (
            None
            if self.scale_uncertainty is None
            else {key_text(k): c for k, c in self.scale_uncertainty.items()}
        )
        out["run"] = None if self.run is None else self.run.to_dict()
        out["settings"] = dict(self.settings)
        return out

    def to_json(self) -> str:
        """``to_dict()`` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)


# --------------------------------------------------------------------------- the run


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
    ) -> None:
        self.evaluator = evaluator
        self.ks, self.prompts = ks, prompts
        self.vocab_size, self.max_len = vocab_size, max_len
        self.kl_coef, self.off_policy = kl_coef, off_policy
        self.seed, self.max_examples = seed, max_examples
        self.rtol, self.atol = rtol, atol
        self.budget = budget
        looped = budget <= MAX_BATCHES_LOOPED
        self.full_up_to = LOOPED_FULL_BATTERY_BATCHES if looped else FULL_BATTERY_BATCHES
        self.shapes = plan_shapes(
            ks,
            prompts,
            vocab_size,
            max_len,
            budget=budget,
            extra_vocab_budget=LOOPED_EXTRA_VOCAB_BATCHES if looped else None,
        )
        self.book: ReferenceBook[Evaluation] = ReferenceBook()
        self.mismatch: Mismatch[Evaluation] | None = None
        self.found_by = ""
        self.fault: SequenceFault | None = None
        self.fault_found_by = ""
        self.flaky: str | None = None
        self.problems: dict[str, int] = {}
        self.max_eps = EPS64

    def _count(self, source: str, n: int = 1) -> None:
        self.problems[source] = self.problems.get(source, 0) + n

    def run_battery(self) -> None:
        first = True
        for shape in self.shapes:
            problems = battery(
                shape, kl_coef=self.kl_coef, off_policy=self.off_policy, full_up_to=self.full_up_to
            )
            try:
                evs = self.evaluator.evaluate(
                    problems, rtol=self.rtol, atol=self.atol, check_determinism=first
                )
            except SequenceFault as fault:
                self.fault, self.fault_found_by = fault, "battery"
                return
            first = False
            self._count("battery", len(evs))
            for ev in evs:
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
            try:
                (ev,) = self.evaluator.evaluate(
                    [problem], rtol=self.rtol, atol=self.atol, check_determinism=False
                )
            except SequenceFault as fault:
                failure["last"] = fault
                raise
            self._count("hypothesis")
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

    def confirm(self) -> None:
        """Evaluate the counterexample's problem again: an E[g] that moves is ``nondeterministic``."""
        m = self.mismatch
        if m is None or self.fault is not None:
            return
        ev = m.evaluation
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


# --------------------------------------------------------------------------- validation


def _int_tuple(name: str, value: Any, low: int, high: int) -> tuple[int, ...]:
    try:
        items = tuple(value)
    except TypeError:
        raise InvalidArgument(
            f"Expected a sequence of integers but got {describe(name, value)}"
        ) from None
    if not items or any(
        isinstance(x, bool) or not isinstance(x, int | np.integer) or not low <= x <= high
        for x in items
    ):
        raise InvalidArgument(
            f"Expected a non-empty sequence of integers {low} <= x <= {high} but got {describe(name, value)}"
        )
    return tuple(sorted({int(x) for x in items}))


def _validate(
    fn: Any,
    group_sizes: Any,
    vocab_size: Any,
    max_len: Any,
    kl_coef: Any,
    off_policy: Any,
    num_prompts: Any,
    seed: Any,
    max_examples: Any,
    rtol: Any,
    atol: Any,
) -> dict[str, Any]:
    if not callable(fn):
        raise InvalidArgument(f"Expected a callable but got {describe('fn', fn)}")
    ks = _int_tuple("group_sizes", group_sizes, 1, MAX_GROUP_SIZE)
    prompts = _int_tuple("num_prompts", num_prompts, 1, MAX_NUM_PROMPTS)
    for name, value, low, high in (
        ("vocab_size", vocab_size, 2, MAX_VOCAB),
        ("max_len", max_len, 1, MAX_LEN_LIMIT),
        ("seed", seed, 0, 2**64),
        ("max_examples", max_examples, 0, 10**6),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | np.integer)
            or not low <= value <= high
        ):
            raise InvalidArgument(
                f"Expected an integer {low} <= {name} <= {high} but got {describe(name, value)}"
            )
    if (
        isinstance(kl_coef, bool)
        or not isinstance(kl_coef, int | float)
        or not (math.isfinite(kl_coef) and kl_coef >= 0)
    ):
        raise InvalidArgument(
            f"Expected a finite kl_coef >= 0 but got {describe('kl_coef', kl_coef)}"
        )
    if not isinstance(off_policy, bool):
        raise InvalidArgument(
            f"Expected off_policy=True or False but got {describe('off_policy', off_policy)}"
        )
    if rtol is not None and not (
        isinstance(rtol, float | int)
        and not isinstance(rtol, bool)
        and math.isfinite(rtol)
        and rtol > 0
    ):
        raise InvalidArgument(
            f"Expected rtol=None or a finite float > 0 but got {describe('rtol', rtol)}"
        )
    if isinstance(atol, bool) or not (
        isinstance(atol, float | int) and math.isfinite(atol) and atol >= 0
    ):
        raise InvalidArgument(f"Expected a finite atol >= 0 but got {describe('atol', atol)}")
    return {
        "group_sizes": ks,
        "num_prompts": prompts,
        "vocab_size": int(vocab_size),
        "max_len": int(max_len),
        "kl_coef": float(kl_coef),
        "off_policy": off_policy,
        "seed": int(seed),
        "max_examples": int(max_examples),
        "rtol": None if rtol is None else float(rtol),
        "atol": float(atol),
    }


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
) -> SequenceReport:
    r"""Decide whether a PyTorch loss's :math:`E[-\nabla_\theta\mathrm{loss}]` equals :math:`\nabla J`, exactly.

    ``loss_fn(batch: SequenceBatch) -> scalar tensor`` is minimised; ``batch`` holds
    ``B = P*k`` responses (``num_prompts`` ``P``, ``group_sizes`` ``k``) over vocabularies
    of 2..``vocab_size`` tokens and length caps 1..``max_len``, within a batch budget;
    ``kl_coef`` is the :math:`\beta` of the objective (``batch.kl_coef``); ``off_policy``
    draws the responses from a behaviour policy (``batch.old_log_probs``) other than the
    current one.  ``seed``/``max_examples``: the Hypothesis search after the battery;
    ``rtol``/``atol`` override the derived round-off tolerance
    (:data:`properties._sequence_eval.ROUNDOFF_SAFETY`); ``name`` labels the report.

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
    try:
        import torch  # type: ignore[import-not-found,unused-ignore]  # noqa: F401 - optional dependency
    except ImportError:  # pragma: no cover - torch is installed wherever this is tested
        raise InvalidArgument("check_sequence_loss needs PyTorch (pip install torch)") from None
    from properties._sequence_torch import ModeChanged, TorchLoss, torch_threads

    start = time.perf_counter()
    sandbox = Sandbox()
    evaluator = TorchLoss(loss_fn, sandbox=sandbox)
    budget = MAX_BATCHES_VECTORISED
    with torch_threads():
        while True:
            try:
                run = _execute(evaluator, opts, budget)
            except ModeChanged:
                if budget == MAX_BATCHES_LOOPED:  # pragma: no cover - the loop mode never changes
                    raise
                budget = MAX_BATCHES_LOOPED
                continue
            break
        note = _roundoff_note(run, evaluator, opts, budget, seen=evaluator.dtypes)
    info = SequenceRun(
        protocol="pytorch loss",
        mode=evaluator.mode,
        fallback_reason=evaluator.fallback_reason,
        shapes=tuple((s.describe(), s.space.num_responses, s.num_batches) for s in run.shapes),
        unchecked=tuple(unreachable_keys(run.ks, run.prompts, run.max_len, run.shapes)),
        batch_budget=budget,
        batches_evaluated=evaluator.batches_evaluated,
        probe_seconds=evaluator.probe_seconds,
        dtypes=tuple(sorted(evaluator.dtypes)),
        problems=dict(run.problems),
    )
    return _make_report(
        name or name_of(loss_fn),
        "sequence-loss",
        run,
        info,
        sandbox,
        opts,
        start,
        batched=True,
        note=note,
    )


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
) -> SequenceReport:
    r"""Decide whether token weights give :math:`E[\sum_{j,t} w_{jt}\nabla\log\pi(y_{jt}\mid y_{j,<t})] = \nabla J`.

    ``fn(rewards (B,), mask (B, T), log_probs (B, T)) -> weights (B, T)`` (NumPy); it also
    receives, by keyword, whichever of ``group``, ``tokens``, ``old_log_probs``,
    ``ref_log_probs`` and ``kl_coef`` its signature names.  ``batched=True``: every array
    has a leading axis of ``G`` batches and the result is ``(G, B, T)`` (much faster).
    The other arguments are :func:`check_sequence_loss`'s.

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
    start = time.perf_counter()
    sandbox = Sandbox()
    evaluator = TokenWeights(fn, batched=batched, sandbox=sandbox)
    budget = MAX_BATCHES_VECTORISED if batched else MAX_BATCHES_LOOPED
    run = _execute(evaluator, opts, budget)
    note = _roundoff_note(run, evaluator, opts, budget, seen=set())
    info = SequenceRun(
        protocol="token weights",
        mode=evaluator.mode,
        fallback_reason=None,
        shapes=tuple((s.describe(), s.space.num_responses, s.num_batches) for s in run.shapes),
        unchecked=tuple(unreachable_keys(run.ks, run.prompts, run.max_len, run.shapes)),
        batch_budget=budget,
        batches_evaluated=sum(run.problems.values()),
        probe_seconds=None,
        dtypes=(),
        problems=dict(run.problems),
    )
    return _make_report(
        name or name_of(fn),
        "token-weights",
        run,
        info,
        sandbox,
        opts,
        start,
        batched=batched,
        note=note,
    )


def _execute(
    evaluator: Any,
    opts: dict[str, Any],
    budget: int,
    *,
    rtol: float | None = None,
    atol: float | None = None,
) -> _Run:
    """The battery, then Hypothesis, then the re-check of a counterexample (``rtol``/``atol`` override)."""
    if rtol is not None:
        opts = {**opts, "rtol": rtol}
    if atol is not None:
        opts = {**opts, "atol": atol}
    run = _make_run(evaluator, opts, budget)
    run.run_battery()
    if run.fault is None and run.mismatch is None:
        run.run_hypothesis()
    run.confirm()
    return run


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
    rtol = _round_up(max(ROUNDOFF_SAFETY * positions * eps, 2.0 * needed))
    # below the dtype's smallest normal number relative round-off no longer holds (it flushes)
    atol = run.atol + ROUNDOFF_SAFETY * TINY.get(eps, 0.0)
    again = _execute(evaluator, opts, budget, rtol=rtol, atol=atol)
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


def _round_up(x: float) -> float:
    """``x`` rounded up to one significant digit.

    >>> _round_up(1.53e-5), _round_up(2e-5)
    (2e-05, 2e-05)
    """
    if x <= 0 or not math.isfinite(x):
        return x
    unit = 10.0 ** math.floor(math.log10(x))
    return float(f"{math.ceil(round(x / unit, 9)) * unit:.1g}")


def _make_run(evaluator: Any, opts: dict[str, Any], budget: int) -> _Run:
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
    )


# --------------------------------------------------------------------------- the report


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


def _length_pair(ev: Evaluation, multiple: float) -> tuple[WeightRow, ...]:
    """Two responses of different lengths whose tokens get the most different weights (relative to REINFORCE's)."""
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
    rows = []
    for p in range(pr.shape.num_prompts):
        visible = old[p] > 1e-12
        if visible.sum() < 2 or len(set(space.lengths[visible].tolist())) < 2:
            continue
        per_token = np.array(
            [np.nanmean(omega[p, r, : space.lengths[r]]) for r in range(space.num_responses)]
        )
        # fit omega ~ c * target + b * ratio (a constant baseline) over the visible responses, weighted by old
        design = np.stack([target[p], ratio[p]], axis=1)[visible]
        w = np.sqrt(old[p][visible])
        coef, *_ = np.linalg.lstsq(design * w[:, None], per_token[visible] * w, rcond=None)
        residual = np.full(space.num_responses, 0.0)
        residual[visible] = per_token[visible] - design @ coef
        order = np.argsort(-np.abs(residual))
        first = int(order[0])
        second = next(
            (int(r) for r in order if visible[r] and space.lengths[r] != space.lengths[first]), None
        )
        if second is None:
            continue
        score = abs(residual[first]) + abs(residual[second])
        rows.append((score, p, first, second))
    if not rows:
        return ()
    _, p, first, second = max(rows)
    out = []
    for r in sorted((first, second), key=lambda r: space.lengths[r]):
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
        reference_label=ref.label,
        kind=m.kind,
        coordinates=_coordinates(pr),
        responses=pr.shape.space.strings,
        length_pair=_length_pair(ev, m.reference.multiple),
        weights_complete=not ev.direct,
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
) -> SequenceReport:
    keys = sorted({s.key for s in run.shapes})
    error: SequenceError | None = None
    if run.fault is not None:
        error = _error_from_fault(run.fault, run.fault_found_by)
    elif run.flaky is not None:
        error = SequenceError.without_call(
            "nondeterministic",
            f"gave different results when Hypothesis replayed the same problem ({run.flaky}); "
            "the exact checker needs a deterministic function of the batch",
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
        error = SequenceError.without_call(
            "imprecise",
            "no problem measured the scale precisely enough for "
            + ", ".join(key_text(k) for k in decision.imprecise)
            + f" (round-off unit {run.max_eps:.2g}); no verdict between unbiased and scaled is possible",
            hint="compute the loss in float64 (or float32), not half precision",
            found_by="the battery (scale reference)",
        )
    if not keys and error is None:
        verdict = "error"
        error = SequenceError.without_call(
            "imprecise",
            "no shape fits the batch budget: nothing was checked",
            hint="use smaller group_sizes, num_prompts, vocab_size or max_len",
            found_by="planning",
        )
    from properties.checker import CheckedRegion

    region = CheckedRegion(
        group_sizes=run.ks,
        problems=dict(run.problems),
        notes=tuple(
            [f"shapes (V, T, k, P): {', '.join(s.describe() for s in run.shapes)}"]
            + (
                [
                    f"not checked (over the batch budget {info.batch_budget}): "
                    + "; ".join(key_text(k) for k in info.unchecked)
                ]
                if info.unchecked
                else []
            )
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
        seconds=time.perf_counter() - start,
        message="",
        region=region,
        protocol=protocol,
        run=info,
        settings=dict(opts),
    )
    object.__setattr__(report, "message", _message(report, run))
    return report


# --------------------------------------------------------------------------- messages


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _arr(a: Any) -> str:
    return "np.array(" + repr(np.asarray(a, dtype=np.float64).tolist()) + ")"  # round-trip exact


def _scale_hint(key: Hashable, c: float, unc: float, scale: Mapping[Hashable, float]) -> str:
    """The known formula that explains ``key`` and the most other keys (the first on ties).

    A formula is named only where it explains two or more keys (or the only one), so that
    ``k`` at ``P = 1`` and ``k P`` at ``P = 2`` read as one ``k P``.
    """
    slack = max(unc * SCALE_MATCH_UNCERTAINTIES, SCALE_MATCH_FLOOR)
    best, best_count = "", 0
    for text, f in _KNOWN_SCALES:
        matching = [
            kk
            for kk, cc in scale.items()
            if isinstance(kk, tuple) and abs(cc - f(*kk)) <= slack and abs(cc - 1) > slack
        ]
        if (
            isinstance(key, tuple)
            and key in matching
            and (len(matching) >= 2 or len(scale) == 1)
            and len(matching) > best_count
        ):
            best, best_count = f" = {text}", len(matching)
    return best


def _repro(report: SequenceReport, cex: SequenceCounterexample) -> str:
    """The literal call of :func:`sequence_expectation` that gives this counterexample's E[g] and grad J."""
    parts = [f"theta={_arr(cex.theta)}", f"rewards={_arr(cex.rewards)}", f"k={cex.shape.k}"]
    parts.append(f"ref_theta={_arr(cex.ref_theta)}")
    if cex.old_theta is not None:
        parts.append(f"old_theta={_arr(cex.old_theta)}")
    if cex.kl_coef:
        parts.append(f"kl_coef={cex.kl_coef!r}")
    if report.protocol == "token-weights":
        parts.append(f"protocol='token-weights', batched={report.batched}")
    return "  E, G = sequence_expectation(fn, " + ", ".join(parts) + ")"


def _rerun(report: SequenceReport) -> str:
    s = report.settings
    fn = (
        "check_sequence_loss(loss_fn"
        if report.protocol == "sequence-loss"
        else f"check_token_weights(fn, batched={report.batched}"
    )
    parts = [
        f"group_sizes={s['group_sizes']}",
        f"vocab_size={s['vocab_size']}",
        f"max_len={s['max_len']}",
        f"kl_coef={s['kl_coef']}",
        f"off_policy={s['off_policy']}",
        f"num_prompts={s['num_prompts']}",
        f"seed={s['seed']}",
        f"max_examples={s['max_examples']}",
    ]
    return f"  rerun: properties.{fn}, " + ", ".join(parts) + ")"


def _problem_text(cex: SequenceCounterexample) -> list[str]:
    space = cex.shape.space
    lines = []
    pi = response_probs(space, cex.old_theta if cex.old_theta is not None else cex.theta)
    for p in range(cex.shape.num_prompts):
        items = [
            f"{space.strings[r]!r}{' (truncated)' if space.truncated[r] else ''}: R={_fmt(cex.rewards[p, r])}, "
            f"p={pi[p, r]:.3g}"
            for r in range(space.num_responses)
        ]
        shown = items if len(items) <= 16 else [*items[:16], f"... ({len(items)} responses)"]
        lines.append(f"  prompt {p} responses: " + "; ".join(shown))
    lines.append(f"  theta = {_arr(cex.theta)}")
    if cex.kl_coef > 0:
        lines.append(f"  ref_theta = {_arr(cex.ref_theta)} (kl_coef={cex.kl_coef})")
    if cex.old_theta is not None:
        lines.append(f"  old_theta = {_arr(cex.old_theta)} (the behaviour policy that sampled)")
    return lines


_MAX_ROWS = 12


def _table(cex: SequenceCounterexample) -> str:
    bad = np.abs(cex.discrepancy) > cex.tolerance
    order = [
        i
        for i in np.argsort(-np.abs(cex.discrepancy) / np.maximum(cex.tolerance, 1e-300))
        if bad[i]
    ]
    order += [
        i
        for i in range(cex.discrepancy.size)
        if not bad[i] and (cex.gradient[i] != 0 or cex.expectation[i] != 0)
    ]
    rows = [
        f"  {'prompt':>6} {'node (prefix)':>16} {'token':>6} {'E[g]':>14} {'grad J':>14} {'c*grad J':>14} "
        f"{'difference':>11} {'tolerance':>9}"
    ]
    for i in order[:_MAX_ROWS]:
        p, node, tok = cex.coordinates[i]
        mark = " <--" if bad[i] else ""
        rows.append(
            f"  {p:>6} {node:>16} {tok:>6} {cex.expectation[i]:>14.8g} {cex.gradient[i]:>14.8g} "
            f"{cex.reference_multiple * cex.gradient[i]:>14.8g} {cex.discrepancy[i]:>11.3g} "
            f"{cex.tolerance[i]:>9.2g}{mark}"
        )
    if len(order) > _MAX_ROWS:
        rows.append(f"  ... ({int(bad.sum())} coordinates outside the tolerance in all)")
    return "\n".join(rows)


def _pair_text(cex: SequenceCounterexample) -> list[str]:
    if not cex.length_pair:
        return []
    lines = [
        "Expected weight on each token, E[w_t | y] summed over the rows y can occupy, for two responses "
        "of different lengths (a REINFORCE-form estimator gives every token of y the same weight "
        "c*(pi/pi_old)(y)*A(y) up to a baseline, A = R - kl_coef*log(pi/pi_ref)):"
    ]
    for row in cex.length_pair:
        weights = ", ".join(_fmt(w) for w in row.weights)
        lines.append(
            f"  prompt {row.prompt} {row.response!r} ({row.length} token{'s' if row.length != 1 else ''}, "
            f"R={_fmt(row.reward)}, p={row.probability:.3g}): weights [{weights}]; "
            f"c*(pi/pi_old)*A = {_fmt(row.reinforce)}"
        )
    if not cex.weights_complete:
        lines.append(
            "  (the loss also reads the logits other than through log_probs, e.g. an entropy term: "
            "these weights are only the log_probs part of its gradient)"
        )
    return lines


def _roundoff_text(report: SequenceReport, note: RoundoffNote) -> str:
    shown = ", ".join(f"{u:.3g} ulps of {name}" for name, u in note.ulps.items())
    at = f"with rtol={note.rtol:g} ({note.dtype} round-off) the checker's verdict is {note.verdict.upper()}"
    if note.verdict == "scaled" and note.scale is not None:
        at += ": " + ", ".join(
            f"c = {c:.6g} at {key_text(k)}" for k, c in sorted(note.scale.items())
        )
    elif note.verdict == "biased":
        at += " (another problem shows a bias beyond that round-off: not round-off alone)"
    seen = report.run.dtypes if report.run is not None else ()
    inside = (
        f"the loss computes in {', '.join(seen)} (seen by the checker)"
        if note.dtype in seen
        else f"if the code computes in {note.dtype} anywhere (or casts to it)"
    )
    return "\n".join(
        [
            f"Round-off? The residual |E[g] - c grad J| is {note.relative_residual:.3g} of |grad J| "
            f"on this problem ({shown}): within the checker's round-off bound for {note.dtype}; "
            f"{inside}, it may be round-off rather than a bias of the formula.",
            f"  At that precision: {at}.",
            "  The verdict stays BIASED because the output's own dtype claims more precision; "
            f"confirm with rtol={note.rtol:g}, atol={note.atol:g}.",
        ]
    )


def _span(shapes: tuple[str, ...]) -> str:
    """The values each of ``V, T, k, P`` took over the checked shapes.

    >>> _span(("V=2, T=1, k=2, P=1", "V=3, T=2, k=2, P=1", "V=2, T=3, k=4, P=2"))
    'V in {2, 3}, T in {1, 2, 3}, k in {2, 4}, P in {1, 2}'
    >>> _span(())
    'none'
    """
    if not shapes:
        return "none"
    values: dict[str, set[int]] = {}
    for text in shapes:
        for part in text.split(", "):
            name, _, value = part.partition("=")
            values.setdefault(name, set()).add(int(value))
    return ", ".join(
        f"{name} in {{{', '.join(str(v) for v in sorted(vs))}}}" for name, vs in values.items()
    )


def _message(report: SequenceReport, run: _Run) -> str:
    what = "Loss" if report.protocol == "sequence-loss" else "Weight function"
    head = f"{what} {report.name!r}"
    info = report.run
    assert info is not None
    mode = info.mode + (f" (fallback: {info.fallback_reason})" if info.fallback_reason else "")
    span = _span(tuple(text for text, _, _ in info.shapes))
    checked = (
        f"{report.problems_checked} problems on {len(info.shapes)} shapes ({span}; up to "
        f"{max((g for _, _, g in info.shapes), default=0)} batches each), evaluation: {mode}, "
        f"{report.estimator_calls} calls, seed={report.seed}, max_examples={report.max_examples}, "
        f"kl_coef={report.settings['kl_coef']}, off_policy={report.settings['off_policy']}, "
        f"num_prompts={report.settings['num_prompts']}, {report.seconds:.2f} s"
    )
    if info.unchecked:
        checked += f"; not checked (over the batch budget {info.batch_budget}): " + "; ".join(
            key_text(k) for k in info.unchecked
        )
    if report.verdict == "unbiased":
        return f"{head} is UNBIASED: E[g] = grad J exactly (to round-off) on every problem checked: {checked}."
    if report.verdict == "scaled":
        assert report.scale is not None and report.scale_uncertainty is not None
        lines = [
            f"{head} is SCALED: E[g] = c grad J with one fixed c > 0 per (k, T, P), on every problem "
            f"checked ({checked}):"
        ]
        for key, c in sorted(report.scale.items()):
            unc = report.scale_uncertainty[key]
            lines.append(
                f"  {key_text(key)}: c = {c:.12g} (+- {unc:.1g}){_scale_hint(key, c, unc, report.scale)}"
            )
        lines.append(
            "It ascends J, but its step is rescaled by c; divide by c (or fix the aggregation) to "
            "make it unbiased."
        )
        return "\n".join(lines)
    if report.verdict == "biased":
        cex = report.counterexample
        assert isinstance(cex, SequenceCounterexample)
        fit = (
            "grad J = 0 here, so no multiple fits"
            if cex.multiple is None
            else f"best-fitting multiple c = {cex.multiple:.12g}, residual |E[g] - c grad J| = {norm(cex.residual):.3g}"
        )
        lines = [
            f"{head} is BIASED: {cex.reason}.",
            f"Counterexample (found by {cex.found_by}): {cex.shape.describe()} "
            f"({cex.shape.space.num_responses} possible responses per prompt, "
            f"{cex.shape.num_batches} batches):",
            *_problem_text(cex),
            f"  {fit}; c = {cex.reference_multiple:.12g} for {key_text(cex.shape.key)} on the reference "
            f"problem ({cex.reference_label})",
            _table(cex),
            *_pair_text(cex),
        ]
        if cex.roundoff is not None:
            lines.append(_roundoff_text(report, cex.roundoff))
        lines += [
            "Reproduce:",
            "  import numpy as np; from properties.sequence_checker import sequence_expectation",
            _repro(report, cex),
            _rerun(report),
            f"Checked: {checked}.",
        ]
        return "\n".join(lines)
    err = report.error
    assert isinstance(err, SequenceError)
    lines = [f"{head} ERROR ({err.kind}): it {err.detail}."]
    if err.shape is not None:
        where = (
            f"{err.shape.describe()}; {err.problem_label.replace('battery: ', 'battery problem ')}"
        )
        if err.batch:
            rows = "; ".join(f"prompt {p}: {text!r} (reward {_fmt(r)})" for p, text, r in err.batch)
            lines.append(f"Triggered by the batch [{rows}] ({where}).")
        else:
            lines.append(f"Triggered on {where} (not narrowed to one batch).")
    if err.hint:
        lines.append(f"Hint: {err.hint}.")
    lines.append(f"Checked: {checked}.")
    return "\n".join(lines)


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
) -> tuple[FloatArray, FloatArray]:
    r"""The exact :math:`(E[g], \nabla J)` of ``fn`` on one problem, both ``(P, N+1, V)``: the reproduction helper.

    ``theta`` ``(P, N+1, V)`` fixes ``P`` and (through ``N``) the shape ``(V, T)``;
    ``rewards`` ``(P, R)``; ``ref_theta`` defaults to ``theta``; ``old_theta`` ``None`` is
    on-policy.  ``protocol`` is ``"sequence-loss"`` or ``"token-weights"``.  Misbehaviour
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
    shape = Shape(v, t, int(k), th.shape[0])
    problem = SequenceProblem(
        shape=shape,
        theta=th,
        rewards=np.asarray(rewards, dtype=np.float64),
        ref_theta=th if ref_theta is None else np.asarray(ref_theta, dtype=np.float64),
        old_theta=None if old_theta is None else np.asarray(old_theta, dtype=np.float64),
        kl_coef=float(kl_coef),
        label="reproduction",
    )
    sandbox = Sandbox()
    evaluator: Any
    if protocol == "sequence-loss":
        from properties._sequence_torch import ModeChanged, TorchLoss, torch_threads

        evaluator = TorchLoss(fn, sandbox=sandbox)
        try:
            with torch_threads():
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
        evaluator = TokenWeights(fn, batched=batched, sandbox=sandbox)
        try:
            (ev,) = evaluator.evaluate([problem], rtol=None, atol=0.0, check_determinism=False)
        except SequenceFault as fault:
            raise InvalidArgument(f"the weight function misbehaved: {fault}") from None
    else:
        raise InvalidArgument(
            f"Expected protocol='sequence-loss' or 'token-weights' but got {describe('protocol', protocol)}"
        )
    return ev.mean, ev.gradient


def _report_or_check(fn: Any, kwargs: dict[str, Any], who: str) -> SequenceReport:
    if isinstance(fn, SequenceReport):
        if kwargs:
            raise InvalidArgument(f"{who} got a finished report and check options {sorted(kwargs)}")
        return fn
    return check_sequence_loss(fn, **kwargs)


def assert_sequence_unbiased(
    fn: Callable[..., Any] | SequenceReport, **kwargs: Any
) -> SequenceReport:
    """:func:`check_sequence_loss` (or a finished report); :class:`EstimatorCheckFailure` unless ``"unbiased"``."""
    report = _report_or_check(fn, kwargs, "assert_sequence_unbiased")
    if report.verdict != "unbiased":
        raise EstimatorCheckFailure(report, "unbiased")
    return report


def assert_sequence_scaled(
    fn: Callable[..., Any] | SequenceReport,
    scale: Mapping[Key, float] | Callable[[int, int, int], float] | None = None,
    **kwargs: Any,
) -> SequenceReport:
    """:func:`check_sequence_loss` (or a report); raises unless ``"scaled"`` (as ``scale(k, T, P)`` if given)."""
    report = _report_or_check(fn, kwargs, "assert_sequence_scaled")
    if report.verdict != "scaled":
        raise EstimatorCheckFailure(report, "scaled")
    if scale is not None:
        assert report.scale is not None and report.scale_uncertainty is not None
        for key, c in report.scale.items():
            k, t, p = key
            want = float(scale(k, t, p) if callable(scale) else scale[(k, t, p)])
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
    "MAX_NUM_PROMPTS",
    "SequenceCounterexample",
    "SequenceError",
    "SequenceReport",
    "SequenceRun",
    "WeightRow",
    "assert_sequence_scaled",
    "assert_sequence_unbiased",
    "check_sequence_loss",
    "check_token_weights",
    "key_text",
    "sequence_expectation",
]
