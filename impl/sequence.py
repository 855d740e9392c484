r"""The tabular autoregressive policy over token sequences, and its exact objective.

The setting of the sequence-level checker (``properties.SequenceBatch`` states the same
conventions from the loss's side):

* a vocabulary of ``V >= 2`` tokens; token ``0`` is EOS and also the padding id, tokens
  ``1..V-1`` print as ``a, b, c, ...``;
* a response ends at its first EOS (included), or after ``T = max_len`` tokens without one
  (*truncated*); it is padded to ``T`` with token 0, and ``mask`` is 1.0 on its tokens;
* every live prefix (no EOS yet, length ``0..T-1``) is a *node* with its own ``V`` logits;
  there are :math:`N = \sum_{t<T} (V-1)^t` of them, numbered by depth then
  lexicographically (node 0 is the empty prefix), plus one *after-the-end* node ``N`` that
  padding positions read; ``theta`` has shape ``(P, N + 1, V)``, one block per prompt;
* the :math:`R = N + (V-1)^T` responses are numbered in the lexicographic order of their
  padded token arrays (``"<eos>"`` is response 0).

With :math:`\pi(v \mid n) = \operatorname{softmax}(\theta_n)_v`,

.. math::

    \log\pi(y) = \sum_{t < |y|} \log\pi(y_t \mid y_{<t}), \qquad
    J(\theta) = \frac1P\sum_p \Big(E_{y\sim\pi_p}[R_p(y)]
      - \beta\,\mathrm{KL}(\pi_p \,\|\, \pi_{\mathrm{ref},p})\Big),

and, by the sequence score-function identity (``spec.sequence``),

.. math::

    \nabla J = \frac1P\sum_p \sum_y \pi_p(y)\,\big(R_p(y) - \beta(\log\pi_p(y) - \log\pi_{\mathrm{ref},p}(y))\big)
      \,\nabla\log\pi_p(y).

``P`` prompts are a sample from the prompt distribution and RL maximises the expectation
over it, so :math:`J` is their *mean* (an unbiased loss averages over all ``P*k`` rows of
a batch; a sum over the prompts is ``P`` times the gradient).

Everything is computed by enumeration, vectorised over prompts, responses and batches;
the only Python loops run over the ``T`` depths.

>>> space = response_space(3, 2)
>>> space.num_nodes, space.num_responses, space.strings[:4]
(3, 7, ('<eos>', 'a <eos>', 'a a', 'a b'))
>>> theta = np.zeros((1, space.num_nodes + 1, 3))
>>> float(response_probs(space, theta).sum())
1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from impl._validate import positive_int
from impl.errors import InvalidArgument, describe
from impl.sequence_space import (
    EOS,
    MAX_ENUMERATED,
    MAX_VOCAB,
    ResponseSpace,
    format_tokens,
    num_responses,
    response_space,
    token_name,
)
from impl.sequence_space import BoolArray as BoolArray  # properties.sequence imports it from here
from impl.types import FloatArray, IntArray

MAX_BATCHES = 1 << 22
"""Largest number of batches ``R**(k P)`` :func:`enumerate_batches` will build."""

RewardFn = Callable[[IntArray, IntArray], Any]
"""``fn(tokens (R, T), lengths (R,)) -> (R,)``: a vectorised reward on all responses."""


# --------------------------------------------------------------------------- validation


def _theta(space: ResponseSpace, value: Any, name: str) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"Expected a float array but got {describe(name, value)}") from exc
    if arr.ndim != 3 or arr.shape[1:] != (space.num_rows, space.vocab_size) or arr.shape[0] < 1:
        raise InvalidArgument(
            f"Expected {name} of shape (P, {space.num_rows}, {space.vocab_size}) "
            f"(P prompts, N+1 nodes, V tokens) but got {describe(name, value)}"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidArgument(f"Expected finite values but got {describe(name, value)}")
    return arr


def _rewards(space: ResponseSpace, value: Any, num_prompts: int) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"Expected a float array but got {describe('rewards', value)}"
        ) from exc
    if arr.shape != (num_prompts, space.num_responses):
        raise InvalidArgument(
            f"Expected rewards of shape (P, R) = ({num_prompts}, {space.num_responses}) but got "
            f"{describe('rewards', value)}"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidArgument(f"Expected finite rewards but got {describe('rewards', value)}")
    return arr


def _kl_args(
    space: ResponseSpace, theta: FloatArray, kl_coef: Any, ref_theta: Any
) -> tuple[float, FloatArray | None]:
    if isinstance(kl_coef, bool) or not isinstance(kl_coef, int | float | np.floating | np.integer):
        raise InvalidArgument(
            f"Expected a float kl_coef >= 0 but got {describe('kl_coef', kl_coef)}"
        )
    beta = float(kl_coef)
    if not (math.isfinite(beta) and beta >= 0):
        raise InvalidArgument(
            f"Expected a finite kl_coef >= 0 but got {describe('kl_coef', kl_coef)}"
        )
    if ref_theta is None:
        if beta > 0:
            raise InvalidArgument("kl_coef > 0 needs ref_theta (the reference policy's logits)")
        return beta, None
    ref = _theta(space, ref_theta, "ref_theta")
    if ref.shape != theta.shape:
        raise InvalidArgument(
            f"Expected ref_theta of the same shape as theta {theta.shape} but got "
            f"{describe('ref_theta', ref_theta)}"
        )
    return beta, ref


# --------------------------------------------------------------------------- the policy


def node_log_probs(theta: Any) -> FloatArray:
    r""":math:`\log\pi(v \mid n) = \theta_{n,v} - \log\sum_u e^{\theta_{n,u}}` for every node (last axis).

    >>> node_log_probs(np.zeros((1, 2, 2))).round(6).tolist()
    [[[-0.693147, -0.693147], [-0.693147, -0.693147]]]
    """
    arr = np.asarray(theta, dtype=np.float64)
    top = arr.max(axis=-1, keepdims=True)
    shifted = arr - top
    out: FloatArray = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return out


def token_log_probs(space: ResponseSpace, theta: Any) -> FloatArray:
    r""":math:`\log\pi(y_t \mid \mathrm{node}_t)` for every response and position, ``(P, R, T)``.

    Padding positions are included: they read token 0 at the after-the-end node (the
    ``log_probs`` a :class:`properties.SequenceBatch` carries; mask them out to get
    :func:`sequence_log_probs`).

    >>> s = response_space(2, 2)
    >>> token_log_probs(s, np.zeros((1, s.num_rows, 2))).round(4).tolist()
    [[[-0.6931, -0.6931], [-0.6931, -0.6931], [-0.6931, -0.6931]]]
    """
    th = _theta(space, theta, "theta")
    logp = node_log_probs(th)
    out: FloatArray = logp[:, space.nodes, space.tokens]
    return out


def sequence_log_probs(space: ResponseSpace, theta: Any) -> FloatArray:
    r""":math:`\log\pi_p(y) = \sum_{t<|y|}\log\pi_p(y_t \mid y_{<t})` for every prompt and response, ``(P, R)``.

    >>> s = response_space(3, 2)
    >>> (sequence_log_probs(s, np.zeros((1, s.num_rows, 3))) / np.log(1 / 3)).tolist()
    [[1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]]
    """
    out: FloatArray = (token_log_probs(space, theta) * space.mask).sum(axis=-1)
    return out


def response_probs(space: ResponseSpace, theta: Any) -> FloatArray:
    r""":math:`\pi_p(y) = \exp\log\pi_p(y)`, ``(P, R)``; each row sums to 1.

    >>> s = response_space(2, 3)
    >>> response_probs(s, np.zeros((1, s.num_rows, 2))).tolist()
    [[0.5, 0.25, 0.125, 0.125]]
    """
    out: FloatArray = np.exp(sequence_log_probs(space, theta))
    return out


def sequence_kl(space: ResponseSpace, theta: Any, ref_theta: Any) -> FloatArray:
    r"""The sequence-level reverse KL per prompt, ``(P,)``:

    :math:`\mathrm{KL}(\pi_p\|\pi_{\mathrm{ref},p}) = \sum_y \pi_p(y)(\log\pi_p(y) - \log\pi_{\mathrm{ref},p}(y))`.

    >>> s = response_space(2, 1)
    >>> theta = np.zeros((1, s.num_rows, 2))
    >>> ref = theta.copy(); ref[0, 0] = [np.log(3.0), 0.0]  # ref: 3/4 EOS, 1/4 'a'
    >>> kl = float(sequence_kl(s, theta, ref)[0])   # 1/2 log(2/3) + 1/2 log 2 = 1/2 log(4/3)
    >>> round(kl, 6), round(0.5 * math.log(4 / 3), 6)
    (0.143841, 0.143841)
    """
    th = _theta(space, theta, "theta")
    ref = _theta(space, ref_theta, "ref_theta")
    if ref.shape != th.shape:
        raise InvalidArgument(
            f"Expected ref_theta of shape {th.shape} but got {describe('ref_theta', ref_theta)}"
        )
    lp = sequence_log_probs(space, th)
    out: FloatArray = (np.exp(lp) * (lp - sequence_log_probs(space, ref))).sum(axis=-1)
    return out


def sequence_objective(
    space: ResponseSpace,
    theta: Any,
    rewards: Any,
    *,
    kl_coef: float = 0.0,
    ref_theta: Any = None,
) -> float:
    r"""The objective, the mean over the ``P`` prompts.

    .. math::

        J(\theta) = \frac1P\sum_p \big(\sum_y \pi_p(y) R_p(y)
        - \beta\,\mathrm{KL}(\pi_p\|\pi_{\mathrm{ref},p})\big)

    ``rewards`` is the table ``(P, R)``; ``kl_coef`` is :math:`\beta` (``ref_theta``
    required when it is positive).

    >>> s = response_space(2, 2)
    >>> sequence_objective(s, np.zeros((1, s.num_rows, 2)), [[0.0, 1.0, 2.0]])  # 0/2 + 1/4 + 2/4
    0.75
    """
    th = _theta(space, theta, "theta")
    r = _rewards(space, rewards, th.shape[0])
    beta, ref = _kl_args(space, th, kl_coef, ref_theta)
    lp = sequence_log_probs(space, th)
    p = np.exp(lp)
    total = float((p * r).sum())
    if beta > 0 and ref is not None:
        total -= beta * float((p * (lp - sequence_log_probs(space, ref))).sum())
    return total / int(th.shape[0])


def advantages(
    space: ResponseSpace,
    theta: Any,
    rewards: Any,
    *,
    kl_coef: float = 0.0,
    ref_theta: Any = None,
) -> FloatArray:
    r"""The per-response weight of the exact gradient, ``(P, R)``:

    :math:`A_p(y) = R_p(y) - \beta\big(\log\pi_p(y) - \log\pi_{\mathrm{ref},p}(y)\big)`, so that

    :math:`\nabla J = \frac1P\sum_p\sum_y \pi_p(y) A_p(y) \nabla\log\pi_p(y)`.

    >>> s = response_space(2, 1)
    >>> advantages(s, np.zeros((1, s.num_rows, 2)), [[1.0, 2.0]]).tolist()
    [[1.0, 2.0]]
    """
    th = _theta(space, theta, "theta")
    r = _rewards(space, rewards, th.shape[0])
    beta, ref = _kl_args(space, th, kl_coef, ref_theta)
    if beta == 0 or ref is None:
        same: FloatArray = r.copy()
        return same
    out: FloatArray = r - beta * (sequence_log_probs(space, th) - sequence_log_probs(space, ref))
    return out


def sequence_gradient(
    space: ResponseSpace,
    theta: Any,
    rewards: Any,
    *,
    kl_coef: float = 0.0,
    ref_theta: Any = None,
) -> FloatArray:
    r"""The exact :math:`\nabla_\theta J`, shape ``(P, N + 1, V)`` (row ``N`` is 0).

    With :math:`A` from :func:`advantages`, :math:`Q(n, v) = E[A(y) \mid y \text{ passes
    through } n \text{ then } v]`, :math:`\rho(n)` the probability of reaching node ``n``:

    .. math::

        \frac{\partial J}{\partial\theta_{n,v}} = \rho(n)\,\pi(v\mid n)
        \sum_u \pi(u\mid n)\,\big(Q(n,v) - Q(n,u)\big),

    (divided by ``P``: :math:`J` is the prompts' mean), which equals
    :math:`\sum_y \pi(y) A(y)\,\partial_{\theta_{n,v}}\log\pi(y)` and keeps its
    relative precision at near-deterministic nodes (no difference of two large sums).
    ``Q`` comes from a backward recursion over the ``T`` depths.

    >>> s = response_space(2, 1)   # two responses, '<eos>' and 'a', one node
    >>> sequence_gradient(s, np.zeros((1, s.num_rows, 2)), [[0.0, 1.0]]).tolist()
    [[[-0.25, 0.25], [0.0, 0.0]]]
    """
    th = _theta(space, theta, "theta")
    a = advantages(space, th, rewards, kl_coef=kl_coef, ref_theta=ref_theta)
    logp = node_log_probs(th)[:, : space.num_nodes]  # (P, N, V)
    pi = np.exp(logp)
    q = _q_values(space, pi, a)
    # sum_u pi_u (Q_v - Q_u), written without forming Q_v - sum_u pi_u Q_u
    spread = (pi[:, :, None, :] * (q[:, :, :, None] - q[:, :, None, :])).sum(axis=-1)
    reach = np.exp(node_prefix_log_probs(space, th))
    out = np.zeros_like(th)
    out[:, : space.num_nodes] = reach[:, :, None] * pi * spread / th.shape[0]
    return out


def _q_values(space: ResponseSpace, pi: FloatArray, a: FloatArray) -> FloatArray:
    """``Q[p, n, v]`` by backward recursion over depths (``pi`` ``(P, N, V)``, ``a`` ``(P, R)``)."""
    n = space.num_nodes
    q = np.zeros((a.shape[0], n, space.vocab_size))
    value = np.zeros((a.shape[0], n))
    off = space.depth_offsets
    for d in range(space.max_len - 1, -1, -1):
        lo, hi = int(off[d]), int(off[d + 1])
        leaves = space.leaves[lo:hi]
        children = space.children[lo:hi]
        qd = np.where(
            leaves[None] >= 0, a[:, np.maximum(leaves, 0)], value[:, np.maximum(children, 0)]
        )
        q[:, lo:hi] = qd
        value[:, lo:hi] = (pi[:, lo:hi] * qd).sum(axis=-1)
    return q


def node_values(space: ResponseSpace, theta: Any, rewards: Any) -> FloatArray:
    r"""The exact value :math:`V(n) = E_\pi[R(y) \mid y \text{ passes through } n]` of every node,
    ``(P, N + 1)`` (0 for the after-the-end node: nothing is left to earn there).

    >>> s = response_space(2, 1)   # '<eos>' (R = 0) and 'a' (R = 1) at even odds
    >>> node_values(s, np.zeros((1, s.num_rows, 2)), [[0.0, 1.0]]).tolist()
    [[0.5, 0.0]]
    """
    th = _theta(space, theta, "theta")
    r = _rewards(space, rewards, th.shape[0])
    pi = np.exp(node_log_probs(th)[:, : space.num_nodes])
    q = _q_values(space, pi, r)
    out = np.zeros(th.shape[:2])
    out[:, : space.num_nodes] = (pi * q).sum(axis=-1)
    return out


def node_prefix_log_probs(space: ResponseSpace, theta: Any) -> FloatArray:
    r""":math:`\log\rho_p(n)`, the log-probability of generating node ``n``'s prefix, ``(P, N)``.

    >>> s = response_space(3, 2)
    >>> np.exp(node_prefix_log_probs(s, np.zeros((1, s.num_rows, 3)))).round(4).tolist()
    [[1.0, 0.3333, 0.3333]]
    """
    th = _theta(space, theta, "theta")
    logp = node_log_probs(th)
    positions = np.arange(space.max_len)
    live = positions[None, :] < space.node_depth[:, None]  # (N, T)
    # the node read at position t of node n's prefix: the node of its first t tokens
    anc = np.zeros((space.num_nodes, space.max_len), dtype=np.int64)
    code = np.zeros(space.num_nodes, dtype=np.int64)
    digits = np.clip(space.node_tokens - 1, 0, None)
    for t in range(space.max_len):
        anc[:, t] = space.depth_offsets[t] + code
        code = code * (space.vocab_size - 1) + digits[:, t]
    anc = np.where(live, anc, 0)
    out: FloatArray = (logp[:, anc, space.node_tokens] * live).sum(axis=-1)
    return out


def token_scores(space: ResponseSpace, theta: Any) -> FloatArray:
    r"""Per-position scores :math:`e_{y_t} - \pi(\cdot \mid \mathrm{node}_t)`, shape ``(P, R, T, V)``.

    Entry ``[p, r, t]`` lives in row ``nodes[r, t]`` of prompt ``p``'s block: it is
    :math:`\nabla_{\theta_{\mathrm{node}_t}} \log\pi(y_t \mid \mathrm{node}_t)`, padding
    positions included (token 0 at the after-the-end node).

    >>> s = response_space(2, 1)
    >>> token_scores(s, np.zeros((1, s.num_rows, 2))).tolist()
    [[[[0.5, -0.5]], [[-0.5, 0.5]]]]
    """
    th = _theta(space, theta, "theta")
    pi = np.exp(node_log_probs(th))
    out: FloatArray = np.eye(space.vocab_size)[space.tokens][None] - pi[:, space.nodes]
    return out


def sequence_score(space: ResponseSpace, theta: Any) -> FloatArray:
    r""":math:`\nabla_\theta\log\pi_p(y)` for every response, shape ``(P, R, N + 1, V)``.

    The sum over the response's positions of :func:`token_scores`, each in its node's row
    (padding excluded, so row ``N`` is 0).

    >>> s = response_space(2, 2)
    >>> sequence_score(s, np.zeros((1, s.num_rows, 2)))[0, 1].tolist()  # 'a <eos>'
    [[-0.5, 0.5], [0.5, -0.5], [0.0, 0.0]]
    """
    th = _theta(space, theta, "theta")
    per = token_scores(space, th) * space.mask[None, :, :, None]
    p = th.shape[0]
    flat = np.arange(space.num_responses)[:, None] * space.num_rows + space.nodes  # (R, T)
    out = np.zeros((p, space.num_responses * space.num_rows, space.vocab_size))
    for v in range(space.vocab_size):
        for i in range(p):
            out[i, :, v] = np.bincount(
                flat.ravel(), weights=per[i, :, :, v].ravel(), minlength=out.shape[1]
            )
    return out.reshape(p, space.num_responses, space.num_rows, space.vocab_size)


# --------------------------------------------------------------------------- batches


def enumerate_batches(space: ResponseSpace, k: int, num_prompts: int = 1) -> IntArray:
    """All ``R**(k P)`` batches as response indices ``(G, P*k)``, prompt-major, lexicographic.

    Row ``j`` of a batch answers prompt ``j // k``.

    >>> s = response_space(2, 1)
    >>> enumerate_batches(s, 2).tolist()
    [[0, 0], [0, 1], [1, 0], [1, 1]]
    >>> enumerate_batches(s, 1, num_prompts=2).shape
    (4, 2)
    """
    k = positive_int(k, "k")
    p = positive_int(num_prompts, "num_prompts")
    b = k * p
    g = space.num_responses**b
    if g > MAX_BATCHES:
        raise InvalidArgument(
            f"R**(k*P) = {g} batches exceeds MAX_BATCHES={MAX_BATCHES} "
            f"(R={space.num_responses}, k={k}, num_prompts={p})"
        )
    out: IntArray = np.indices((space.num_responses,) * b, dtype=np.int64).reshape(b, -1).T.copy()
    return out


def batch_probs(space: ResponseSpace, theta_old: Any, k: int) -> FloatArray:
    r""":math:`\prod_{j} \pi_{\mathrm{old},p_j}(y_j)` for every batch of :func:`enumerate_batches`, ``(G,)``.

    ``theta_old`` ``(P, N+1, V)`` is the behaviour policy (``theta`` itself on-policy);
    the batches are lexicographic, so this is the outer product of the rows' response
    distributions (no ``(G, B)`` temporary).

    >>> s = response_space(2, 1)
    >>> batch_probs(s, np.zeros((1, s.num_rows, 2)), 2).tolist()
    [0.25, 0.25, 0.25, 0.25]
    """
    th = _theta(space, theta_old, "theta_old")
    k = positive_int(k, "k")
    probs = response_probs(space, th)
    out: FloatArray = np.ones(1)
    for p in range(th.shape[0]):
        for _ in range(k):
            out = np.multiply.outer(out, probs[p]).ravel()
    return out


def batch_prompts(k: int, num_prompts: int) -> IntArray:
    """The ``group`` index of a batch's rows: ``row // k``, shape ``(P*k,)``.

    >>> batch_prompts(2, 2).tolist()
    [0, 0, 1, 1]
    """
    k = positive_int(k, "k")
    p = positive_int(num_prompts, "num_prompts")
    out: IntArray = np.repeat(np.arange(p, dtype=np.int64), k)
    return out


def batch_logits(space: ResponseSpace, theta: Any, batches: Any, k: int) -> FloatArray:
    r"""The logits every position of every batch reads, ``theta[row // k, nodes[y_row, t]]``: ``(G, B, T, V)``.

    >>> s = response_space(2, 1)
    >>> theta = np.arange(4.0).reshape(1, 2, 2)
    >>> batch_logits(s, theta, [[0, 1]], 2).tolist()
    [[[[0.0, 1.0]], [[0.0, 1.0]]]]
    """
    th = _theta(space, theta, "theta")
    ids = _batches(space, batches, k, th.shape[0])
    rows = node_rows(space, ids, k)
    flat = th.reshape(-1, space.vocab_size)
    out: FloatArray = flat[rows]
    return out


def node_rows(space: ResponseSpace, batches: Any, k: int) -> IntArray:
    r"""For each batch position, its row in ``theta.reshape(P*(N+1), V)``: ``(row // k) (N+1) + node``, ``(G, B, T)``.

    >>> s = response_space(2, 1)
    >>> node_rows(s, [[1, 0, 1, 1]], 2).tolist()
    [[[0], [0], [2], [2]]]
    """
    ids = np.asarray(batches, dtype=np.int64)
    k = positive_int(k, "k")
    if ids.ndim != 2 or ids.shape[1] % k:
        raise InvalidArgument(
            f"Expected batches of shape (G, P*k) with k={k} but got {describe('batches', batches)}"
        )
    prompt = np.arange(ids.shape[1]) // k
    out: IntArray = (prompt[None, :, None] * space.num_rows + space.nodes[ids]).astype(np.int64)
    return out


def _batches(space: ResponseSpace, batches: Any, k: int, num_prompts: int) -> IntArray:
    ids = np.asarray(batches)
    if (
        ids.ndim != 2
        or not np.issubdtype(ids.dtype, np.integer)
        or ids.shape[1] != k * num_prompts
        or (ids.size and (ids.min() < 0 or ids.max() >= space.num_responses))
    ):
        raise InvalidArgument(
            f"Expected response indices of shape (G, {k * num_prompts}) in 0..{space.num_responses - 1} "
            f"but got {describe('batches', batches)}"
        )
    return ids.astype(np.int64, copy=False)


def scatter_positions(
    space: ResponseSpace, batches: Any, k: int, num_prompts: int, values: Any
) -> FloatArray:
    r"""Sum per-position vectors into ``theta``'s shape, per batch: ``(G, B, T, V) -> (G, P, N+1, V)``.

    ``out[g, p, n] = sum over rows j of prompt p and positions t with nodes[y_j, t] = n of
    values[g, j, t]``: how a gradient with respect to every batch's logits (from
    :func:`batch_logits`) becomes a gradient with respect to ``theta``.

    >>> s = response_space(2, 1)
    >>> scatter_positions(s, [[0, 1]], 2, 1, np.ones((1, 2, 1, 2))).tolist()
    [[[[2.0, 2.0], [0.0, 0.0]]]]
    """
    ids = _batches(space, batches, k, num_prompts)
    vals = np.asarray(values, dtype=np.float64)
    g = ids.shape[0]
    if vals.shape != (g, ids.shape[1], space.max_len, space.vocab_size):
        raise InvalidArgument(
            f"Expected values of shape {(g, ids.shape[1], space.max_len, space.vocab_size)} but got "
            f"{describe('values', values)}"
        )
    block = num_prompts * space.num_rows
    flat = (np.arange(g)[:, None, None] * block + node_rows(space, ids, k)).ravel()
    out = np.empty((g * block, space.vocab_size))
    per = vals.reshape(-1, space.vocab_size)
    for v in range(space.vocab_size):
        out[:, v] = np.bincount(flat, weights=per[:, v], minlength=g * block)
    return out.reshape(g, num_prompts, space.num_rows, space.vocab_size)


def greedy_tokens(space: ResponseSpace, theta: Any) -> IntArray:
    """Each prompt's greedy response (argmax at every node, ties to the lowest id), padded: ``(P, T)``.

    >>> s = response_space(3, 3)
    >>> theta = np.zeros((1, s.num_rows, 3)); theta[0, 0] = [0.0, 1.0, 1.0]
    >>> greedy_tokens(s, theta).tolist()   # 'a', then a tie at node 'a': EOS
    [[1, 0, 0]]
    """
    th = _theta(space, theta, "theta")
    best = np.argmax(th[:, : space.num_nodes], axis=-1)  # first maximum: lowest id
    p = th.shape[0]
    out = np.zeros((p, space.max_len), dtype=np.int64)
    node = np.zeros(p, dtype=np.int64)
    alive = np.ones(p, dtype=bool)
    for t in range(space.max_len):
        tok = np.where(alive, best[np.arange(p), np.minimum(node, space.num_nodes - 1)], 0)
        out[:, t] = tok
        child = space.children[np.minimum(node, space.num_nodes - 1), tok]
        alive = alive & (tok != EOS) & (child >= 0)
        node = np.where(alive, child, 0)
    return out


def reward_table(space: ResponseSpace, *fns: RewardFn) -> FloatArray:
    """A ``(P, R)`` reward table, one vectorised ``fn(tokens (R, T), lengths (R,)) -> (R,)`` per prompt.

    >>> s = response_space(3, 2)
    >>> count_a = lambda tokens, lengths: (tokens == 1).sum(axis=1)
    >>> reward_table(s, count_a, lambda tokens, lengths: -lengths).tolist()
    [[0.0, 1.0, 2.0, 1.0, 0.0, 1.0, 0.0], [-1.0, -2.0, -2.0, -2.0, -2.0, -2.0, -2.0]]
    """
    if not fns:
        raise InvalidArgument("reward_table needs at least one reward function (one per prompt)")
    rows = []
    for i, fn in enumerate(fns):
        raw = fn(space.tokens.copy(), space.lengths.copy())
        row = np.asarray(raw, dtype=np.float64)
        if row.shape != (space.num_responses,) or not np.all(np.isfinite(row)):
            raise InvalidArgument(
                f"Expected reward function {i} to return {space.num_responses} finite values but got "
                f"{describe('rewards', raw)}"
            )
        rows.append(row)
    return np.stack(rows)


def random_theta(
    space: ResponseSpace, rng: np.random.Generator, *, num_prompts: int = 1, scale: float = 1.0
) -> FloatArray:
    """Logits ``(P, N+1, V)`` with iid normal entries of standard deviation ``scale``.

    >>> s = response_space(2, 2)
    >>> random_theta(s, np.random.default_rng(0), num_prompts=2).shape
    (2, 3, 2)
    """
    if not isinstance(rng, np.random.Generator):
        raise InvalidArgument(f"Expected a numpy Generator but got {describe('rng', rng)}")
    p = positive_int(num_prompts, "num_prompts")
    out: FloatArray = rng.normal(0.0, float(scale), size=space.theta_shape(p))
    return out


__all__ = [
    "EOS",
    "MAX_BATCHES",
    "MAX_ENUMERATED",
    "MAX_VOCAB",
    "ResponseSpace",
    "RewardFn",
    "advantages",
    "batch_logits",
    "batch_probs",
    "batch_prompts",
    "enumerate_batches",
    "format_tokens",
    "greedy_tokens",
    "node_log_probs",
    "node_prefix_log_probs",
    "node_rows",
    "node_values",
    "num_responses",
    "random_theta",
    "response_probs",
    "response_space",
    "reward_table",
    "scatter_positions",
    "sequence_gradient",
    "sequence_kl",
    "sequence_log_probs",
    "sequence_objective",
    "sequence_score",
    "token_log_probs",
    "token_name",
    "token_scores",
]
