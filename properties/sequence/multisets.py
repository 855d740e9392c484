r"""The multiset route of the sequence checker: batches summed as multisets of each group's responses (private).

A batch holds ``k`` responses to each of ``P`` prompts, drawn independently from the
behaviour policy.  When the estimate :math:`g_b` does not change when the responses of
one prompt's group are re-ordered (most losses: a mean, a group baseline, a leave-one-out
baseline), the :math:`R^{kP}` ordered batches fall into classes of equal :math:`g`, one
per choice of a *multiset* of responses for every group, and

.. math::

    E[g] = \sum_{m} \Big(\prod_p \binom{k}{c_{p,1}, \dots, c_{p,R}}\Big)
        \Big(\prod_j \pi_{\mathrm{old}}(y_{mj})\Big)\, g(\mathrm{rep}_m),

with :math:`c_{p,r}` the number of times response ``r`` appears in group ``p`` of the
multiset and :math:`\mathrm{rep}_m` one ordering of it (each group sorted): exactly the
ordered sum, grouped.  There are :math:`\binom{R+k-1}{k}^P` multisets, up to :math:`k!^P`
fewer than ordered batches.

The symmetry is not assumed: every multiset with a group of two or more distinct responses
is evaluated again in a re-ordered copy (each such group shuffled by a seeded
``np.random.Generator`` until its order changes), and the two per-batch gradients (and the
per-batch token weights, binned by prompt, response and position) must agree within the
round-off bound of one batch (:func:`asymmetry`); otherwise the check runs again on ordered
batches.  The budget counts both: :func:`multiset_cost`.

>>> reps, counts = group_multisets(3, 2)
>>> reps.tolist(), counts.tolist()
([[0, 0], [0, 1], [0, 2], [1, 1], [1, 2], [2, 2]], [1, 2, 2, 1, 2, 1])
>>> int(counts.sum()) == 3 ** 2
True
"""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np

from impl.types import FloatArray, IntArray

EXACT_COUNT = 1 << 53
"""Multinomial counts stay below this, so that they are exact as float64 weights."""


def group_multisets(num_responses: int, k: int) -> tuple[IntArray, IntArray]:
    """The sorted ``k``-tuples of ``0..R-1`` ``(M, k)`` (lexicographic) and their multinomial counts ``(M,)``.

    >>> group_multisets(2, 3)[1].tolist()
    [1, 3, 3, 1]
    """
    reps = np.array(
        list(itertools.combinations_with_replacement(range(num_responses), k)), dtype=np.int64
    ).reshape(-1, k)
    counts = np.array(
        [
            math.factorial(k)
            // math.prod(math.factorial(c) for c in np.unique(row, return_counts=True)[1].tolist())
            for row in reps
        ],
        dtype=np.int64,
    )
    return reps, counts


def multiset_batches(num_responses: int, k: int, num_prompts: int) -> tuple[IntArray, IntArray]:
    """One ordering (each group sorted) of every multiset batch ``(G, P*k)``, prompt-major, and its
    exact number of orderings ``(G,)`` (the product of the groups' multinomial counts).

    >>> reps, counts = multiset_batches(2, 2, 2)
    >>> reps.shape, int(counts.sum())
    ((9, 4), 16)
    """
    one, counts = group_multisets(num_responses, k)
    m = one.shape[0]
    index = np.indices((m,) * num_prompts, dtype=np.int64).reshape(num_prompts, -1).T
    reps = one[index].reshape(index.shape[0], num_prompts * k)
    total = [math.prod(int(counts[i]) for i in row) for row in index.tolist()]
    if max(total, default=0) >= EXACT_COUNT:  # pragma: no cover - far beyond any batch budget
        raise ValueError("multinomial counts too large to be exact in float64")
    return reps, np.array(total, dtype=np.int64)


def multiset_cost(num_responses: int, k: int, num_prompts: int) -> int:
    """Batches the multiset route evaluates: every multiset, and a re-ordered copy of those with a
    group of two or more distinct responses (:math:`2M^P - R^P`, :math:`M = \\binom{R+k-1}{k}`).

    >>> multiset_cost(15, 3, 1), 15 ** 3
    (1345, 3375)
    """
    m = math.comb(num_responses + k - 1, k) ** num_prompts
    return int(2 * m - num_responses**num_prompts)


def reordered_copies(reps: IntArray, k: int, num_prompts: int) -> tuple[IntArray, IntArray]:
    """``(source, copies)``: the multisets with a group of two or more distinct responses (their
    indices ``(G',)``) and a re-ordering of each ``(G', P*k)``: every such group is shuffled (a
    ``np.random.Generator`` seeded by the shape) until its order changes; constant groups stay.

    >>> src, copies = reordered_copies(np.array([[0, 0], [0, 1], [1, 1]]), 2, 1)
    >>> src.tolist(), copies.tolist()
    ([1], [[1, 0]])
    """
    groups = reps.reshape(reps.shape[0], num_prompts, k)
    mixed = (groups != groups[:, :, :1]).any(axis=2)  # (G, P): a group with distinct responses
    source = np.flatnonzero(mixed.any(axis=1)).astype(np.int64)
    out = groups[source].copy()
    todo = mixed[source]
    seed = zlib.crc32(f"{reps.shape}/{k}/{num_prompts}/{int(reps.max(initial=0))}".encode())
    rng = np.random.default_rng(seed)
    while todo.any():
        g, p = np.nonzero(todo)
        order = np.argsort(rng.random((g.size, k)), axis=1)
        shuffled = np.take_along_axis(groups[source[g], p], order, axis=1)
        changed = (shuffled != groups[source[g], p]).any(axis=1)
        out[g[changed], p[changed]] = shuffled[changed]
        todo[g[changed], p[changed]] = False
    return source, out.reshape(source.size, num_prompts * k)


def binned_weights(
    weights: FloatArray, batches: IntArray, prompt: IntArray, num_responses: int
) -> FloatArray:
    """Per batch, the token weights ``(G, B, T)`` summed by (prompt, response): ``(G, P*R, T)``.

    What a re-ordering within a group leaves unchanged when the loss is symmetric (two rows
    with the same response may share their weight in any way).

    >>> binned_weights(np.ones((1, 2, 1)), np.array([[1, 1]]), np.array([0, 0]), 2).tolist()
    [[[0.0], [2.0]]]
    """
    g, _, t = weights.shape
    cells = int(prompt.max(initial=0) + 1) * num_responses
    flat = (np.arange(g)[:, None] * cells + prompt[None, :] * num_responses + batches)[:, :, None]
    index = (flat * t + np.arange(t)[None, None, :]).ravel()
    summed = np.bincount(index, weights=weights.ravel(), minlength=g * cells * t)
    out: FloatArray = np.asarray(summed, dtype=np.float64).reshape(g, cells, t)
    return out


def asymmetry(first: FloatArray, again: FloatArray, allowed: FloatArray) -> int | None:
    """The row (leading index) where ``first`` and ``again`` differ by more than ``allowed``, or ``None``.

    >>> asymmetry(np.zeros((2, 3)), np.array([[0.0, 0, 0], [0, 1, 0]]), np.full((2, 3), 0.5))
    1
    """
    bad = (np.abs(first - again) > allowed).reshape(first.shape[0], -1).any(axis=1)
    if not bad.any():
        return None
    return int(np.argmax(bad))


class Route:
    """The route of a check: multisets where cheaper, until the loss shows an asymmetry (then
    ordered batches, with the ``reason``)."""

    def __init__(self) -> None:
        self.multiset = True
        self.reason: str | None = None

    def abandon(self, reason: str) -> None:
        """Re-plan on ordered batches (a second asymmetry cannot happen there)."""
        if not self.multiset:  # pragma: no cover - the ordered route raises no RouteChanged
            raise RuntimeError(reason)
        self.multiset, self.reason = False, reason


__all__ = [
    "EXACT_COUNT",
    "Route",
    "asymmetry",
    "binned_weights",
    "group_multisets",
    "multiset_batches",
    "multiset_cost",
    "reordered_copies",
]
