r"""Problems for the sequence checker: shapes within budget, the battery, Hypothesis (private).

A *shape* ``(V, T, k, P)`` fixes the response space (:func:`impl.sequence.response_space`)
and the batches: ``P`` prompts of ``k`` responses, all :math:`R^{kP}` of them enumerated
(``route="ordered"``), or one ordering of each multiset of a group's responses with its
number of orderings (``route="multiset"``, :mod:`properties.sequence.multisets`).
A *problem* adds the numbers: the policy ``theta``, the reward table, the reference policy
(always given: a loss may add a KL term of its own) and, off-policy, the behaviour policy.
The scale reference is kept per ``key = (k, T, P, V)``: everything a model fixes (a loss may
scale its gradient by ``1/V``, a mean over the vocabulary, and is then scaled, not biased).

Shapes are kept only when the batches they evaluate (:attr:`Shape.cost`) fit the batch
budget of the evaluation mode (:data:`MAX_BATCHES_VECTORISED` with ``torch.func.vmap`` or a
batched weight function, :data:`MAX_BATCHES_LOOPED` when the user's code runs once per
batch; :data:`MULTISET_BATCHES_VECTORISED` and :data:`MULTISET_BATCHES_LOOPED` when the
multiset route is open), and run smallest first, so that the first counterexample found is
on the smallest batches.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from impl.sequence import (
    BoolArray,
    ResponseSpace,
    batch_probs,
    enumerate_batches,
    node_prefix_log_probs,
    node_values,
    num_responses,
    response_probs,
    response_space,
    sequence_gradient,
)
from impl.types import FloatArray, IntArray
from properties.sequence.multisets import multiset_batches, multiset_cost, reordered_copies
from properties.strategies import EXTREME_LOGIT

MAX_BATCHES_VECTORISED = 8192
"""Largest number of batches :math:`R^{kP}` enumerated per problem when the user's code
evaluates many batches per call (``vmap``, or ``batched=True``).  With ``V = 3`` it admits
``T = 3`` up to ``k = 3`` and ``T = 2`` up to ``k = 4`` for one prompt."""

MAX_BATCHES_LOOPED = 256
"""... when the user's code runs once per batch (the ``vmap`` fallback, ``batched=False``):
``4**4``, so every ``T <= 3`` still appears with ``V = 2`` up to ``k = 4``."""

LOOPED_EXTRA_VOCAB_BATCHES = 256
"""In the looped mode a vocabulary ``V > 2`` is added to a key only up to this many batches
(the looped mode costs about 0.3 ms per batch and problem, against ~1 us vectorised).  It
was 81, which left ``V = 3, T = 3`` out at every ``k`` of the defaults (issue 15: 48 of 49
library losses in the fallback were never evaluated there); at 256 ``V = 3, T = 3, k = 2``
(225 batches) is evaluated, for about 0.5 s more on the default settings."""

MULTISET_BATCHES_VECTORISED = 8192
"""On the multiset route (:mod:`properties.sequence.multisets`), the largest number of batches
evaluated per problem (multisets and their re-ordered copies) with many batches per call:
as many as :data:`MAX_BATCHES_VECTORISED`, which now admits every ``V <= 3, T <= 3`` up to
``k = 4`` for one prompt (``V = 3, T = 3, k = 4``: 6,105 of 50,625 ordered batches), and
``k = 3, P = 2`` up to ``V = 2, T = 3`` (784 of 4,096), ``k = 4, P = 2`` at ``V = 2`` (up to
2,434 of 65,536)."""

MULTISET_BATCHES_LOOPED = 1536
"""... when the user's code runs once per batch, every ``V``: the one-call-per-batch fallback then
covers the 17 default one-prompt shapes ``vmap`` covered on ordered batches (the largest,
``V = 3, T = 3, k = 3``, evaluates 1,345 batches for 3,375 ordered ones), and ``k = 3, P = 2``
up to ``T = 3`` at ``V = 2`` (784), where a per-batch weight function's bias hid (issue 15)."""

LOOPED_FULL_BATTERY_BATCHES = 16
"""In the looped mode, shapes with more batches than this get the reduced battery."""

Key = tuple[int, int, int, int]
"""``(k, T, P, V)``: one scale constant is measured per key (everything fixed for one model)."""

Cell = tuple[int, int, int]
"""``(k, T, P)``: a group size, length cap and prompt count asked for (checked at some ``V``, or not)."""


@dataclass(frozen=True)
class Shape:
    """``V`` tokens, length cap ``T``, ``k`` responses for each of ``P`` prompts.

    ``tool_tokens``: the positions :func:`tool_positions` names are the environment's
    (holes in the mask; see :class:`~properties.sequence.batch.SequenceBatch`).
    ``sampling_mismatch``: the responses are drawn from an inference engine's policy, a
    perturbation of the behaviour policy (:data:`SAMPLER_SHIFT`), whose log-probabilities
    the batch carries as ``sampling_log_probs``.  ``values``: ``"random"`` (a value table drawn
    independently of the policy) or ``"exact"`` (:func:`impl.sequence.node_values`) fills
    ``batch.values``; ``""`` leaves it 0.
    """

    vocab_size: int
    max_len: int
    k: int
    num_prompts: int
    tool_tokens: bool = False
    sampling_mismatch: bool = False
    values: str = ""
    route: str = "ordered"

    @property
    def key(self) -> Key:
        """``(k, T, P, V)``."""
        return (self.k, self.max_len, self.num_prompts, self.vocab_size)

    @property
    def cell(self) -> Cell:
        """``(k, T, P)``."""
        return (self.k, self.max_len, self.num_prompts)

    @property
    def space(self) -> ResponseSpace:
        """The response space of ``(V, T)``."""
        return response_space(self.vocab_size, self.max_len)

    @property
    def rows(self) -> int:
        """``B = P * k`` responses per batch."""
        return self.k * self.num_prompts

    @property
    def num_batches(self) -> int:
        """``G = R ** (k P)``: the ordered batches (all of them stand behind the estimate, whatever the route)."""
        return int(num_responses(self.vocab_size, self.max_len) ** self.rows)

    @property
    def cost(self) -> int:
        """The batches evaluated per problem: ``R ** (k P)`` on the ordered route, the multisets and
        their re-ordered copies on the multiset route (:func:`~properties.sequence.multisets.multiset_cost`).

        >>> Shape(3, 3, 3, 1).cost, Shape(3, 3, 3, 1, route="multiset").cost
        (3375, 1345)
        """
        if self.route == "ordered":
            return self.num_batches
        r = num_responses(self.vocab_size, self.max_len)
        return multiset_cost(r, self.k, self.num_prompts)

    def on_route(self, route: str) -> Shape:
        """The same shape on another route (``"ordered"``, ``"multiset"`` or ``"reordered"``)."""
        return dataclasses.replace(self, route=route)

    def describe(self) -> str:
        """``V=3, T=2, k=2, P=1``."""
        return f"V={self.vocab_size}, T={self.max_len}, k={self.k}, P={self.num_prompts}"


@dataclass(frozen=True)
class ShapeData:
    """What every problem of a shape shares: the batches and their static tensors.

    ``batches`` ``(G, B)`` response indices; ``tokens``/``mask``/``nodes`` ``(G, B, T)``;
    ``rows`` ``(G, B, T)`` the row of ``theta.reshape(P*(N+1), V)`` each position reads;
    ``prompt`` ``(B,)`` the prompt of each row (``group``).  On the multiset route
    (``shape.route``) the batches are one ordering of each multiset and ``counts`` ``(G,)``
    its number of orderings (``None``: ordered, one each); on the ``"reordered"`` route the
    re-ordered copies of the multisets ``source`` ``(G,)`` (indices into the multiset route's
    batches).
    """

    shape: Shape
    batches: IntArray
    tokens: IntArray
    mask: FloatArray
    rows: IntArray
    prompt: IntArray
    counts: IntArray | None = None
    source: IntArray | None = None


_DATA: dict[Shape, ShapeData] = {}


def tool_positions(max_len: int) -> FloatArray:
    """1.0 at the positions whose token the environment (a tool) emits: every odd ``t``.

    >>> tool_positions(4).tolist()
    [0.0, 1.0, 0.0, 1.0]
    """
    out: FloatArray = (np.arange(max_len) % 2 == 1).astype(np.float64)
    return out


def tool_nodes(space: ResponseSpace) -> BoolArray:
    """``(N + 1,)``: the nodes (prefixes of odd length) whose next token is the environment's."""
    out: BoolArray = np.zeros(space.num_rows, dtype=np.bool_)
    out[: space.num_nodes] = space.node_depth % 2 == 1
    return out


def shape_data(shape: Shape) -> ShapeData:
    """The (cached, read-only) :class:`ShapeData` of a shape."""
    data = _DATA.get(shape)
    if data is None:
        space = shape.space
        counts = source = None
        if shape.route == "ordered":
            batches = enumerate_batches(space, shape.k, shape.num_prompts)
        else:
            batches, counts = multiset_batches(space.num_responses, shape.k, shape.num_prompts)
            if shape.route == "reordered":
                source, batches = reordered_copies(batches, shape.k, shape.num_prompts)
                counts = counts[source]
        prompt = np.repeat(np.arange(shape.num_prompts, dtype=np.int64), shape.k)
        rows = prompt[None, :, None] * space.num_rows + space.nodes[batches]
        data = ShapeData(
            shape=shape,
            batches=batches,
            tokens=space.tokens[batches],
            mask=space.mask[batches] * (1.0 - tool_positions(shape.max_len) * shape.tool_tokens),
            rows=rows,
            prompt=prompt,
            counts=counts,
            source=source,
        )
        for arr in (data.batches, data.tokens, data.mask, data.rows, data.prompt, counts, source):
            if arr is not None:
                arr.setflags(write=False)
        _DATA[shape] = data
    return data


def plan_shapes(
    group_sizes: Sequence[int],
    num_prompts: Sequence[int],
    vocab_size: int,
    max_len: int,
    *,
    budget: int,
    extra_vocab_budget: int | None = None,
    tool_tokens: bool = False,
    sampling_mismatch: bool = False,
    values: str = "",
    multiset: bool = False,
) -> list[Shape]:
    """The ``(V, T, k, P)`` to check, smallest first.

    Every ``k``, ``P`` and ``1 <= T <= max_len``; ``V = 2`` within ``budget`` evaluated
    batches (:attr:`Shape.cost`), and each ``2 < V <= vocab_size`` within
    ``extra_vocab_budget`` (default ``budget``).  With ``multiset`` a shape takes the
    multiset route where it evaluates fewer batches than the ordered one (never at ``k = 1``,
    nor at ``k = 2, P = 1``, where the re-ordered copies make up the difference), else the
    ordered route.

    >>> [s.describe() for s in plan_shapes((2,), (1,), 2, 2, budget=100)]
    ['V=2, T=1, k=2, P=1', 'V=2, T=2, k=2, P=1']
    >>> [(s.describe(), s.route, s.cost) for s in plan_shapes((3,), (2,), 2, 2, budget=200, multiset=True)]
    [('V=2, T=1, k=3, P=2', 'multiset', 28), ('V=2, T=2, k=3, P=2', 'multiset', 191)]
    """
    extra = budget if extra_vocab_budget is None else min(budget, extra_vocab_budget)
    out = []
    for k in group_sizes:
        for p in num_prompts:
            for t in range(1, max_len + 1):
                for v in range(2, vocab_size + 1):
                    shape = Shape(v, t, k, p, tool_tokens, sampling_mismatch, values)
                    if multiset and shape.on_route("multiset").cost < shape.cost:
                        shape = shape.on_route("multiset")
                    if shape.cost <= (budget if v == 2 else extra):
                        out.append(shape)
    return sorted(
        out,
        key=lambda s: (
            s.cost * s.rows * s.max_len,
            s.k,
            s.num_prompts,
            s.max_len,
            s.vocab_size,
        ),
    )


def unreachable_keys(
    group_sizes: Sequence[int], num_prompts: Sequence[int], max_len: int, shapes: Sequence[Shape]
) -> list[Cell]:
    """The ``(k, T, P)`` asked for but with no shape within budget (not checked at any ``V``)."""
    have = {s.cell for s in shapes}
    return [
        (k, t, p)
        for k in group_sizes
        for p in num_prompts
        for t in range(1, max_len + 1)
        if (k, t, p) not in have
    ]


@dataclass(frozen=True)
class SequenceProblem:
    """One problem: a shape and its numbers.

    ``theta``, ``ref_theta`` ``(P, N+1, V)``; ``rewards`` ``(P, R)``; ``old_theta`` the
    behaviour policy (``None``: on-policy, ``old = theta``); ``kl_coef`` the objective's
    :math:`\\beta`; ``label`` says where it comes from (a battery entry, or Hypothesis).

    With ``shape.tool_tokens`` the environment's nodes (:func:`tool_nodes`) are not the
    policy's: ``ref_theta`` and ``old_theta`` are made equal to ``theta`` there (one
    environment for every policy), and :attr:`gradient` is 0 there (:math:`J` does not
    depend on them).  ``sampler_theta`` (with ``shape.sampling_mismatch``) is the inference
    engine's policy, which draws the responses in place of the behaviour policy.
    ``value_table`` ``(P, N+1)`` the critic's value of every node (``shape.values ==
    "random"``; :attr:`node_value_table` gives the exact one for ``"exact"``, 0 otherwise).
    """

    shape: Shape
    theta: FloatArray
    rewards: FloatArray
    ref_theta: FloatArray
    old_theta: FloatArray | None
    kl_coef: float
    label: str
    sampler_theta: FloatArray | None = None
    value_table: FloatArray | None = None
    _cache: dict[str, FloatArray] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.shape.tool_tokens:
            return
        env = tool_nodes(self.shape.space)
        for name in ("ref_theta", "old_theta", "sampler_theta"):
            value = getattr(self, name)
            if value is not None:
                same = np.array(value, dtype=np.float64)
                same[:, env] = self.theta[:, env]
                object.__setattr__(self, name, same)

    @property
    def node_value_table(self) -> FloatArray:
        """``(P, N+1)`` the values ``batch.values`` reads: drawn, exact or 0 (after-the-end: 0)."""
        if self.shape.values == "exact":
            return node_values(self.shape.space, self.theta, self.rewards)
        if self.value_table is None:
            return np.zeros(self.theta.shape[:2])
        out: FloatArray = np.array(self.value_table, dtype=np.float64)
        out[:, -1] = 0.0
        return out

    @property
    def behaviour(self) -> FloatArray:
        """The policy the responses are drawn from: ``sampler_theta`` if any, else ``old_theta``,
        or ``theta`` on-policy."""
        if self.sampler_theta is not None:
            return self.sampler_theta
        return self.trainer_behaviour

    @property
    def trainer_behaviour(self) -> FloatArray:
        """The policy ``old_log_probs`` score (``old_theta``, or ``theta`` on-policy)."""
        return self.theta if self.old_theta is None else self.old_theta

    @property
    def weights(self) -> FloatArray:
        """Probabilities of the ``G`` batches under the behaviour policy."""
        out = self._cache.get("weights")
        if out is None:
            data = shape_data(self.shape)
            if data.counts is None:
                out = batch_probs(self.shape.space, self.behaviour, self.shape.k)
            else:  # every ordering of a multiset has the same probability: count * probability
                probs = response_probs(self.shape.space, self.behaviour)
                out = probs[data.prompt[None, :], data.batches].prod(axis=1) * data.counts
            self._cache["weights"] = out
        return out

    @property
    def gradient(self) -> FloatArray:
        """The exact target :math:`\\nabla_\\theta J` ``(P, N+1, V)``."""
        out = self._cache.get("gradient")
        if out is None:
            out = sequence_gradient(
                self.shape.space,
                self.theta,
                self.rewards,
                kl_coef=self.kl_coef,
                ref_theta=self.ref_theta,
            )
            if self.shape.tool_tokens:
                out[:, tool_nodes(self.shape.space)] = 0.0
            self._cache["gradient"] = out
        return out

    @property
    def reach(self) -> FloatArray:
        """Behaviour probability of reaching each node, ``(P, N+1)`` (1 for the after-the-end node)."""
        out = self._cache.get("reach")
        if out is None:
            space = self.shape.space
            inner = np.exp(node_prefix_log_probs(space, self.behaviour))
            out = np.concatenate([inner, np.ones((inner.shape[0], 1))], axis=1)
            self._cache["reach"] = out
        return out


# --------------------------------------------------------------------------- the battery

_X = EXTREME_LOGIT

RewardPattern = Callable[[ResponseSpace, int], FloatArray]
"""``pattern(space, prompt) -> (R,)`` rewards of one prompt."""


def _counts(space: ResponseSpace) -> tuple[FloatArray, FloatArray, FloatArray]:
    live = space.mask > 0
    a = ((space.tokens == 1) & live).sum(axis=1).astype(np.float64)
    b = ((space.tokens == 2) & live).sum(axis=1).astype(np.float64)
    return a, b, space.lengths.astype(np.float64)


def _graded(space: ResponseSpace, prompt: int) -> FloatArray:
    """Distinct-ish rewards that depend on content and length (the scale reference)."""
    a, b, length = _counts(space)
    if prompt % 2 == 0:
        out: FloatArray = a + 0.5 * b - 0.3 * space.truncated
        return out
    out = 1.0 - 0.4 * length + 0.7 * b + 0.2 * a
    return out


def _eos_ties(space: ResponseSpace, prompt: int) -> FloatArray:
    """Every response that ends with EOS scores 1, a truncated one 0: ties across lengths."""
    out: FloatArray = np.where(space.truncated, 0.0, 1.0 if prompt % 2 == 0 else 2.0)
    return out


def ties_across_lengths(space: ResponseSpace, rewards: FloatArray) -> bool:
    """Whether two responses of different lengths get the same reward on some prompt.

    >>> from impl.sequence import response_space
    >>> ties_across_lengths(response_space(2, 1), np.array([[1.0, 0.0]]))
    False
    >>> ties_across_lengths(response_space(2, 2), np.array([[1.0, 1.0, 0.0]]))
    True
    """
    for row in np.atleast_2d(rewards):
        for value in np.unique(row):
            if np.unique(space.lengths[row == value]).size > 1:
                return True
    return False


def _label(label: str, reward_fn: RewardPattern, space: ResponseSpace, rewards: FloatArray) -> str:
    """The battery entry's label as it holds on this shape: "ties" only where rewards tie.

    The ``_eos_ties`` rewards tie across lengths only where two EOS-ended responses of
    different lengths exist (``T >= 2``); elsewhere the label says what the rewards are.
    """
    if reward_fn is _eos_ties and not ties_across_lengths(space, rewards):
        return "rewards 1 (2 on odd prompts) if the response ends with EOS, 0 if truncated (no ties here)"
    return label


def _binary(space: ResponseSpace, prompt: int) -> FloatArray:
    a, b, _ = _counts(space)
    out: FloatArray = ((a > 0) if prompt % 2 == 0 else (b > 0) | (a > 1)).astype(np.float64)
    return out


def _negative(space: ResponseSpace, prompt: int) -> FloatArray:
    out: FloatArray = -1.0 - 2.0 * _graded(space, prompt)
    return out


def _huge(space: ResponseSpace, prompt: int) -> FloatArray:
    out: FloatArray = 1e3 * _graded(space, prompt) - 500.0
    return out


def _constant(space: ResponseSpace, prompt: int) -> FloatArray:
    return np.full(space.num_responses, 2.0 + prompt)


def _truncation_penalty(space: ResponseSpace, prompt: int) -> FloatArray:
    _, _, length = _counts(space)
    out: FloatArray = length - 3.0 * space.truncated - prompt
    return out


def _generic(space: ResponseSpace, prompt: int) -> FloatArray:
    rng = np.random.default_rng(1000 + 17 * prompt + space.num_responses)
    out: FloatArray = np.round(rng.normal(0.0, 2.0, size=space.num_responses), 2)
    return out


def _theta_zero(space: ResponseSpace, p: int, salt: int) -> FloatArray:
    return np.zeros(space.theta_shape(p))


def _theta_moderate(space: ResponseSpace, p: int, salt: int) -> FloatArray:
    rng = np.random.default_rng(7 + salt)
    out: FloatArray = np.round(rng.normal(0.0, 1.0, size=space.theta_shape(p)), 3)
    return out


def _theta_extreme(space: ResponseSpace, p: int, salt: int) -> FloatArray:
    """Near-deterministic nodes: the start node almost surely continues, deeper nodes vary."""
    out = _theta_moderate(space, p, salt)
    out[:, 0, 0] = -_X / 2  # EOS first: p ~ 1e-6
    out[:, 0, 1] = _X / 2
    if space.num_nodes > 1:
        out[:, 1, 0] = _X  # after 'a': EOS almost surely
    return out


def _theta_large(space: ResponseSpace, p: int, salt: int) -> FloatArray:
    rng = np.random.default_rng(11 + salt)
    out: FloatArray = np.round(rng.normal(0.0, 3.0, size=space.theta_shape(p)), 3)
    return out


LOGIT_GAP = 240.0
r"""The logit gap of the extreme-gap battery problem: token log-probabilities down to about
-240, past a float32 ``log(softmax(x))`` (which gives ``-inf``, then NaN, past a gap of
about 103), which the moderate problems (down to about -27.7) never reach.

A log-prob clamp at ``c`` changes :math:`E[g]` by at most about :math:`e^{c}\max|R|` (the
clamped tokens have probability below :math:`e^{c}`, also under importance weighting,
where :math:`\pi_{old}\cdot\pi/\pi_{old} = \pi`): a clamp at -20 is caught (the
near-deterministic problem reaches it), a clamp at -30 (:math:`e^{-30} \approx 10^{-13}`)
lies under the float64 round-off tolerance of the exact sum and is invisible to any exact
check, and harmless to training."""

LOGIT_SHIFT = 1000.0
"""The constant added to every logit of the shifted battery problem.  Softmax is
shift-invariant, so ``grad J`` does not move; a loss that computes ``exp(logits)`` without
subtracting the maximum overflows (float32 past 88, float64 past 709) and returns NaN."""


def _theta_gaps(space: ResponseSpace, p: int, salt: int) -> FloatArray:
    """Every node has one token ``LOGIT_GAP / 2`` above and one as far below the others."""
    out = _theta_moderate(space, p, salt)
    v = space.vocab_size
    for n in range(out.shape[1]):
        out[:, n, (n + 1) % v] += LOGIT_GAP / 2
        out[:, n, n % v] -= LOGIT_GAP / 2
    return out


def _theta_shifted(space: ResponseSpace, p: int, salt: int) -> FloatArray:
    out: FloatArray = _theta_moderate(space, p, salt) + LOGIT_SHIFT
    return out


ThetaPattern = Callable[[ResponseSpace, int, int], FloatArray]

BATTERY: tuple[tuple[str, ThetaPattern, RewardPattern, bool], ...] = (
    ("uniform policy, graded rewards", _theta_zero, _graded, True),
    ("theta != 0, graded rewards", _theta_moderate, _graded, True),
    ("equal rewards across lengths (ties)", _theta_moderate, _eos_ties, True),
    ("binary rewards", _theta_zero, _binary, False),
    ("negative rewards", _theta_moderate, _negative, False),
    ("huge rewards", _theta_zero, _huge, False),
    ("near-deterministic nodes", _theta_extreme, _graded, True),
    ("grad J = 0 (constant rewards)", _theta_moderate, _constant, False),
    ("truncated responses penalised", _theta_large, _truncation_penalty, False),
    ("large logits, generic rewards", _theta_large, _generic, True),
    ("extreme logit gaps (log-probs down to -240)", _theta_gaps, _graded, False),
    ("logits shifted by +1000", _theta_shifted, _graded, False),
)
"""Hand-picked problems, in this order (names appear in reports): all of them on shapes of
at most :data:`FULL_BATTERY_BATCHES` batches, the entries marked ``True`` on larger ones
(the value edge cases do not need large batches to show, and large batches are costly).

The reference policy is ``theta`` plus a fixed perturbation (``theta`` itself for the
``grad J = 0`` entry, so that the KL term is flat there too); off-policy, the behaviour
policy is ``theta`` plus another fixed perturbation in every entry (the scale reference
included, so that a loss that ignores the importance weights is caught at once).
"""

FULL_BATTERY_BATCHES = 512
"""Shapes with at most this many batches get every :data:`BATTERY` entry."""


SAMPLER_SHIFT = 0.3
"""Standard deviation of the logit perturbation between the behaviour policy and the inference
engine's (the battery; Hypothesis draws shifts up to twice this): the training-inference
mismatch of a sampler with other kernels or lower precision, small but large enough that a
missing correction shows above round-off."""


def _perturbation(space: ResponseSpace, p: int, seed: int, scale: float) -> FloatArray:
    rng = np.random.default_rng(seed)
    out: FloatArray = np.round(rng.normal(0.0, scale, size=space.theta_shape(p)), 3)
    return out


def battery(
    shape: Shape, *, kl_coef: float, off_policy: bool, full_up_to: int = FULL_BATTERY_BATCHES
) -> list[SequenceProblem]:
    """The :data:`BATTERY` problems of one shape (all of them up to ``full_up_to`` batches)."""
    space = shape.space
    p = shape.num_prompts
    out = []
    for i, (label, theta_fn, reward_fn, everywhere) in enumerate(BATTERY):
        if not everywhere and shape.cost > full_up_to:
            continue
        theta = theta_fn(space, p, i)
        rewards = np.stack([reward_fn(space, q) for q in range(p)]).astype(np.float64)
        flat = reward_fn is _constant
        ref = theta.copy() if flat else theta + _perturbation(space, p, 100 + i, 0.8)
        old = theta + _perturbation(space, p, 200 + i, 0.6) if off_policy else None
        sampler = None
        if shape.sampling_mismatch:
            base = theta if old is None else old
            sampler = base + _perturbation(space, p, 300 + i, SAMPLER_SHIFT)
        table = None
        if shape.values == "random":
            table = _perturbation(space, p, 400 + i, 1.0)[..., 0] + 0.5
        out.append(
            SequenceProblem(
                shape=shape,
                theta=theta,
                rewards=rewards,
                ref_theta=ref,
                old_theta=old,
                kl_coef=kl_coef,
                label=f"battery: {_label(label, reward_fn, space, rewards)}",
                sampler_theta=sampler,
                value_table=table,
            )
        )
    return out


# --------------------------------------------------------------------------- Hypothesis

_SPECIAL_LOGITS = (0.0, 1.0, -1.0, 2.5, -4.0, _X / 2, -_X / 2, 13.0, -13.0)
_SPECIAL_REWARDS = (0.0, 1.0, -1.0, 0.5, 2.0, -3.0, 1e3, -1e3, 7.0)


def _logit() -> st.SearchStrategy[float]:
    return st.one_of(
        st.integers(-3, 3).map(float),
        st.sampled_from(_SPECIAL_LOGITS),
        st.floats(-4.0, 4.0, allow_nan=False, allow_subnormal=False),
    )


def _reward() -> st.SearchStrategy[float]:
    return st.one_of(
        st.integers(-3, 3).map(float),
        st.sampled_from(_SPECIAL_REWARDS),
        st.floats(-10.0, 10.0, allow_nan=False, allow_subnormal=False),
    )


def _array(
    shape: tuple[int, ...], element: st.SearchStrategy[float]
) -> st.SearchStrategy[FloatArray]:
    size = math.prod(shape)
    return st.lists(element, min_size=size, max_size=size).map(
        lambda xs: np.array(xs, dtype=np.float64).reshape(shape)
    )


def generated_problems(
    shapes: Sequence[Shape], *, kl_coef: float, off_policy: bool
) -> st.SearchStrategy[SequenceProblem]:
    """Problems on the given shapes (shrinking towards the first, the smallest).

    ``theta``, the reward table, the reference and (off-policy) behaviour policies are
    drawn independently: zero, moderate and near-deterministic logits; tied, negative
    and huge rewards.
    """

    @st.composite
    def build(draw: st.DrawFn) -> SequenceProblem:
        shape = draw(st.sampled_from(list(shapes)))
        space = shape.space
        tshape = space.theta_shape(shape.num_prompts)
        theta = draw(_array(tshape, _logit()))
        distinct = draw(st.lists(_reward(), min_size=1, max_size=4, unique=True))
        pick = draw(
            _array(
                (shape.num_prompts, space.num_responses),
                st.integers(0, len(distinct) - 1).map(float),
            )
        )
        rewards = np.array(distinct)[pick.astype(np.int64)]
        ref = draw(st.one_of(st.just(theta), _array(tshape, _logit())))
        old = draw(_array(tshape, _logit())) if off_policy else None
        sampler = None
        if shape.sampling_mismatch:
            shift = _array(tshape, st.floats(-2 * SAMPLER_SHIFT, 2 * SAMPLER_SHIFT, allow_subnormal=False))
            sampler = (theta if old is None else old) + draw(shift)
        table = draw(_array(tshape[:2], _reward())) if shape.values == "random" else None
        return SequenceProblem(
            shape=shape,
            theta=theta,
            rewards=rewards,
            ref_theta=ref,
            old_theta=old,
            kl_coef=kl_coef,
            label="hypothesis (shrunk)",
            sampler_theta=sampler,
            value_table=table,
        )

    return build()


__all__ = [
    "BATTERY",
    "FULL_BATTERY_BATCHES",
    "LOGIT_GAP",
    "LOGIT_SHIFT",
    "LOOPED_EXTRA_VOCAB_BATCHES",
    "LOOPED_FULL_BATTERY_BATCHES",
    "MAX_BATCHES_LOOPED",
    "MAX_BATCHES_VECTORISED",
    "MULTISET_BATCHES_LOOPED",
    "MULTISET_BATCHES_VECTORISED",
    "SAMPLER_SHIFT",
    "Cell",
    "Key",
    "SequenceProblem",
    "Shape",
    "ShapeData",
    "battery",
    "generated_problems",
    "plan_shapes",
    "shape_data",
    "tool_nodes",
    "tool_positions",
    "unreachable_keys",
]
