r"""The response space of the tabular autoregressive policy: tokens, nodes and responses.

The conventions are those of :mod:`impl.sequence` (which re-exports every public name
here): token ``0`` is EOS and padding, every live prefix is a node, and the responses of
``V`` tokens up to length ``T`` are numbered in the lexicographic order of their padded
token arrays.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from impl._validate import positive_int
from impl.errors import InvalidArgument, describe
from impl.types import FloatArray, IntArray

BoolArray = npt.NDArray[np.bool_]

EOS = 0
"""The EOS token id (also the padding id)."""

MAX_VOCAB = 27
"""Largest vocabulary (tokens ``1..26`` print as ``a..z``)."""

MAX_ENUMERATED = 1 << 20
"""Largest ``V**T`` (padded token arrays enumerated to build a response space)."""


def token_name(token: int) -> str:
    """How a token prints: ``<eos>`` for 0, then ``a, b, c, ...``.

    >>> [token_name(t) for t in range(4)]
    ['<eos>', 'a', 'b', 'c']
    """
    if token == EOS:
        return "<eos>"
    if 1 <= token < MAX_VOCAB:
        return chr(ord("a") + token - 1)
    raise InvalidArgument(
        f"Expected a token id in 0..{MAX_VOCAB - 1} but got {describe('token', token)}"
    )


def format_tokens(tokens: Any, *, truncated_mark: bool = False) -> str:
    """A padded token array as text: up to and including the first EOS.

    A response without EOS is truncated; ``truncated_mark`` appends ``" (truncated)"``.

    >>> format_tokens([1, 2, 0, 0])
    'a b <eos>'
    >>> format_tokens([1, 1, 1], truncated_mark=True)
    'a a a (truncated)'
    """
    row = [int(t) for t in np.asarray(tokens).reshape(-1)]
    words: list[str] = []
    for t in row:
        words.append(token_name(t))
        if t == EOS:
            return " ".join(words)
    return " ".join(words) + (" (truncated)" if truncated_mark else "")


@dataclass(frozen=True, eq=False)
class ResponseSpace:
    r"""Every response of a vocabulary of ``V`` tokens and length cap ``T``, with its nodes.

    Per response ``r`` (``R`` of them, lexicographic in their padded tokens): ``tokens[r]``
    ``(T,)`` padded with 0; ``mask[r]`` 1.0 on its ``lengths[r]`` tokens (EOS included);
    ``nodes[r, t]`` the node whose logits position ``t`` reads (the after-the-end node
    ``N`` on padding); ``truncated[r]`` (no EOS); ``strings[r]`` its text.

    Per node ``n < N``: ``node_depth[n]`` (its prefix length), ``node_tokens[n]`` (its
    prefix, padded with 0), and for each token ``v``: ``children[n, v]`` (the node reached,
    or -1) and ``leaves[n, v]`` (the response completed by ``v``, or -1); exactly one of
    the two is set.  ``depth_offsets[d]`` is the first node of depth ``d``.
    """

    vocab_size: int
    max_len: int
    num_nodes: int
    tokens: IntArray
    mask: FloatArray
    lengths: IntArray
    nodes: IntArray
    truncated: BoolArray
    strings: tuple[str, ...]
    node_depth: IntArray
    node_tokens: IntArray
    children: IntArray
    leaves: IntArray
    depth_offsets: IntArray
    lookup: IntArray

    @property
    def num_responses(self) -> int:
        """``R``, the number of responses."""
        return int(self.lengths.size)

    @property
    def end_node(self) -> int:
        """The index ``N`` of the after-the-end node (read by padding positions)."""
        return self.num_nodes

    @property
    def num_rows(self) -> int:
        """``N + 1``, the rows of one prompt's block of ``theta``."""
        return self.num_nodes + 1

    def theta_shape(self, num_prompts: int = 1) -> tuple[int, int, int]:
        """``(P, N + 1, V)``."""
        return (num_prompts, self.num_rows, self.vocab_size)

    def node_string(self, node: int) -> str:
        """The prefix of a node as text (``"(start)"`` for the root, ``"(after the end)"`` for ``N``).

        >>> s = response_space(3, 3)
        >>> s.node_string(0), s.node_string(3), s.node_string(s.end_node)
        ('(start)', 'a a', '(after the end)')
        """
        if node == self.num_nodes:
            return "(after the end)"
        depth = int(self.node_depth[node])
        if depth == 0:
            return "(start)"
        return " ".join(token_name(int(t)) for t in self.node_tokens[node, :depth])

    def index_of(self, tokens: Any) -> IntArray:
        """Response indices of padded token arrays ``(..., T)``; -1 where not a valid response.

        >>> s = response_space(3, 2)
        >>> s.index_of([[0, 0], [1, 0], [2, 2], [0, 1]]).tolist()
        [0, 1, 6, -1]
        """
        arr = np.asarray(tokens)
        if arr.shape[-1:] != (self.max_len,) or not np.issubdtype(arr.dtype, np.integer):
            raise InvalidArgument(
                f"Expected integer token arrays of shape (..., {self.max_len}) but got "
                f"{describe('tokens', tokens)}"
            )
        bad = (arr < 0) | (arr >= self.vocab_size)
        code = np.where(bad, 0, arr).astype(np.int64) @ _powers(self.vocab_size, self.max_len)
        out: IntArray = np.where(bad.any(axis=-1), -1, self.lookup[code])
        return out


def _powers(v: int, t: int) -> IntArray:
    out: IntArray = v ** np.arange(t - 1, -1, -1, dtype=np.int64)
    return out


def _check_shape_args(vocab_size: Any, max_len: Any) -> tuple[int, int]:
    v = positive_int(vocab_size, "vocab_size", minimum=2)
    t = positive_int(max_len, "max_len")
    if v > MAX_VOCAB:
        raise InvalidArgument(
            f"Expected vocab_size <= {MAX_VOCAB} but got {describe('vocab_size', vocab_size)}"
        )
    if v**t > MAX_ENUMERATED:
        raise InvalidArgument(
            f"vocab_size**max_len = {v**t} exceeds MAX_ENUMERATED={MAX_ENUMERATED} "
            f"(vocab_size={v}, max_len={t})"
        )
    return v, t


@functools.lru_cache(maxsize=64)
def _build_space(v: int, t: int) -> ResponseSpace:
    grid = np.indices((v,) * t, dtype=np.int64).reshape(t, -1).T  # lexicographic
    is_eos = grid == EOS
    ended_before = np.zeros_like(is_eos)
    ended_before[:, 1:] = np.logical_or.accumulate(is_eos, axis=1)[:, :-1]
    valid = ~np.any(ended_before & ~is_eos, axis=1)
    tokens = grid[valid]
    r = tokens.shape[0]
    has_eos = (tokens == EOS).any(axis=1)
    lengths = np.where(has_eos, np.argmax(tokens == EOS, axis=1) + 1, t).astype(np.int64)
    positions = np.arange(t)
    mask = (positions[None, :] < lengths[:, None]).astype(np.float64)

    offsets = np.zeros(t + 1, dtype=np.int64)
    offsets[1:] = np.cumsum((v - 1) ** np.arange(t, dtype=np.int64))
    n = int(offsets[t])
    # node of the prefix tokens[:, :pos]: offset[pos] + base-(V-1) code of (tokens - 1)
    digits = np.clip(tokens - 1, 0, None)
    code = np.zeros((r, t), dtype=np.int64)
    for pos in range(1, t):
        code[:, pos] = code[:, pos - 1] * (v - 1) + digits[:, pos - 1]
    nodes = np.where(mask > 0, offsets[:t][None, :] + code, n).astype(np.int64)

    lookup = np.full(v**t, -1, dtype=np.int64)
    lookup[tokens @ _powers(v, t)] = np.arange(r)

    node_depth = np.repeat(np.arange(t, dtype=np.int64), (v - 1) ** np.arange(t))
    node_tokens = np.zeros((n, t), dtype=np.int64)
    # fill each node's prefix from the responses through it (every node has one)
    rows, cols = np.nonzero(mask > 0)
    node_ids = nodes[rows, cols]
    prefix = np.where(positions[None, :] < cols[:, None], tokens[rows], 0)
    node_tokens[node_ids] = prefix

    # successors: prefix + v; a leaf when v is EOS or the prefix has depth T - 1
    ext = np.repeat(node_tokens[:, None, :], v, axis=1)  # (N, V, T)
    ext[np.arange(n)[:, None], np.arange(v)[None, :], node_depth[:, None]] = np.arange(v)[None, :]
    is_leaf = (np.arange(v)[None, :] == EOS) | (node_depth[:, None] == t - 1)
    leaves = np.where(is_leaf, lookup[ext @ _powers(v, t)], -1).astype(np.int64)
    child_code = offsets[np.minimum(node_depth + 1, t)][:, None] + (
        (np.arange(n) - offsets[node_depth])[:, None] * (v - 1) + np.arange(v)[None, :] - 1
    )
    children = np.where(is_leaf, -1, child_code).astype(np.int64)

    strings = tuple(format_tokens(row) for row in tokens)
    for arr in (
        tokens,
        mask,
        lengths,
        nodes,
        has_eos,
        node_depth,
        node_tokens,
        children,
        leaves,
        offsets,
        lookup,
    ):
        arr.setflags(write=False)
    truncated = ~has_eos
    truncated.setflags(write=False)
    return ResponseSpace(
        vocab_size=v,
        max_len=t,
        num_nodes=n,
        tokens=tokens,
        mask=mask,
        lengths=lengths,
        nodes=nodes,
        truncated=truncated,
        strings=strings,
        node_depth=node_depth,
        node_tokens=node_tokens,
        children=children,
        leaves=leaves,
        depth_offsets=offsets,
        lookup=lookup,
    )


def response_space(vocab_size: int, max_len: int) -> ResponseSpace:
    r"""All responses for ``V = vocab_size``, ``T = max_len`` (cached, read-only arrays).

    :math:`N = \sum_{t<T}(V-1)^t` nodes and :math:`R = N + (V-1)^T` responses.

    >>> s = response_space(3, 3)
    >>> s.num_nodes, s.num_responses, s.end_node
    (7, 15, 7)
    >>> s.strings[:5], s.lengths[:5].tolist()
    (('<eos>', 'a <eos>', 'a a <eos>', 'a a a', 'a a b'), [1, 2, 3, 3, 3])
    >>> s.nodes[3].tolist(), s.nodes[1].tolist()
    ([0, 1, 3], [0, 1, 7])
    >>> response_space(2, 3).strings
    ('<eos>', 'a <eos>', 'a a <eos>', 'a a a')
    """
    v, t = _check_shape_args(vocab_size, max_len)
    return _build_space(v, t)


def num_responses(vocab_size: int, max_len: int) -> int:
    r""":math:`R = \sum_{t<T}(V-1)^t + (V-1)^T` without building the space.

    >>> [num_responses(v, t) for v, t in ((2, 3), (3, 2), (3, 3), (4, 3))]
    [4, 7, 15, 40]
    """
    v = positive_int(vocab_size, "vocab_size", minimum=2)
    t = positive_int(max_len, "max_len")
    return int(sum((v - 1) ** d for d in range(t)) + (v - 1) ** t)


__all__ = [
    "EOS",
    "MAX_ENUMERATED",
    "MAX_VOCAB",
    "ResponseSpace",
    "format_tokens",
    "num_responses",
    "response_space",
    "token_name",
]
