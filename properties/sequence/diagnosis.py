r"""Why a sequence loss is biased (or scaled): every cause that holds, each with its evidence.

:func:`diagnose` drives the exact evaluation (:func:`properties.sequence.checker.evaluate_one`)
on a few small *targeted* problems, each built so that one cause shows alone:

* **reward part / KL part** (``kl_coef > 0``): the rewards with ``kl_coef = 0`` and
  ``ref = pi``, then zero rewards with the KL term alone, whose :math:`E[g]` is matched against
  the exact :math:`-\beta\nabla\mathrm{KL}(\pi\|\pi_{\mathrm{ref}})`, the per-node forward KL
  gradient :math:`-\beta\sum_n \rho(n)(\pi_n - \pi_{\mathrm{ref},n})`, the per-token partial
  gradient :math:`-\beta\sum_n\rho(n)\nabla_n\mathrm{KL}(\pi_n\|\pi_{\mathrm{ref},n})` and zero;
  with ``kl_coef = 0``, zero rewards must give :math:`E[g] = 0` (else an extra term);
* **token weights** (binary rewards, where any function of a response's own reward is affine
  in it): EOS positions with no weight, weights that change along a response (position),
  a per-length affine law :math:`\omega = c_L R + b_L` (length; ``c_L L`` constant is
  :math:`1/|y|`), truncated responses weighted unlike EOS-ended ones of the same length;
* **reward statistics**: :math:`E[g]` at rewards ``2R`` and ``R + c`` (an unbiased estimator
  is linear and, in expectation, shift-invariant; a division by the rewards' spread makes it
  scale-invariant);
* **padding**: gradient on the after-the-end node, or :math:`E[g]` that changes when the
  padded tokens are not the EOS id;
* **pooling, off-policy**: proportional at ``P = 1`` but not at ``P = 2``; on-policy but not
  off-policy;
* **the constant** of a proportional loss, factored over ``(k, T, P)`` into ``1/T``, ``P``,
  ``k``, ``(k-1)/k`` and ``(Pk-1)/(Pk)``.

>>> import pytest; torch = pytest.importorskip("torch")
>>> def token_mean(batch):  # length-normalised: biased
...     per = (batch.log_probs * batch.mask).sum(-1) / batch.mask.sum(-1)
...     return -(batch.rewards * per).mean()
>>> diagnose(token_mean).names()
('length',)
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from impl.errors import InvalidArgument, describe
from impl.sequence import node_log_probs, response_probs, response_space, sequence_score
from impl.types import FloatArray
from properties.judging.seam import stand_in_evaluator, wrap_evaluator
from properties.sequence.evaluation import (
    Evaluation,
    ModeChanged,
    Sandbox,
    SequenceFault,
    TokenWeights,
)
from properties.sequence.problems import SequenceProblem, Shape
from properties.sequence.results import Diagnosis, Finding, SequenceReport
from properties.sequence.rewrites import FAITHFUL_RTOL, logits_via_log_probs, pad_with_token

PROPORTIONAL_RTOL = 1e-6
r"""``E[g]`` is ``c * grad J`` when ``max|E[g] - c grad J| <= PROPORTIONAL_RTOL * max(|E[g]|, |c grad J|)``
(the probes are exact enumerations in float64, so any true bias is far above it)."""

INVARIANCE_RTOL = 1e-2
"""Looser tolerance for "does not change when the rewards are doubled": the ``eps`` that
guards a division by a standard deviation (``1e-4`` in common code) breaks it slightly."""

PROBE_SEED = 20240917
"""Seed of the probes' logits and rewards (the diagnosis is deterministic)."""

SHIFT = 3.0
"""The constant added to every reward in the shift probe."""

SCALE_MATCH_RTOL = 1e-6
"""A product of named factors explains the measured constants when it matches them to this
(also: two measured constants are the same constant)."""

PROBE_LOGIT_SCALE = 0.7
"""Standard deviation of the probes' random logits (moderate: every response has a fair chance)."""

BEHAVIOUR_LOGIT_SCALE = 0.8
"""Standard deviation of the perturbation that makes the off-policy probe's behaviour policy."""

TRUNCATION_RTOL = 1e-4
"""Truncated and EOS-ended responses are weighted differently when their fitted ``(c, b)`` differ by more."""

FLOAT64_RESIDUAL = 1e-10
"""A relative residual of ``E[g] - c grad J`` above this is more than float64 round-off."""

LOW_PRECISION_DTYPES = frozenset({"float32", "float16", "bfloat16"})
"""Dtypes whose round-off a float64 check can call a bias."""

MAX_PROBE_BATCHES = 10_000
"""Most batches a probe enumerates: larger groups (a trainer's ``M D = 4`` parts need ``k >= 4``)
are skipped, and listed, rather than left to run for minutes one batch at a time."""

VISIBLE_PROBABILITY = 1e-12
"""Responses less likely than this are left out of the token-weight fits (their weights are noise)."""


# --------------------------------------------------------------------------- numerics


def proportion(mean: FloatArray, target: FloatArray) -> tuple[float, float]:
    r"""``(c, residual)``: the least-squares ``c`` with ``mean ~ c * target`` and the relative residual.

    The residual is :math:`\max|m - c t| / \max(\max|m|, \max|c t|)` (0 when both vanish).

    >>> proportion(np.array([2.0, 4.0]), np.array([1.0, 2.0]))
    (2.0, 0.0)
    >>> c, r = proportion(np.array([1.0, 0.0]), np.array([0.0, 1.0])); (c, r)
    (0.0, 1.0)
    """
    m = np.asarray(mean, dtype=np.float64).ravel()
    t = np.asarray(target, dtype=np.float64).ravel()
    tt = float(t @ t)
    c = float(m @ t) / tt if tt > 0 else 0.0
    scale = max(float(np.abs(m).max(initial=0.0)), float(np.abs(c * t).max(initial=0.0)))
    if scale == 0:
        return c, 0.0
    return c, float(np.abs(m - c * t).max()) / scale


def _close(a: FloatArray, b: FloatArray, rtol: float, floor: float = 0.0) -> bool:
    """``max|a - b| <= rtol * max(|a|, |b|, floor)``.

    >>> _close(np.array([1e-18]), np.array([0.0]), 1e-6, floor=1.0)
    True
    """
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), floor)
    return float(np.abs(a - b).max(initial=0.0)) <= rtol * scale


def per_node_kl_gradients(theta: FloatArray, ref_theta: FloatArray, reach: FloatArray) -> dict[str, FloatArray]:
    r"""Candidate expectations of a KL term's gradient (ascent on :math:`-\mathrm{KL}`, before :math:`\beta/P`).

    ``"forward"``: :math:`-\rho(n)(\pi_n - \pi_{\mathrm{ref},n})`, the gradient of
    :math:`-\sum_n\rho(n)\mathrm{KL}(\pi_{\mathrm{ref},n}\|\pi_n)` at fixed reach (what a
    k3 term in the loss estimates); ``"per-token"``: :math:`-\rho(n)\,\pi_n\odot(\delta_n -
    \mathrm{KL}_n)`, :math:`\delta_n = \log\pi_n - \log\pi_{\mathrm{ref},n}`, the per-node
    reverse KL gradient without the future terms (a k2 term in the loss).  Rows: the
    ``reach`` ``(P, N+1)`` includes the after-the-end node, which gets 0.

    >>> th = np.zeros((1, 2, 2)); ref = np.array([[[0.0, np.log(3.0)], [0.0, 0.0]]])
    >>> per_node_kl_gradients(th, ref, np.ones((1, 2)))["forward"][0, 0].tolist()
    [-0.25, 0.25]
    """
    logp = node_log_probs(theta)
    logr = node_log_probs(ref_theta)
    pi = np.exp(logp)
    delta = logp - logr
    kl = (pi * delta).sum(axis=-1, keepdims=True)
    w = reach[:, :, None].copy()
    w[:, -1] = 0.0
    return {
        "forward": -w * (pi - np.exp(logr)),
        "per-token": -w * pi * (delta - kl),
    }


# --------------------------------------------------------------------------- probes


@dataclass(frozen=True)
class _Options:
    kl_coef: float
    off_policy: bool
    multi_prompt: bool


TRAINER_OPTIONS = ("micro_batches", "dp_size", "temperature", "advantages", "against")
"""The trainer checker's options besides the sequence checker's (read by the trainer's prober)."""


CHECK_OPTIONS = frozenset({
    "atol", "batched", "checker", "diagnose", "group_sizes", "kl_coef", "max_examples", "max_len",
    "name", "num_prompts", "off_policy", "precision", "rtol", "sampling_mismatch", "seed",
    "tool_tokens", "values", "vocab_size", *TRAINER_OPTIONS,
})
"""The keyword arguments of ``check_sequence_loss``, ``check_token_weights`` and
``check_trainer_loss`` (and the audit's ``checker``): a mapping of options may hold only these
(``tests/test_trial3.py`` keeps the set equal to the checkers' signatures)."""


def _known_options(kwargs: Mapping[str, Any]) -> None:
    """Refuse a key no checker takes (a typo such as ``kl_cof`` would silently drop the KL probes)."""
    unknown = sorted(str(k) for k in kwargs if k not in CHECK_OPTIONS)
    if unknown:
        raise InvalidArgument(
            f"diagnose got options no checker takes: {', '.join(unknown)} (expected the keyword "
            "arguments of check_sequence_loss, check_token_weights or check_trainer_loss)"
        )


def _options(report_or_kwargs: SequenceReport | Mapping[str, Any] | None) -> _Options:
    if report_or_kwargs is None:
        return _Options(0.0, False, False)
    if isinstance(report_or_kwargs, SequenceReport):
        if report_or_kwargs.settings:  # the checker's own arguments
            return _options(report_or_kwargs.settings)
        cx = report_or_kwargs.counterexample
        kl = float(getattr(cx, "kl_coef", 0.0) or 0.0)
        off = getattr(cx, "old_theta", None) is not None
        shape = getattr(cx, "shape", None)
        multi = shape is not None and int(shape.num_prompts) > 1
        return _Options(kl, off, multi)
    if isinstance(report_or_kwargs, Mapping):
        _known_options(report_or_kwargs)
        kl = report_or_kwargs.get("kl_coef", 0.0)
        off = report_or_kwargs.get("off_policy", False)
        prompts = report_or_kwargs.get("num_prompts", (1,))
        for flag in ("tool_tokens", "sampling_mismatch", "values"):  # its probes have none
            if report_or_kwargs.get(flag) not in (None, False):
                raise InvalidArgument(f"diagnose does not model {flag} yet: got {flag}={report_or_kwargs[flag]!r}")
        if isinstance(kl, bool) or not isinstance(kl, int | float) or not (math.isfinite(kl) and kl >= 0):
            raise InvalidArgument(f"Expected a finite kl_coef >= 0 but got {describe('kl_coef', kl)}")
        if not isinstance(off, bool):
            raise InvalidArgument(f"Expected off_policy=True or False but got {describe('off_policy', off)}")
        try:
            multi = any(int(p) > 1 for p in prompts)
        except (TypeError, ValueError):
            raise InvalidArgument(
                f"Expected a sequence of integers but got {describe('num_prompts', prompts)}"
            ) from None
        return _Options(float(kl), off, multi)
    raise InvalidArgument(
        "Expected a SequenceReport or a mapping of check_sequence_loss options but got "
        + describe("report_or_kwargs", report_or_kwargs)
    )


class _Prober:
    """Runs ``loss_fn`` on probe problems and remembers the probes run and those that failed.

    One evaluator per function is kept across the probes, so that a loss ``vmap`` cannot run
    falls back to the loop once, not once per probe (what
    :func:`properties.sequence.checker.evaluate_one` does for a single problem).  Another
    protocol subclasses it (:data:`PROBERS`): its evaluator (:meth:`_new_evaluator`), the
    rows a batch must split into (``parts``), its padded-token rewrite (:meth:`padded`) and,
    when its gradient holds no token weights, the loss re-expressed as a sequence loss
    (:meth:`per_row_loss`).
    """

    parts = 1

    def __init__(
        self, loss_fn: Callable[..., Any], protocol: str = "sequence-loss", batched: bool = False, settings: Any = None
    ) -> None:
        self.loss_fn = loss_fn
        self.protocol = protocol
        self.batched = batched
        self.skipped: list[str] = []
        self.probes: list[str] = []
        self.residual = 0.0  # relative residual of E[g] against c grad J on the graded-rewards probe
        self.rng = np.random.default_rng(PROBE_SEED)
        self._evaluators: dict[int, Any] = {}
        self.replayed = False

    def theta(self, v: int, t: int, p: int) -> FloatArray:
        """Random logits whose root prefers a non-EOS token (else greedy paths are trivially empty)."""
        space = response_space(v, t)
        out: FloatArray = self.rng.normal(0.0, PROBE_LOGIT_SCALE, size=space.theta_shape(p))
        out[:, 0, 0] = out[:, 0, 1:].min(axis=-1) - 0.5
        return out

    def group(self, k: int, p: int = 1) -> int:
        """The smallest group size ``>= k`` whose batch of ``p k`` rows splits into ``parts``."""
        return next(m for m in itertools.count(k) if m * p % self.parts == 0)

    def padded(self, fn: Callable[..., Any]) -> Callable[..., Any] | None:
        """``fn`` with the padded tokens not the EOS id (``None``: a weight function's show on the end node)."""
        return pad_with_token(fn) if self.protocol == "sequence-loss" else None

    def per_row_loss(self) -> Callable[..., Any] | None:
        """The loss as a sequence loss whose ``log_probs`` carry its token weights (``None``: its own do)."""
        return None

    def low_precision(self) -> tuple[str, ...]:
        """The floating dtypes below float64 the loss computed in (seen by the main evaluator)."""
        main = self._evaluators.get(id(self.loss_fn))
        seen: set[str] = getattr(main, "dtypes", set())
        return tuple(sorted(d for d in seen if d in LOW_PRECISION_DTYPES))

    def _evaluator(self, fn: Callable[..., Any], protocol: str) -> Any:
        """The evaluator of ``fn`` under ``protocol``, through the seam (the command line's parent
        re-runs the probes on the child's record, as it does the check's own problems)."""
        found = self._evaluators.get(id(fn))
        if found is None:
            found = self._new_evaluator(fn, protocol, Sandbox())
            self._evaluators[id(fn)] = found
        return found

    def _new_evaluator(self, fn: Callable[..., Any], protocol: str, sandbox: Sandbox) -> Any:
        if protocol == "token-weights":
            return wrap_evaluator(TokenWeights(fn, batched=self.batched, sandbox=sandbox), sandbox)
        found = stand_in_evaluator(sandbox) if protocol == self.protocol else None
        if found is not None:
            self.replayed = True
            return found
        from properties.sequence.torch_loss import TorchLoss

        return wrap_evaluator(TorchLoss(fn, sandbox=sandbox), sandbox)

    def run(
        self,
        label: str,
        *,
        theta: FloatArray,
        rewards: FloatArray,
        k: int,
        kl_coef: float = 0.0,
        ref_theta: FloatArray | None = None,
        old_theta: FloatArray | None = None,
        fn: Callable[..., Any] | None = None,
        protocol: str | None = None,
    ) -> Evaluation | None:
        """``E[g]`` of ``fn`` (the loss) on one problem, or ``None`` (listed in ``skipped``)."""
        self.probes.append(label)
        v = theta.shape[2]
        t = next(tt for tt in range(1, 9) if response_space(v, tt).num_rows == theta.shape[1])
        shape = Shape(v, t, int(k), theta.shape[0])
        if shape.rows % self.parts or shape.num_batches > MAX_PROBE_BATCHES:
            why = (f"{shape.rows} rows do not split into {self.parts} parts" if shape.rows % self.parts
                   else f"{shape.num_batches} batches of k={k}, more than {MAX_PROBE_BATCHES}")
            self.skipped.append(f"{label}: not run ({why})")
            return None
        problem = SequenceProblem(
            shape=shape,
            theta=theta,
            rewards=np.asarray(rewards, dtype=np.float64),
            ref_theta=theta if ref_theta is None else ref_theta,
            old_theta=old_theta,
            kl_coef=float(kl_coef),
            label=f"diagnosis: {label}",
        )
        evaluator = self._evaluator(self.loss_fn if fn is None else fn, protocol or self.protocol)
        try:
            if self.protocol == "token-weights":
                (ev,) = evaluator.evaluate([problem], rtol=None, atol=0.0, check_determinism=False)
                return ev  # type: ignore[no-any-return]
            threads: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
            if not self.replayed:  # the parent's re-run never imports PyTorch
                from properties.sequence.torch_loss import torch_threads

                threads = torch_threads()
            with threads:
                try:
                    (ev,) = evaluator.evaluate([problem], rtol=None, atol=0.0, check_determinism=False)
                except ModeChanged:
                    (ev,) = evaluator.evaluate([problem], rtol=None, atol=0.0, check_determinism=False)
            return ev  # type: ignore[no-any-return]
        except SequenceFault as fault:
            self.skipped.append(f"{label}: the loss misbehaved: {fault}")
            return None


def _graded(r: int, rng: np.random.Generator, p: int = 1) -> FloatArray:
    out: FloatArray = rng.permutation(np.arange(p * r, dtype=np.float64)).reshape(p, r) / r
    return out


def _binary(space_lengths: Any, truncated: Any) -> FloatArray:
    """Alternating 0/1 rewards within each (length, truncated) class, so both values occur in each."""
    out = np.zeros(len(space_lengths))
    seen: dict[tuple[int, bool], int] = {}
    for r, (length, trunc) in enumerate(zip(space_lengths, truncated, strict=True)):
        key = (int(length), bool(trunc))
        out[r] = float(seen.get(key, 0) % 2 == 0)
        seen[key] = seen.get(key, 0) + 1
    return out[None, :]


# --------------------------------------------------------------------------- causes


def _kl_findings(pr: _Prober, beta: float) -> list[Finding]:
    """Zero rewards, the KL term alone (T = 2, so per-node and sequence KL differ)."""
    theta = pr.theta(3, 2, 1)
    ref = pr.theta(3, 2, 1)
    space = response_space(3, 2)
    zero = np.zeros((1, space.num_responses))
    ev = pr.run("kl part", theta=theta, rewards=zero, k=pr.group(2), kl_coef=beta, ref_theta=ref)
    if ev is None:
        return []
    c, res = proportion(ev.mean, ev.gradient)
    if res <= PROPORTIONAL_RTOL and abs(c - 1) <= PROPORTIONAL_RTOL:
        return []
    if res <= PROPORTIONAL_RTOL and c > 0:  # scaled: fine if the reward part has the same constant
        part = pr.run("reward part", theta=theta, rewards=_graded(space.num_responses, pr.rng), k=pr.group(2))
        if part is None:
            return []
        c_r, res_r = proportion(part.mean, part.gradient)
        if res_r > PROPORTIONAL_RTOL or abs(c_r - c) <= PROPORTIONAL_RTOL * abs(c):
            return []  # the reward part's own causes are named by the other probes
        return [Finding("kl-scale", "the KL part and the reward part are scaled by different constants: the "
                        "objective's beta is effectively changed.", {"scale_kl": c, "scale_reward": c_r})]
    size = float(np.abs(ev.gradient).max())
    if float(np.abs(ev.mean).max()) <= PROPORTIONAL_RTOL * size:
        return [Finding("kl-zero", "the KL part has no expected gradient (E[g] = 0 with zero rewards): "
                        "a k1 term log pi - log pi_ref in the loss is zero in expectation; put it in "
                        "the reward instead.", {"max_abs_grad_kl": size})]
    cands = per_node_kl_gradients(theta, ref, ev.problem.reach)
    for key, name, sentence in (
        ("forward", "kl-forward", "the KL part estimates the per-node forward KL gradient, "
         "sum_n rho(n) grad KL(pi_ref(.|n) || pi(.|n)), not grad KL(pi || pi_ref) (a k3 term in the loss)."),
        ("per-token", "kl-per-token", "the KL part is only the per-token partial gradient "
         "sum_n rho(n) grad_n KL(pi(.|n) || pi_ref(.|n)): the future terms of the sequence KL are "
         "missing (a k2 term in the loss)."),
    ):
        cc, rr = proportion(ev.mean, beta * cands[key])
        if rr <= PROPORTIONAL_RTOL:
            return [Finding(name, sentence, {"coefficient": cc * ev.problem.shape.num_prompts, "residual": rr})]
    return [Finding("kl-biased", "the KL part is biased: with zero rewards E[g] is not -beta grad KL(pi || pi_ref) "
                    "(a KL estimate put in the reward other than k1?).",
                    {"scale": c, "residual": res})]


def _extra_term(pr: _Prober) -> list[Finding]:
    theta = pr.theta(3, 2, 1)
    space = response_space(3, 2)
    ev = pr.run("extra term", theta=theta, rewards=np.zeros((1, space.num_responses)), k=pr.group(2))
    if ev is None:
        return []
    size = float(np.abs(ev.mean).max())
    if size <= PROPORTIONAL_RTOL * max(1.0, ev.largest):
        return []
    return [Finding("extra-term", "with zero rewards and no KL, E[g] is not zero: the loss has a term that does "
                    "not come from the rewards (an entropy bonus, a hard-coded KL?).", {"max_abs_mean": size})]


def _weight_findings(pr: _Prober) -> list[Finding]:
    """Binary rewards, V = 3, T = 3: EOS, position, length, truncation from the token weights."""
    space = response_space(3, 3)
    theta = pr.theta(3, 3, 1)
    rewards = _binary(space.lengths, space.truncated)
    ev = pr.run("token weights", theta=theta, rewards=rewards, k=pr.group(2))
    route = pr.per_row_loss()
    if ev is not None and route is not None:  # E[g] must not change when re-expressed
        label = "token weights, the loss re-expressed per row, logits through log_probs"
        routed = pr.run(label, theta=theta, rewards=rewards, k=pr.group(2), protocol="sequence-loss",
                        fn=logits_via_log_probs(route))
        if routed is None or not _close(routed.mean, ev.mean, FAITHFUL_RTOL):
            if routed is not None:
                change = float(np.abs(routed.mean - ev.mean).max() / max(float(np.abs(ev.mean).max()), 1e-300))
                pr.skipped.append(f"{label}: E[g] changed ({change:.2g} relative): eos, position, length and "
                                  "truncation were not looked for")
            return []
        ev = routed
    if ev is None or ev.token_weights is None:
        return []
    omega = ev.token_weights[0]
    if not np.any(omega) and np.any(ev.mean) and pr.protocol == "sequence-loss":
        routed = pr.run("token weights, logits through log_probs", theta=theta, rewards=rewards, k=pr.group(2),
                        fn=logits_via_log_probs(pr.loss_fn))
        routed_weights = None if routed is None else routed.token_weights
        if routed is None or routed_weights is None or not _close(routed.mean, ev.mean, FAITHFUL_RTOL):
            return [_logits_finding()]
        omega = routed_weights[0]  # the same E[g], now with its token weights
    pi = response_probs(space, theta)[0]
    r = rewards[0]
    lengths = space.lengths
    trunc = space.truncated
    size = float(np.nanmax(np.abs(omega)))
    tol = PROPORTIONAL_RTOL * max(size, 1e-300)
    out: list[Finding] = []
    eos_rows = [i for i in range(space.num_responses) if not trunc[i]]
    eos_w = np.array([omega[i, lengths[i] - 1] for i in eos_rows])
    body = [omega[i, t] for i in range(space.num_responses) for t in range(lengths[i] - (0 if trunc[i] else 1))]
    eos_dropped = bool(np.abs(eos_w).max() <= tol and np.abs(body).max() > tol)
    if eos_dropped:
        out.append(Finding("eos", "the EOS token gets no weight (E[w] = 0 at every EOS position) although "
                           "grad J is not zero there: a mask such as tokens != pad_id drops it.",
                           {"max_abs_eos_weight": float(np.abs(eos_w).max()), "max_abs_weight": size}))
    varying = [float(np.ptp(omega[i, : lengths[i]])) for i in range(space.num_responses) if trunc[i]]
    if varying and max(varying) > tol:
        first = [float(omega[i, 0]) for i in range(space.num_responses) if trunc[i]]
        last = [float(omega[i, lengths[i] - 1]) for i in range(space.num_responses) if trunc[i]]
        out.append(Finding("position", "a token's weight depends on its position within the response "
                           "(discounted or forward-summed returns?), and so also on the response's length.",
                           {"first_token_weight": first[0], "last_token_weight": last[0],
                            "largest_spread": max(varying)}))
    # per-response weight, EOS position left out when it is dropped (that cause is named already)
    cut = np.where(trunc | (not eos_dropped), 0, 1)
    wbar = np.array([
        float(np.mean(omega[i, : lengths[i] - cut[i]])) if lengths[i] > cut[i] else 0.0
        for i in range(space.num_responses)
    ])
    visible = (pi > VISIBLE_PROBABILITY) & (lengths > cut)

    def fit(rows: FloatArray) -> tuple[float, float, float]:
        rows_b = rows & visible
        if rows_b.sum() == 0:
            return math.nan, math.nan, 0.0
        design = np.stack([r[rows_b], np.ones(int(rows_b.sum()))], axis=1)
        coef, *_ = np.linalg.lstsq(design, wbar[rows_b], rcond=None)
        resid = float(np.abs(wbar[rows_b] - design @ coef).max())
        return float(coef[0]), float(coef[1]), resid

    _, _, global_res = fit(np.ones(space.num_responses, dtype=bool))
    positional = any(f.name == "position" for f in out)
    if global_res > tol and not positional:
        by_len = {int(L): fit(lengths == L) for L in sorted(set(lengths.tolist())) if int(L) > 1}
        if all(res <= tol for _, _, res in by_len.values()):
            cs = {L: c for L, (c, _, _) in by_len.items()}
            ls = sorted(cs)
            ev_d = {f"c_len_{L}": cs[L] for L in ls} | {f"b_len_{L}": by_len[L][1] for L in ls}
            inv = [cs[L] * L for L in ls]
            if _close(np.array(inv), np.full(len(inv), inv[0]), PROPORTIONAL_RTOL * 10):
                out.append(Finding("length", "a token's expected weight is proportional to 1/|y|: a per-response "
                                   "token mean (seq-mean-token-mean) favours short responses.", ev_d))
            else:
                trend = "decreases" if all(abs(cs[a]) > abs(cs[b]) for a, b in itertools.pairwise(ls)) else "changes"
                out.append(Finding("length", f"a token's expected weight {trend} with the response's length "
                                   "(a mean over the batch's tokens, or a length-normalised ratio?).", ev_d))
        elif not eos_dropped:
            full = lengths == space.max_len
            c_t, b_t, res_t = fit(full & trunc)
            c_e, b_e, res_e = fit(full & ~trunc)
            differ = not _close(np.array([c_t, b_t]), np.array([c_e, b_e]), TRUNCATION_RTOL)
            if res_t <= tol and res_e <= tol and differ:
                out.append(Finding("truncation", "responses cut at max_len without EOS are weighted unlike those "
                                   "of the same length that end with EOS.",
                                   {"c_truncated": c_t, "c_eos_ended": c_e}))
            else:
                out.append(Finding("response-dependent", "a response's expected weight depends on more than its "
                                   "reward and length: a baseline or weight computed from the response's own "
                                   "tokens (E[b(y) grad log pi(y)] != 0)?", {"fit_residual": global_res}))
    return out


def _statistic_findings(pr: _Prober) -> tuple[list[Finding], bool, bool]:
    r"""Graded rewards at 0, R, 2R and R + c (T = 2, k = 3).

    Returns the findings, whether :math:`E[g] = c\,\nabla J` with ``c > 0``, and whether
    adding a constant to the rewards changes :math:`E[g]` (named only when no token-weight
    cause explains it).  Linearity is judged on the affine part, ``E(2R) - E(0) = 2(E(R) -
    E(0))``, so that a term independent of the rewards (``extra-term``) does not count.
    """
    space = response_space(3, 2)
    theta = pr.theta(3, 2, 1)
    rewards = _graded(space.num_responses, pr.rng)
    base = pr.run("rewards", theta=theta, rewards=rewards, k=pr.group(3))
    zero = pr.run("rewards = 0", theta=theta, rewards=0 * rewards, k=pr.group(3))
    double = pr.run("rewards x2", theta=theta, rewards=2 * rewards, k=pr.group(3))
    shift = pr.run("rewards + c", theta=theta, rewards=rewards + SHIFT, k=pr.group(3))
    if base is None or double is None or shift is None or zero is None:
        return [], False, False
    out: list[Finding] = []
    size = float(np.abs(base.gradient).max())
    c, res = proportion(base.mean, base.gradient)
    pr.residual = res
    if float(np.abs(base.mean).max()) <= PROPORTIONAL_RTOL * size:
        out.append(Finding("no-gradient", "E[g] = 0 although grad J is not: the loss has no expected gradient "
                           "(a ratio of log-probs to themselves, an 'old' term not detached?).",
                           {"max_abs_grad_J": size}))
        return out, False, False
    one = base.mean - zero.mean
    two = double.mean - zero.mean
    if not _close(two, 2 * one, PROPORTIONAL_RTOL, floor=size):
        ratio = float(np.abs(two).max() / max(float(np.abs(one).max()), 1e-300))
        if _close(two, one, INVARIANCE_RTOL):
            out.append(Finding("reward-normalisation", "E[g] does not change when every reward is doubled: the "
                               "advantage is divided by a statistic of the rewards (the group's std?).",
                               {"size_ratio_at_2R": ratio}))
        else:
            out.append(Finding("reward-nonlinear", "E[g] is not linear in the rewards (doubling them does not "
                               "double it): the rewards enter through a nonlinear function.",
                               {"size_ratio_at_2R": ratio}))
    shifted = not _close(shift.mean, base.mean, PROPORTIONAL_RTOL, floor=size)
    return out, res <= PROPORTIONAL_RTOL and c > 0, shifted


def _logits_finding() -> Finding:
    return Finding("reads-logits", "the loss's gradient does not come through batch.log_probs but through "
                   "batch.logits, and E[g] is not proportional to grad J: logits[:, t] already predicts "
                   "tokens[:, t] (no shift needed).")


def _shift_finding(pr: _Prober) -> Finding:
    return Finding("reward-shift", f"adding {SHIFT:g} to every reward changes E[g] (it must not: grad J does "
                   "not change), while doubling them is harmless: the loss uses a statistic of the rewards that "
                   "a shift changes (a count of nonzero rewards?).", {"shift": SHIFT})


def _padding_findings(pr: _Prober) -> list[Finding]:
    space = response_space(2, 3)
    theta = pr.theta(2, 3, 1)
    rewards = _graded(space.num_responses, pr.rng)
    base = pr.run("padding", theta=theta, rewards=rewards, k=pr.group(2))
    padded = pr.padded(pr.loss_fn)
    other = None if padded is None else pr.run("padding tokens", theta=theta, rewards=rewards, k=pr.group(2), fn=padded)
    if base is None:
        return []
    size = float(np.abs(base.mean).max())
    after = float(np.abs(base.mean[:, -1]).max())
    changed = 0.0 if other is None else float(np.abs(other.mean - base.mean).max())
    if after > PROPORTIONAL_RTOL * size or changed > PROPORTIONAL_RTOL * size:
        return [Finding("padding", "the padded positions (after EOS) matter: their logits get gradient, or E[g] "
                        "changes when the padding token is not the EOS id (mask built from tokens, or none).",
                        {"after_the_end_gradient": after, "change_with_other_pad_token": changed})]
    return []


_FACTORS: tuple[tuple[str, Callable[[int, int, int], float], str], ...] = (
    ("scale-max-len", lambda k, t, p: 1.0 / t, "the loss divides by max_len (a constant, not the lengths)"),
    ("scale-prompts", lambda k, t, p: float(p), "the loss sums over the prompts instead of averaging"),
    ("scale-group", lambda k, t, p: float(k), "the loss sums over the group's responses instead of averaging"),
    ("self-baseline", lambda k, t, p: (k - 1) / k,
     "the baseline includes the response's own reward (group mean): c = (k-1)/k"),
    ("batch-self-baseline", lambda k, t, p: (p * k - 1) / (p * k),
     "the baseline is the mean over the whole batch, own reward included: c = (Pk-1)/(Pk)"),
)


def _scale_findings(pr: _Prober) -> list[Finding]:
    """Reward part at (k, T, P) in {(2,2,1), (3,2,1), (2,3,1), (2,2,2)}: factor the constant c."""
    k1 = pr.group(2)  # (2, 3) unless the trainer's M D parts need larger groups
    keys = ((k1, 2, 1), (pr.group(k1 + 1), 2, 1), (k1, 3, 1), (pr.group(2, 2), 2, 2))
    cs: list[float] = []
    for k, t, p in keys:
        space = response_space(2, t)
        theta = pr.theta(2, t, p)
        ev = pr.run(f"scale k={k} T={t} P={p}", theta=theta, rewards=_graded(space.num_responses, pr.rng, p), k=k)
        if ev is None:
            return []
        c, res = proportion(ev.mean, ev.gradient)
        if res > PROPORTIONAL_RTOL:
            if p > 1:
                return [Finding("pooling", "proportional to grad J with one prompt but not with two: pooling the "
                                "prompts' responses (a batch-wide statistic or token count) biases it.",
                                {"scale_P1": cs[0], "residual_P2": res})]
            return []
        cs.append(c)
    measured = np.array(cs)
    for n in range(len(_FACTORS) + 1):
        for combo in itertools.combinations(_FACTORS, n):
            if {"self-baseline", "batch-self-baseline"} <= {name for name, _, _ in combo}:
                continue
            model = np.array([math.prod(f(k, t, p) for _, f, _ in combo) for k, t, p in keys])
            c0 = float(measured[0] / model[0])
            if _close(measured, c0 * model, SCALE_MATCH_RTOL):
                evidence = {f"c_k{k}_T{t}_P{p}": x for (k, t, p), x in zip(keys, cs, strict=True)}
                found = [Finding(name, sentence + ".", evidence) for name, _, sentence in combo]
                if abs(c0 - 1) > SCALE_MATCH_RTOL:
                    found.append(Finding("scale-constant", f"E[g] = {c0:.6g} x (the factors above) x grad J: "
                                         "a constant factor in the loss.", {"c0": c0}))
                return found
    return [Finding("scale-unexplained", "E[g] is proportional to grad J, but the constant changes with (k, T, P) in "
                    "a way none of the usual factors explain.",
                    {f"c_k{k}_T{t}_P{p}": x for (k, t, p), x in zip(keys, cs, strict=True)})]


OFF_POLICY_SMALL = 0.05
"""Logit perturbation of the "per-token" probe: ratios stay within about 1 +- 0.1, inside any clip range."""

OFF_POLICY_LARGE = 2.5
"""How much less likely the behaviour policy makes EOS at the root in the "clipped" probe (ratio e^2.5)."""


def _off_policy_findings(pr: _Prober) -> list[Finding]:
    r"""Unbiased on-policy but not off-policy; then which ratio the loss applies.

    A loss with no ratio at all matches :math:`\sum_y\pi_{\mathrm{old}}(y)(R(y) - b)
    \nabla\log\pi(y)`.  Otherwise two more probes tell its ratio apart from
    :math:`\pi(y)/\pi_{\mathrm{old}}(y)`: the behaviour policy differs only slightly
    (every ratio within about 1 +- 0.1, inside any clip range; a per-token ratio is still
    biased there), and, at ``T = 1`` where per-token and sequence ratios are the same, it
    makes EOS far less likely (ratio about ``e^2.5``: only a clip or a cap biases it).
    """
    space = response_space(3, 2)
    theta = pr.theta(3, 2, 1)
    old = theta + pr.rng.normal(0.0, BEHAVIOUR_LOGIT_SCALE, size=theta.shape)
    rewards = _graded(space.num_responses, pr.rng)
    on = pr.run("on-policy", theta=theta, rewards=rewards, k=pr.group(2))
    off = pr.run("off-policy", theta=theta, rewards=rewards, k=pr.group(2), old_theta=old)
    if on is None or off is None:
        return []
    c_on, r_on = proportion(on.mean, on.gradient)
    c_off, r_off = proportion(off.mean, off.gradient)
    off_biased = r_off > PROPORTIONAL_RTOL or abs(c_off - c_on) > SCALE_MATCH_RTOL * abs(c_on)
    if not (r_on <= PROPORTIONAL_RTOL and off_biased):
        return []

    # no ratio at all: E[g] = sum_y pi_old(y) (R(y) - b) grad log pi(y), b = 0 or E_old[R]
    p_old = response_probs(space, old)[0]
    score = sequence_score(space, theta)[0]
    for b in (0.0, float(p_old @ rewards[0])):
        cand = np.einsum("r,rnv->nv", p_old * (rewards[0] - b), score)[None]
        c_none, r_none = proportion(off.mean, cand)
        if r_none <= PROPORTIONAL_RTOL and abs(c_none - c_on) <= SCALE_MATCH_RTOL * abs(c_on):
            return [Finding("off-policy-no-ratio", "the loss applies no importance ratio: off-policy it follows "
                            "the gradient of E_pi_old-weighted rewards, sum_y pi_old(y) A(y) grad log pi(y).",
                            {"scale_on_policy": c_on, "baseline": b})]

    def biased(label: str, behaviour: FloatArray, th: FloatArray, rw: FloatArray) -> tuple[bool, float]:
        ev = pr.run(label, theta=th, rewards=rw, k=pr.group(2), old_theta=behaviour)
        if ev is None:
            return False, math.nan
        c, res = proportion(ev.mean, ev.gradient)
        return res > PROPORTIONAL_RTOL or abs(c - c_on) > SCALE_MATCH_RTOL * abs(c_on), res

    near = theta + pr.rng.normal(0.0, OFF_POLICY_SMALL, size=theta.shape)
    per_token, res_token = biased("off-policy, small ratios", near, theta, rewards)
    theta1 = pr.theta(3, 1, 1)
    far = theta1.copy()
    far[:, 0, 0] -= OFF_POLICY_LARGE
    clipped, res_clip = biased("off-policy at T = 1, a large ratio", far, theta1,
                               _graded(response_space(3, 1).num_responses, pr.rng))
    evidence = {"scale_on_policy": c_on, "scale_off_policy": c_off, "residual_off_policy": r_off}
    out = []
    if per_token:
        out.append(Finding("off-policy-per-token", "the loss applies a per-token ratio pi(y_t|.)/pi_old(y_t|.) "
                           "to each token, not the response's ratio pi(y)/pi_old(y): biased as soon as pi_old "
                           "differs from pi at all.", evidence | {"residual_small_ratios": res_token}))
    if clipped:
        out.append(Finding("off-policy-clipped", "the ratio is clipped or capped: biased where pi/pi_old is far from "
                           "1 (at T = 1, where per-token and sequence ratios agree).",
                           evidence | {"residual_large_ratio": res_clip}))
    if not out:
        out.append(Finding("off-policy", "unbiased on-policy (responses drawn from pi) but biased when they come "
                           "from the behaviour policy pi_old: the loss does not apply the full ratio pi(y)/pi_old(y).",
                           evidence))
    return out


# --------------------------------------------------------------------------- the API


def diagnose(
    loss_fn: Callable[..., Any],
    report_or_kwargs: SequenceReport | Mapping[str, Any] | None = None,
    *,
    protocol: str = "sequence-loss",
    batched: bool = False,
) -> Diagnosis:
    """Every cause of a sequence loss's bias (or constant), from targeted exact probes.

    ``report_or_kwargs``: the loss's :class:`SequenceReport` or the options it was checked
    with (``kl_coef``, ``off_policy``, ``num_prompts`` are read; the KL and off-policy
    probes run only when the check used them).  ``protocol="token-weights"`` (and
    ``batched``) diagnoses a NumPy weight function of
    :func:`properties.sequence.checker.check_token_weights` instead (without the
    padded-token probe: its padding weights show on the after-the-end node).
    ``protocol="trainer"`` diagnoses ``fn(model, inputs)`` of
    :func:`properties.check_trainer_loss`, with the check's ``micro_batches``, ``dp_size``,
    ``temperature`` and ``advantages`` (:mod:`properties.trainer.diagnosis`; ``against`` must
    be ``"objective"``; registered in :data:`PROBERS` when :mod:`properties.trainer` is imported,
    as ``import properties`` does).  A probe the loss cannot run is listed in ``skipped``.
    Raises :class:`impl.errors.InvalidArgument` for bad arguments.
    """
    if not callable(loss_fn):
        raise InvalidArgument(f"Expected a callable but got {describe('loss_fn', loss_fn)}")
    if protocol not in PROBERS or not isinstance(batched, bool):
        raise InvalidArgument(
            f"Expected protocol in {sorted(PROBERS)} and batched=True or False but got "
            f"{describe('protocol', protocol)}, {describe('batched', batched)}"
        )
    opts = _options(report_or_kwargs)
    start = time.perf_counter()
    pr = PROBERS[protocol](loss_fn, protocol, batched, report_or_kwargs)
    findings: list[Finding] = []
    if opts.kl_coef > 0:
        findings += _kl_findings(pr, opts.kl_coef)
    else:
        findings += _extra_term(pr)
    weights = _weight_findings(pr)
    findings += weights
    stats, proportional, shifted = _statistic_findings(pr)
    findings += stats
    padding = _padding_findings(pr)
    findings += padding
    if shifted and not (weights or padding or stats):
        findings.append(_shift_finding(pr))
    if proportional:
        findings += _scale_findings(pr)
    if opts.off_policy:
        findings += _off_policy_findings(pr)
    low = pr.low_precision()
    only_scale = not [f for f in findings if not f.name.startswith(("scale-", "self-", "batch-self-"))]
    if low and only_scale and pr.residual > FLOAT64_RESIDUAL:
        findings.append(Finding("low-precision", "no cause above round-off, but the loss computes in "
                                f"{', '.join(low)}: a check at float64 precision calls that round-off a bias "
                                "(compute in float64, or judge at the loss's precision).",
                                {"relative_residual": pr.residual}))
    return Diagnosis(tuple(findings), tuple(pr.skipped), time.perf_counter() - start, tuple(pr.probes))


PROBERS: dict[str, type[_Prober]] = {"sequence-loss": _Prober, "token-weights": _Prober}
"""The prober of each protocol (a higher floor adds its own: ``"trainer"``)."""

__all__ = ["PROBERS", "Diagnosis", "Finding", "diagnose", "per_node_kl_gradients", "proportion"]
