r"""Problems, exact evaluation and tolerances for :mod:`properties.onestep.checker` (private).

:func:`evaluate` computes, for one problem ``(theta, s, k)``, the exact
:math:`E[g] = \sum_{x\in D^k} \big(\prod_j p_{x_j}\big)\, g(\theta, x, s(x))` with one
batched call, the true gradient :math:`G = \nabla J`, and a per-coordinate round-off
tolerance derived from the output dtype and the size of the inputs.

The problems: :func:`battery` (hand-picked hard cases, their copies with the logits
shifted by :data:`LOGIT_SHIFTS`, and a few large-``n`` problems), then
:func:`generated_problems` (Hypothesis).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import strategies as st

from impl.exact import group_probs
from impl.types import FloatArray
from properties.judging.verdict import REFERENCE_MIN_SIGNAL
from properties.onestep.guard import EPS64, GuardedEstimator, all_groups, frozen
from properties.strategies import EXTREME_LOGIT, PolicyProblem

ROUNDOFF_SAFETY = 32.0
r"""Safety factor on the round-off bound.

The bound per coordinate :math:`i` is

.. math::

    \tau_i = F\,k\,\Big[\big(\epsilon_{64}\,L + \epsilon_{out}\,(1 + \Theta)\big) A_i
    + \epsilon_{out}\,S\,(2p_i + 1)\Big]

with :math:`F` this factor, :math:`A_i = E|g_i|` (the size of the summed terms),
:math:`S = \max(\max_x |s(x)|, \max_{x\in D^k} \|g(x)\|_\infty, |c|\max_x|s(x)|)` with
:math:`c` the best multiple of :math:`G` on the problem (the size of the intermediate
rewards and baselines, which may cancel inside :math:`g`: at
:math:`p_i \approx 1`, :math:`(e_x - p)_i = 1 - p_i` is exact only to :math:`\epsilon`
absolutely, and so is a :math:`p_i` computed as one minus the others: hence the
absolute term :math:`S\,\epsilon_{out}` on every coordinate),
:math:`L = 1 + k\max_x|\log p_x|` (a bound on the relative error of group
probabilities :math:`\prod_j p_{x_j}`, whether an estimator forms them as products or
as :math:`\exp\sum\log p`), :math:`\Theta = \max_i|\theta_i|` (logits stored in the
output precision are off by :math:`\epsilon_{out}\Theta`, and so is every
:math:`\log p`: this matters only for the shifted problems, where :math:`\Theta` reaches
1000), :math:`\epsilon_{64}` float64's epsilon and :math:`\epsilon_{out}` the epsilon of
the estimator's output dtype.  A correct float64 estimator sits well inside it (no false
alarm on the catalogue's correct entries over 20 seeds, ``benchmarks/bench_checker.py``); a
bias of one part in a million of :math:`|G|` sits orders of magnitude outside it.
"""

MAX_GROUPS_PER_PROBLEM = 4096
"""Largest ``n**k`` enumerated for one problem (``n`` is capped per ``k`` to stay under it)."""

MAX_N = 5
"""Largest answer set generated (``n <= 5`` keeps ``n**k`` small for ``k <= 4``)."""

LOGIT_SHIFTS = (100.0, -100.0, 1000.0, -1000.0)
r"""Constant shifts added to the logits of the shifted battery problems (:data:`SHIFTED_N`).

Softmax is shift-invariant, so :math:`\nabla J` does not move; an estimator computing
:math:`e^\theta / \sum e^\theta` without subtracting the maximum overflows (float32 past
:math:`\theta \approx 88`, float64 past 709) or underflows to 0/0, and returns NaN."""

SHIFTED_N = (2, 3)
"""The first battery problem of each of these ``n`` with distinct logits gets shifted
copies (enough to make any overflow or clamp show; more would only repeat it at
``n**k`` calls each)."""

LARGE_N = (6, 9, 16)
"""Answer-set sizes of the large-``n`` battery problems (at ``k <= 2``, or the smallest ``k``)."""

MAX_SCORE = 1e3
"""Largest ``|score|`` Hypothesis generates (the battery goes to 1e6)."""


class Evaluation:
    """The exact expectation of the estimator on one problem; its tolerance on demand.

    ``floor`` is a lower bound on every coordinate of ``tolerance`` (its constant
    part), so that ``max|E - c G| <= floor`` settles a check without computing the rest.
    ``key`` is ``k`` (what one scale constant is measured for); ``order`` is the
    problem's position in the battery (simplest first; generated problems come after) and
    ``source`` where it came from: the checker sets both (``_Run._evaluate``) before
    anything reads them, so they have no default (reading them unset raises).
    """

    __slots__ = (
        "_g",
        "_tolerance",
        "atol",
        "eps_out",
        "gradient",
        "k",
        "logits",
        "mean",
        "order",
        "p",
        "rtol",
        "scores",
        "source",
        "weights",
    )

    order: int
    source: str

    def __init__(
        self,
        logits: FloatArray,
        scores: FloatArray,
        k: int,
        mean: FloatArray,
        gradient: FloatArray,
        p: FloatArray,
        weights: FloatArray,
        g: FloatArray,
        eps_out: float,
        rtol: float | None,
        atol: float,
    ) -> None:
        self.logits, self.scores, self.k = logits, scores, k
        self.mean, self.gradient, self.p, self.weights = mean, gradient, p, weights
        self._g, self.eps_out, self.rtol, self.atol = g, eps_out, rtol, atol
        self._tolerance: FloatArray | None = None

    @property
    def key(self) -> int:
        """The group size ``k``: one scale constant is measured per ``k``."""
        return self.k

    @property
    def g(self) -> FloatArray:
        """The estimates for every group, ``(n**k, n)``."""
        return self._g

    @property
    def factor_k(self) -> int:
        """The number of samples the round-off bound scales with (``k`` here)."""
        return self.k

    @property
    def floor(self) -> float:
        """The constant part of the tolerance, using ``max|s|`` only."""
        scores = self.scores.ravel()  # (n,), or (P, n) with several prompts
        size = max(float(_max(scores)), -float(_min(scores)))
        if self.rtol is not None:
            return self.rtol * size + self.atol
        return (
            ROUNDOFF_SAFETY * self.factor_k * self.eps_out * size
            + self.atol
            + ROUNDOFF_SAFETY * _tiny(self.eps_out)
        )

    @property
    def magnitude(self) -> FloatArray:
        """:math:`E|g|` per coordinate."""
        out: FloatArray = self.weights @ np.abs(self._g)
        return out

    @property
    def tolerance(self) -> FloatArray:
        """The per-coordinate round-off tolerance :math:`\tau` (computed once, on demand)."""
        if self._tolerance is None:
            self._tolerance = self.tolerance_at(self.eps_out, rtol=self.rtol)
        return self._tolerance

    def tolerance_at(self, eps_out: float, *, rtol: float | None = None) -> FloatArray:
        r"""The tolerance as if the output had round-off unit ``eps_out`` (or with ``rtol``).

        The size :math:`S` of the intermediate values also covers :math:`|c|\max|s|`, with
        :math:`c` the best multiple of :math:`G` on this problem: an estimator scaled by
        :math:`c` (say rewards times 1000) carries rewards of that size before they cancel,
        even where no single group's output shows it.
        """
        absg = np.abs(self._g)
        largest = float(_max(absg, axis=None)) if absg.size else 0.0
        gg = float(self.gradient @ self.gradient)
        if gg > 0.0 and math.isfinite(gg):
            c = abs(float(self.mean @ self.gradient) / gg)
            if c > 1.0 and math.isfinite(c):
                largest = max(largest, c * float(_max(np.abs(self.scores))))
        return tolerance(
            self.p,
            self.scores,
            self.k,
            self.weights @ absg,
            largest,
            eps_out,
            rtol=rtol,
            atol=self.atol,
            max_logit=float(_max(np.abs(self.logits))),
        )


def tolerance(
    p: FloatArray,
    scores: FloatArray,
    k: int,
    magnitude: FloatArray,
    largest: float,
    eps_out: float,
    *,
    rtol: float | None,
    atol: float,
    max_logit: float = 0.0,
) -> FloatArray:
    """The per-coordinate tolerance (see :data:`ROUNDOFF_SAFETY`), or the user's override.

    ``p`` is the policy, ``magnitude`` is :math:`E|g|`, ``largest`` the largest
    :math:`|g_i|` over all groups and ``max_logit`` :math:`\\max_i|\\theta_i|`.

    >>> t = tolerance(np.array([0.5, 0.5]), np.array([0.0, 1.0]), 2, np.array([0.25, 0.25]),
    ...               0.5, EPS64, rtol=None, atol=0.0)
    >>> bool(np.all(t < 1e-12)), bool(np.all(t > 1e-15))
    (True, True)
    """
    # Written as a1 * A + b2 * p + b0 with scalar coefficients: this runs once per
    # problem on the hot path, so it avoids every temporary it can.
    size = max(float(_max(scores)), -float(_min(scores)), largest)
    if rtol is not None:
        a1, b = rtol, rtol * size
        b0 = b + atol
    else:
        spread = 1.0 - k * math.log(max(float(_min(p)), _SMALLEST_P))
        factor = ROUNDOFF_SAFETY * k
        a1 = factor * (EPS64 * spread + eps_out * (1.0 + max_logit))
        b = factor * eps_out * size
        # below the output dtype's smallest normal number relative round-off no longer
        # holds (a float32 estimator returns 0 for a score of 1e-100)
        b0 = b + atol + ROUNDOFF_SAFETY * _tiny(eps_out)
    out: FloatArray = magnitude * a1
    out += p * (2.0 * b)
    out += b0
    return out


_sum, _max, _min = np.add.reduce, np.maximum.reduce, np.minimum.reduce

_SMALLEST_P = float(np.finfo(np.float64).tiny)

_TINY = {
    float(np.finfo(t).eps): float(np.finfo(t).tiny) for t in (np.float16, np.float32, np.float64)
}
_TINY[2.0**-7] = float(np.finfo(np.float32).tiny)  # bfloat16 keeps float32's exponent range


def _tiny(eps_out: float) -> float:
    """The smallest normal number of the output dtype (by its epsilon; float16's if coarser)."""
    tiny = _TINY.get(eps_out)
    if tiny is not None:
        return tiny
    return _TINY[float(np.finfo(np.float16).eps)] if eps_out > EPS64 else _TINY[EPS64]


def evaluate(
    guard: GuardedEstimator,
    theta: FloatArray,
    scores: FloatArray,
    k: int,
    *,
    rtol: float | None,
    atol: float,
    check_determinism: bool = False,
    check_rows: bool = False,
) -> Evaluation:
    r"""Exact ``E[g]`` over all ``n**k`` groups with one batched call through ``guard``.

    ``theta`` and ``scores`` must be finite float64 vectors of one length (the checker
    builds them); this is the hot path, so it does not re-validate them.
    ``check_determinism`` repeats the call; ``check_rows`` (batched only) also calls the
    estimator on shuffled rows and sub-batches.

    >>> from impl.estimators import reinforce
    >>> ev = evaluate(GuardedEstimator(reinforce, batched=True), np.zeros(2),
    ...               np.array([0.0, 1.0]), 2, rtol=None, atol=0.0)
    >>> ev.mean.tolist(), ev.gradient.tolist()
    ([-0.25, 0.25], [-0.25, 0.25])
    """
    n = theta.size
    x = all_groups(n, k)
    with np.errstate(all="ignore"):
        top = int(theta.argmax())
        e = np.exp(theta - theta[top])
        p = e / _sum(e)
        # group probabilities prod_j p_{x_j}: relative error <= k eps (|log p| <= 64 here).
        # The groups are in lexicographic order, so the weights are the k-fold outer
        # product of p, raveled: no (n**k, k) temporary.
        weights = group_probs(p, k)
        rewards = frozen(scores[x])
    logits = frozen(theta)
    g, eps = guard(logits, x, rewards)
    with np.errstate(all="ignore"):
        mean = weights @ g
        finite = math.isfinite(float(_sum(mean)))
    if not finite:  # NaN and inf in any group reach the sum
        raise guard.non_finite(g, logits, x, rewards)
    if check_determinism:
        guard.check_deterministic(logits, x, rewards, g, eps)
    if check_rows:
        guard.check_rows_independent(logits, x, rewards, g, eps, seed=n * 64 + k)
    with np.errstate(all="ignore"):
        # grad J = p (s - J), with s shifted by the score of the most probable answer so
        # that s_i - J keeps its relative precision when that answer holds almost all the mass
        centred = scores - scores[top]
        gradient = p * (centred - p @ centred)
    return Evaluation(theta, scores, k, mean, gradient, p, weights, g, eps, rtol, atol)


def max_n_for(k: int) -> int:
    """The largest ``n <= MAX_N`` with ``n**k <= MAX_GROUPS_PER_PROBLEM`` (at least 2).

    >>> [max_n_for(k) for k in (1, 4, 6, 12)]
    [5, 5, 4, 2]
    """
    n = MAX_N
    while n > 2 and n**k > MAX_GROUPS_PER_PROBLEM:
        n -= 1
    return n


def unchecked_group_n(ks: tuple[int, ...]) -> tuple[str, ...]:
    """Where :func:`max_n_for` is below ``MAX_N``: the ``n`` left out at each ``k``, with the reason.

    A check that asked for ``k`` but could only evaluate small answer sets there is partial.

    >>> unchecked_group_n((2, 3, 4))
    ()
    >>> unchecked_group_n((2, 10))
    ('n=3..5 at k=10 (n**k = 59049 groups at n=3, over the budget of 4096 groups per problem)',)
    """
    out = []
    for k in ks:
        top = max_n_for(k)
        if top >= MAX_N:
            continue
        first = top + 1
        ns = f"n={first}" if first == MAX_N else f"n={first}..{MAX_N}"
        out.append(
            f"{ns} at k={k} (n**k = {first**k} groups at n={first}, over the budget of "
            f"{MAX_GROUPS_PER_PROBLEM} groups per problem)"
        )
    return tuple(out)


_X = EXTREME_LOGIT  # logit gap giving p ~ 1e-12

BATTERY: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...] = (
    # (logits, scores), simplest first: the first failing one is the reported counterexample.
    ((0.0, 0.0), (0.0, 1.0)),  # the scale reference
    ((0.0, 0.0), (1.0, 3.0)),  # J != 0 (missing -p)
    ((1.0, 0.0), (0.0, 1.0)),  # theta != 0 (grad p, eps in log, temperature)
    ((0.0, 0.0), (2.0, 2.0)),  # grad J = 0
    ((1.0, 0.0), (2.0, 2.0)),  # grad J = 0 at theta != 0 (entropy bonus)
    ((0.0, 0.0), (-1.0, -3.0)),  # negative scores
    ((1.0, 0.0), (-1.0, 2.0)),  # a negative and a large score (clipping)
    ((_X, 0.0), (0.0, 1.0)),  # p ~ 1e-12 (floors and clamps)
    ((-_X, 0.0), (1.0, 3.0)),
    ((0.0, 0.0, 0.0), (0.0, 1.0, 2.0)),  # n = 3
    ((0.5, -1.0, 0.0), (1.0, 0.0, 2.0)),
    ((1.0, -1.0, 0.5), (1.0, 1.0, 1.0)),  # grad J = 0, n = 3
    ((0.0, 1.0, 2.0), (0.0, 1.0, 0.0)),  # binary scores
    ((0.3, -0.7, 1.2), (4.0, -3.0, 11.0)),  # an affine change of the previous scales
    ((0.2, -0.5, 1.0, 0.0), (1.0, 1.0, 0.0, 1.0)),  # tied maxima
    ((0.0, 0.0, 0.0), (1e3, -1e3, 0.5)),  # huge scores
    ((13.0, 0.0, -13.0), (1.0, 0.0, 2.0)),  # p ~ 2e-6 and 5e-12
    ((-_X, 0.0, _X), (2.0, 1.0, 0.0)),  # p ~ 1e-24
    ((0.0, 0.0, 0.0, 0.0), (1.0, 3.0, -2.0, 0.5)),
    ((0.1, -0.2, 0.3, -0.4, 0.5), (0.0, 1.0, 2.0, 3.0, 4.0)),  # n = 5
    ((2.0, -1.0, 0.5, 0.0, -3.0), (-1.0, 0.5, 7.0, 0.0, -3.0)),
    ((0.0, 0.5, -0.5), (1e6, -2e6, 0.25)),  # scores of a million (reward clipping)
    ((0.0, 0.0), (3e-7, -1e-7)),  # scores of a millionth (an epsilon beside the rewards)
    ((60.0, 0.0), (0.0, 1.0)),  # a gap of 60: p ~ 1e-26 (past EXTREME_LOGIT)
    ((-50.0, 0.0, 50.0), (2.0, 1.0, -1.0)),  # p ~ 2e-22 and 4e-44
    ((100.0, 0.0, 30.0), (1.0, 3.0, -2.0)),  # p ~ 1e-30 and 4e-44 (clamped log-probs)
)
"""Hand-picked hard problems, run for every ``k`` before any generated one.

They aim at the places bugs hide: ``theta = 0`` and ``theta != 0``, ``grad J = 0``,
negative, tiny, large (to 1e6) and tied scores, probabilities of ``1e-6`` to ``1e-44``
(logit gaps to 100), ``n = 2`` and ``n >= 3`` with several distinct scores.
"""


def _large_n_problem(n: int) -> tuple[FloatArray, FloatArray]:
    """A fixed problem with ``n`` answers: spread logits (one extreme) and tied scores."""
    i = np.arange(n, dtype=np.float64)
    theta = np.round(np.sin(1.7 * i) * 3.0, 3)
    theta[n // 2] = -20.0
    scores = np.round(np.cos(2.3 * i) * 2.0) + (i % 3 == 0) * 0.5
    return theta, scores


@dataclass(frozen=True)
class BatteryProblem:
    """One battery problem: ``(theta, scores, k)``, where it comes from, and which checks run."""

    theta: FloatArray
    scores: FloatArray
    k: int
    source: str
    check_determinism: bool


def battery(ks: tuple[int, ...]) -> list[BatteryProblem]:
    """The battery for the group sizes ``ks``, in the order it runs.

    First :data:`BATTERY` (problems ``i`` for every ``k`` before problem ``i + 1``), then the
    first problem with distinct logits of each ``n`` in :data:`SHIFTED_N` with every shift of
    :data:`LOGIT_SHIFTS`,
    then the :data:`LARGE_N` problems at ``k <= 2`` (or at the smallest ``k``).  Determinism
    is checked on the first problem of each ``(k, n)``, on the first shifted problem and on
    every large-``n`` problem.

    >>> [(p.source, p.theta.size) for p in battery((2,))][-3:]
    [('large-n', 6), ('large-n', 9), ('large-n', 16)]
    """
    out: list[BatteryProblem] = []
    seen: set[tuple[int, int]] = set()
    per_k = {k: [(t, s) for t, s in BATTERY if len(t) <= max_n_for(k)] for k in ks}
    for i in range(max(len(v) for v in per_k.values())):
        for k in ks:
            if i < len(per_k[k]):
                theta, s = per_k[k][i]
                first = (k, len(theta)) not in seen
                seen.add((k, len(theta)))
                out.append(BatteryProblem(_vec(theta), _vec(s), k, "battery", first))
    for k in ks:
        for n in SHIFTED_N:  # a problem with distinct logits: clamps then show too
            first_of_n = [(t, s) for t, s in per_k[k] if len(t) == n and len(set(t)) == n][:1]
            for theta, s in first_of_n:
                for j, shift in enumerate(LOGIT_SHIFTS):
                    shifted = _vec(theta) + shift
                    out.append(BatteryProblem(shifted, _vec(s), k, "shifted", j == 0))
    small = [k for k in ks if k <= 2] or [min(ks)]
    for k in small:
        for n in LARGE_N:
            if n**k <= MAX_GROUPS_PER_PROBLEM:
                big_theta, big_s = _large_n_problem(n)
                out.append(BatteryProblem(big_theta, big_s, k, "large-n", True))
    return out


def _vec(values: tuple[float, ...]) -> FloatArray:
    return np.array(values, dtype=np.float64)


def battery_problems(k: int) -> list[tuple[FloatArray, FloatArray]]:
    """The :data:`BATTERY` problems as arrays, those with ``n**k`` within budget."""
    return [(_vec(t), _vec(s)) for t, s in BATTERY if len(t) <= max_n_for(k)]


# --------------------------------------------------------------------------- generation
# Strategies are built once per (k, n) and reused: building and validating Hypothesis
# strategies inside every draw cost more than the draws themselves.

_SPECIAL_LOGITS = (0.0, 1.0, -1.0, 2.5, -4.0, EXTREME_LOGIT, -EXTREME_LOGIT, 13.0, -13.0)
_SPECIAL_SCORES = (0.0, 1.0, -1.0, 0.5, 2.0, -3.0, 1e3, -1e3, 1e-3, 7.0)


@cache
def _elements() -> tuple[st.SearchStrategy[float], st.SearchStrategy[float]]:
    logit = st.one_of(
        st.sampled_from(_SPECIAL_LOGITS),
        st.floats(-3.0, 3.0, allow_nan=False, allow_subnormal=False),
        st.floats(-EXTREME_LOGIT, EXTREME_LOGIT, allow_nan=False, allow_subnormal=False),
    )
    score = st.one_of(
        st.integers(-3, 3).map(float),
        st.sampled_from(_SPECIAL_SCORES),
        st.floats(-MAX_SCORE, MAX_SCORE, allow_nan=False, allow_infinity=False, allow_subnormal=False),
    )
    return logit, score


@cache
def _problems_of_size(n: int, k: int) -> st.SearchStrategy[PolicyProblem]:
    logit, score = _elements()
    return st.builds(
        lambda t, s: PolicyProblem(
            logits=np.array(t, dtype=np.float64), scores=np.array(s, dtype=np.float64), k=k
        ),
        st.tuples(*([logit] * n)),
        st.tuples(*([score] * n)),
    )


@cache
def _problems_for_k(k: int) -> st.SearchStrategy[PolicyProblem]:
    return st.one_of(*(_problems_of_size(n, k) for n in range(2, max_n_for(k) + 1)))


def generated_problems(group_sizes: tuple[int, ...]) -> st.SearchStrategy[PolicyProblem]:
    """Problems ``(logits, scores, k)`` with ``k`` in ``group_sizes`` (shrinks to the first ``k``, ``n = 2``).

    Logits: special values (0, +-1, ..., +-27.7), moderate and extreme floats; scores:
    small integers (ties), special values (0, 1e-3, +-1e3, ...) and floats in
    ``[-1e3, 1e3]``.
    """
    ks = tuple(sorted(set(group_sizes)))
    return st.one_of(*(_problems_for_k(k) for k in ks))


_PIN_LOCK = threading.Lock()
_PIN_DEPTH = [0]


def checker_settings(max_examples: int) -> settings:
    """The Hypothesis settings of a checker's seeded search (one-step and sequence alike).

    No database (nothing is written, a verdict is reproducible from the seed alone), no
    deadline, generation and shrinking only, every health check off (the estimator's own
    speed is not the caller's test), quiet; and the default backend whatever the caller's
    profile chose.  Use it inside :func:`pinned_hypothesis`.
    """
    options: dict[str, Any] = {}
    if "backend" in (settings.__init__.__kwdefaults__ or {}):  # Hypothesis >= 6.112
        options["backend"] = "hypothesis"
    return settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=Verbosity.quiet,
        **options,
    )


@contextmanager
def pinned_hypothesis() -> Iterator[None]:
    """Hypothesis draws only from its own built-in constants while inside this block.

    Hypothesis (6.131+) also draws integers and floats from constants it collects in the
    source of every loaded *local* module, and caches them under ``.hypothesis/constants``
    in the working directory: the problems generated for a seed then depend on what the
    caller imported, and the caller's directory gets written.  Inside this block the
    default provider's ``_maybe_draw_constant`` uses the built-in constants only (the
    same random draws otherwise), so neither happens.  Re-entrant and thread-safe (the
    patch stays while any block is open); on a Hypothesis without local constants it
    does nothing.
    """
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - very old Hypothesis
        yield
        return
    base = getattr(providers, "HypothesisProvider", None)
    original = None if base is None else base.__dict__.get("_maybe_draw_constant")
    if base is None or original is None or not hasattr(providers, "GLOBAL_CONSTANTS"):
        yield  # pragma: no cover - a Hypothesis without local constants
        return
    with _PIN_LOCK:
        if _PIN_DEPTH[0] == 0:
            base._maybe_draw_constant = _pinned_draw(providers)
        _PIN_DEPTH[0] += 1
    try:
        yield
    finally:
        with _PIN_LOCK:
            _PIN_DEPTH[0] -= 1
            if _PIN_DEPTH[0] == 0:
                base._maybe_draw_constant = original


@lru_cache(maxsize=1)
def _pinned_draw(providers: Any) -> Any:
    global_constants = providers.GLOBAL_CONSTANTS
    permitted = providers.choice_permitted
    constraints_key = providers.choice_constraints_key
    pools: dict[Any, tuple[Any, ...]] = {}

    def _maybe_draw_constant(self: Any, choice_type: Any, constraints: Any, *, p: float = 0.05) -> Any:
        """Hypothesis' own constant draw, minus the constants collected from local modules."""
        if self._random.random() > p:
            return None
        key = (choice_type, constraints_key(choice_type, constraints))
        pool = pools.get(key)
        if pool is None:
            pool = tuple(
                c for c in global_constants.set_for_type(choice_type) if permitted(c, constraints)
            )
            pools[key] = pool
        if not pool:
            return None
        return self._random.choice(pool)

    return _maybe_draw_constant


__all__ = [
    "BATTERY",
    "LARGE_N",
    "LOGIT_SHIFTS",
    "MAX_GROUPS_PER_PROBLEM",
    "MAX_N",
    "MAX_SCORE",
    "REFERENCE_MIN_SIGNAL",
    "ROUNDOFF_SAFETY",
    "SHIFTED_N",
    "BatteryProblem",
    "Evaluation",
    "battery",
    "battery_problems",
    "checker_settings",
    "evaluate",
    "generated_problems",
    "max_n_for",
    "pinned_hypothesis",
    "tolerance",
    "unchecked_group_n",
]
