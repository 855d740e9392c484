r"""What a sequence check covered: the shapes evaluated, those asked for but not, the value ranges.

The region line of a report must be true: it lists exactly the shapes ``(V, T, k, P)``
that were evaluated (in the evaluation mode that was judged), every requested shape that
was not (over the batch budget, or not reached because the check stopped at a
counterexample or an error), the ranges of the logits, log-probabilities and rewards the
problems held, and what the evaluated shapes cannot show (at ``T = 1`` every response has
one token, so no bias from lengths or positions can show).

A check is *partial* when a requested ``(k, T, P)`` has no evaluated shape at all (at any
``V``): its verdict then holds only on the shapes checked, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from impl.sequence import node_log_probs
from properties.sequence.problems import Cell, SequenceProblem, Shape


def requested_shapes(
    group_sizes: Sequence[int], num_prompts: Sequence[int], vocab_size: int, max_len: int
) -> list[Shape]:
    """Every ``(V, T, k, P)`` a check asks for: ``2 <= V <= vocab_size``, ``1 <= T <= max_len``.

    >>> len(requested_shapes((2, 3), (1,), 3, 2))
    8
    """
    return [
        Shape(v, t, k, p)
        for k in group_sizes
        for p in num_prompts
        for t in range(1, max_len + 1)
        for v in range(2, vocab_size + 1)
    ]


def _span(values: Iterable[int]) -> str:
    """``2..5`` for consecutive values, else a list.

    >>> _span([2, 3, 4]), _span([3]), _span([1, 3, 4])
    ('2..4', '3', '1, 3..4')
    """
    vs = sorted(set(values))
    parts: list[str] = []
    start = prev = vs[0]
    for v in [*vs[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}..{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)


def describe_shapes(shapes: Iterable[Shape]) -> str:
    """The shapes, grouped by ``(k, P)``, then by the set of ``V`` each ``T`` was checked at.

    >>> s = [Shape(v, t, 2, 1) for t in (1, 2, 3) for v in (2, 3)] + [Shape(2, 3, 4, 1)]
    >>> describe_shapes(s)
    'k=2, P=1: T=1..3 at V=2..3; k=4, P=1: T=3 at V=2'
    >>> describe_shapes([Shape(v, 1, 2, 1) for v in range(2, 28)] + [Shape(2, 2, 2, 1)])
    'k=2, P=1: T=1 at V=2..27, T=2 at V=2'
    >>> describe_shapes([])
    'none'
    """
    cells: dict[tuple[int, int], dict[int, set[int]]] = {}
    for s in shapes:
        cells.setdefault((s.k, s.num_prompts), {}).setdefault(s.max_len, set()).add(s.vocab_size)
    if not cells:
        return "none"
    out = []
    for (k, p), by_t in sorted(cells.items()):
        groups: dict[tuple[int, ...], list[int]] = {}
        for t, vs in sorted(by_t.items()):
            groups.setdefault(tuple(sorted(vs)), []).append(t)
        parts = [f"T={_span(ts)} at V={_span(vs)}" for vs, ts in groups.items()]
        out.append(f"k={k}, P={p}: " + ", ".join(parts))
    return "; ".join(out)


def blind_spots(shapes: Sequence[Shape], requested: Sequence[Shape]) -> list[str]:
    """What no evaluated shape can show, where a requested shape could have (and pooling
    across prompts, which only ``P >= 2`` shows, whenever every shape has ``P = 1``).

    >>> blind_spots([Shape(2, 1, 12, 1)], [Shape(2, 1, 12, 1), Shape(2, 2, 12, 1)])[0][:40]
    'only T = 1 was evaluated: every response'
    """
    out = []
    if shapes and all(s.max_len == 1 for s in shapes) and any(s.max_len > 1 for s in requested):
        out.append(
            "only T = 1 was evaluated: every response has one token, so no bias from response "
            "lengths or token positions (e.g. a length normalisation) can show"
        )
    if shapes and all(s.vocab_size == 2 for s in shapes) and any(
        s.vocab_size > 2 for s in requested
    ):
        out.append(
            "only V = 2 was evaluated: one token besides EOS, so no bias that depends on which "
            "token was sampled can show"
        )
    if shapes and all(s.num_prompts == 1 for s in shapes):
        out.append(ONE_PROMPT_BLIND_SPOT)
    return out


ONE_PROMPT_BLIND_SPOT = (
    "only one prompt per batch (P = 1) was evaluated, so no bias from pooling statistics across "
    "prompts (a batch-wide baseline or normalisation, a dynamic-sampling filter without refill) "
    "can show; pass num_prompts=(1, 2) to check it"
)
"""What a check of one prompt per batch cannot show, requested or not: the default
``num_prompts=(1,)`` certified a DAPO filter biased only at ``P >= 2`` without saying so
(issue 15, F6)."""


def unchecked_cells(shapes: Sequence[Shape], requested: Sequence[Shape]) -> list[Cell]:
    """The requested ``(k, T, P)`` with no evaluated shape at any ``V`` (they make a check partial).

    >>> unchecked_cells([Shape(2, 1, 2, 1)], [Shape(2, 1, 2, 1), Shape(2, 2, 2, 1)])
    [(2, 2, 1)]
    """
    have = {s.cell for s in shapes}
    out: list[Cell] = []
    for s in requested:
        if s.cell not in have and s.cell not in out:
            out.append(s.cell)
    return out


@dataclass
class ValueRanges:
    """The ranges of the values the evaluated problems held (for the region line).

    ``logits`` the current policy's logits, ``log_prob_min`` the smallest token
    log-probability a batch carried, ``rewards`` the rewards.
    """

    logit_lo: float = math.inf
    logit_hi: float = -math.inf
    log_prob_min: float = math.inf
    reward_lo: float = math.inf
    reward_hi: float = -math.inf

    def add(self, problem: SequenceProblem) -> None:
        """Widen the ranges by one evaluated problem."""
        self.logit_lo = min(self.logit_lo, float(problem.theta.min()))
        self.logit_hi = max(self.logit_hi, float(problem.theta.max()))
        self.log_prob_min = min(self.log_prob_min, float(node_log_probs(problem.theta).min()))
        self.reward_lo = min(self.reward_lo, float(problem.rewards.min()))
        self.reward_hi = max(self.reward_hi, float(problem.rewards.max()))

    def describe(self) -> str:
        """``logits in [-200, 1000], token log-probs down to -400, rewards in [-1000, 1000]``.

        >>> import numpy as np
        >>> r = ValueRanges()
        >>> r.describe()
        'no values'
        >>> r.add(SequenceProblem(Shape(2, 1, 2, 1), np.zeros((1, 2, 2)), np.array([[0.0, 1.0]]),
        ...                       np.zeros((1, 2, 2)), None, 0.0, "x"))
        >>> r.describe()
        'logits in [0, 0], token log-probs down to -0.693, rewards in [0, 1]'
        """
        if self.logit_lo > self.logit_hi:
            return "no values"
        return (
            f"logits in [{self.logit_lo:.3g}, {self.logit_hi:.3g}], token log-probs down to "
            f"{self.log_prob_min:.3g}, rewards in [{self.reward_lo:.3g}, {self.reward_hi:.3g}]"
        )

    def to_dict(self) -> dict[str, float | None]:
        """Plain JSON-serialisable fields (``None`` when nothing was evaluated)."""

        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "logit_min": num(self.logit_lo),
            "logit_max": num(self.logit_hi),
            "log_prob_min": num(self.log_prob_min),
            "reward_min": num(self.reward_lo),
            "reward_max": num(self.reward_hi),
        }


__all__ = [
    "ONE_PROMPT_BLIND_SPOT",
    "ValueRanges",
    "blind_spots",
    "describe_shapes",
    "requested_shapes",
    "unchecked_cells",
]
