r"""A brute-force oracle for sequence-level losses: itertools over every batch, autograd per batch.

Slow and obviously right, for the corpus tests only (the engine in ``properties`` is what users
run).  It follows ``design/sequence.md`` literally:

* responses over a vocabulary of ``V`` tokens (0 is EOS = padding) end at their first EOS or
  after ``T`` tokens; every live prefix is a node with its own ``V`` logits and padding
  positions read one extra *after-the-end* node;
* a batch is ``P`` prompts x ``k`` responses, prompt-major, drawn from ``pi_old`` (``pi_theta``
  on-policy); :math:`E[g] = \sum_{\text{batches}} \prod_{\text{rows}} \pi_{old}(y)\; g(\text{batch})`
  with :math:`g = -\nabla_\theta\,\text{loss}`, one ``torch.autograd.grad`` per batch;
* the target is the prompts' mean, :math:`\nabla J = \frac1P\sum_p \sum_y \pi_p(y)\,(R_p(y) -
  \beta(\log\pi_p(y) - \log\pi_{ref,p}(y)))\,\nabla\log\pi_p(y)`.

The verdict: per problem, fit :math:`E[g] = c\,\nabla J` by least squares; a residual above
the tolerance is "biased"; ``c`` must be positive and the same for every problem that shares
``(k, T, P)``; "unbiased" when every ``c`` is 1.  An exception, a non-scalar or a non-finite
loss is "error".  :func:`judge` also returns the verdict at float32 precision
(:data:`FLOAT32_RTOL`), to tell round-off from bias.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from properties.sequence.batch import EOS_TOKEN_ID, SequenceBatch

FLOAT64_RTOL = 1e-10
"""Residual tolerance relative to ``max(E|g|, |grad J|)``.  The sums run over at most a few
thousand batches in float64 (relative round-off ~1e-15 observed for exact estimators), so 1e-10
leaves five orders of margin while a float32 step inside the loss (~1e-8 relative) exceeds it."""

FLOAT32_RTOL = 1e-5
"""The same tolerance at float32 precision (eps 1.2e-7, times ~100 for the operations of a
loss): a residual below it and above :data:`FLOAT64_RTOL` is round-off, not bias."""

EARLY_STOP_RTOL = 1e-3
""":func:`run_oracle` stops enumerating once a problem's residual exceeds this: a hundred
times :data:`FLOAT32_RTOL`, so that the float32 verdict is not decided by a borderline case."""

DEGENERATE_RTOL = 1e-8
"""A problem whose ``|grad J|`` is below this fraction of ``E|g|`` cannot be fitted; skipped."""

LOGIT_SCALE = 1.0
"""Standard deviation of the random logits of ``theta``, ``theta_old`` and ``theta_ref``."""

ZERO_REWARD_FRACTION = 0.25
"""Fraction of reward-table entries set to exactly 0.0 (RLVR rewards are often 0/1; code such
as ``count_nonzero(rewards)`` behaves differently on exact zeros)."""

Key = tuple[int, int, int]
"""``(k, T, P)``: a "scaled" verdict allows one constant per key."""


@dataclass(frozen=True)
class Space:
    """All responses for ``vocab_size`` tokens and ``max_len`` positions, padded."""

    vocab_size: int
    max_len: int
    num_nodes: int  # live prefixes; the after-the-end node has index num_nodes
    tokens: np.ndarray  # (R, T) int64, padded with EOS
    mask: np.ndarray  # (R, T) float64
    nodes: np.ndarray  # (R, T) int64 node read at each position
    index_of: dict[tuple[int, ...], int]  # padded token tuple -> response index

    @property
    def num_responses(self) -> int:
        return int(self.tokens.shape[0])


def build_space(vocab_size: int, max_len: int) -> Space:
    """Enumerate prefixes and responses.

    >>> s = build_space(3, 3)
    >>> (s.num_nodes, s.num_responses)
    (7, 15)
    >>> (build_space(2, 3).num_responses, build_space(3, 2).num_responses)
    (4, 7)
    """
    live = [p for t in range(max_len) for p in itertools.product(range(1, vocab_size), repeat=t)]
    node_of = {p: i for i, p in enumerate(live)}
    responses = [(*p, EOS_TOKEN_ID) for p in live]
    responses += list(itertools.product(range(1, vocab_size), repeat=max_len))
    n, r = len(live), len(responses)
    tokens = np.full((r, max_len), EOS_TOKEN_ID, dtype=np.int64)
    mask = np.zeros((r, max_len))
    nodes = np.full((r, max_len), n, dtype=np.int64)
    for i, y in enumerate(responses):
        tokens[i, : len(y)] = y
        mask[i, : len(y)] = 1.0
        for t in range(len(y)):
            nodes[i, t] = node_of[y[:t]]
    index_of = {tuple(int(v) for v in row): i for i, row in enumerate(tokens)}
    return Space(vocab_size, max_len, n, tokens, mask, nodes, index_of)


@dataclass(frozen=True)
class Problem:
    """One exactly enumerated problem: shapes, objective and the seed of its random tables."""

    vocab_size: int
    max_len: int
    group_size: int
    num_prompts: int
    kl_coef: float = 0.0
    off_policy: bool = False
    seed: int = 0

    @property
    def key(self) -> Key:
        return (self.group_size, self.max_len, self.num_prompts)


def _log_softmax(theta: np.ndarray) -> np.ndarray:
    z = theta - theta.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class Instance:
    """The random tables of a problem and everything exact about it."""

    problem: Problem
    space: Space
    theta: np.ndarray  # (P, N+1, V)
    theta_old: np.ndarray
    theta_ref: np.ndarray
    rewards: np.ndarray  # (P, R)
    log_pi: np.ndarray  # (P, R)
    log_pi_old: np.ndarray
    log_pi_ref: np.ndarray
    greedy: np.ndarray  # (P, T) int64
    grad_j: np.ndarray = field(repr=False)  # (P, N+1, V)


def _sequence_log_probs(space: Space, theta: np.ndarray) -> np.ndarray:
    logsm = _log_softmax(theta)  # (P, N+1, V)
    per_token = logsm[:, space.nodes, space.tokens]  # (P, R, T)
    return np.asarray((per_token * space.mask).sum(axis=-1))


def _greedy(space: Space, theta_p: np.ndarray) -> np.ndarray:
    out = np.full(space.max_len, EOS_TOKEN_ID, dtype=np.int64)
    prefix: tuple[int, ...] = ()
    node_of = {tuple(int(v) for v in space.tokens[i, :t]): int(space.nodes[i, t])
               for i in range(space.num_responses) for t in range(space.max_len)
               if space.mask[i, t] > 0}
    for t in range(space.max_len):
        a = int(np.argmax(theta_p[node_of[prefix]]))  # ties -> lowest token id
        out[t] = a
        if a == EOS_TOKEN_ID:
            break
        prefix = (*prefix, a)
    return out


def make_instance(problem: Problem) -> Instance:
    """Draw the tables of ``problem`` from its seed and compute ``grad J`` exactly."""
    space = build_space(problem.vocab_size, problem.max_len)
    rng = np.random.default_rng(problem.seed)
    shape = (problem.num_prompts, space.num_nodes + 1, problem.vocab_size)
    theta = rng.normal(0.0, LOGIT_SCALE, shape)
    theta_old = rng.normal(0.0, LOGIT_SCALE, shape) if problem.off_policy else theta.copy()
    theta_ref = rng.normal(0.0, LOGIT_SCALE, shape)
    rewards = rng.normal(0.0, 1.0, (problem.num_prompts, space.num_responses))
    rewards[rng.random(rewards.shape) < ZERO_REWARD_FRACTION] = 0.0
    log_pi = _sequence_log_probs(space, theta)
    log_pi_old = _sequence_log_probs(space, theta_old)
    log_pi_ref = _sequence_log_probs(space, theta_ref)
    # grad J = 1/P sum_p sum_y pi(y) (R(y) - beta (log pi - log pi_ref)) grad log pi(y)
    weight = np.exp(log_pi) * (rewards - problem.kl_coef * (log_pi - log_pi_ref))  # (P, R)
    probs = np.exp(_log_softmax(theta))
    grad_j = np.zeros(shape)
    for p in range(problem.num_prompts):
        for i in range(space.num_responses):
            for t in range(int(space.mask[i].sum())):
                node, tok = space.nodes[i, t], space.tokens[i, t]
                grad_j[p, node] -= weight[p, i] * probs[p, node]
                grad_j[p, node, tok] += weight[p, i]
    grad_j /= problem.num_prompts  # the mean over prompts
    greedy = np.stack([_greedy(space, theta[p]) for p in range(problem.num_prompts)])
    return Instance(problem, space, theta, theta_old, theta_ref, rewards, log_pi, log_pi_old,
                    log_pi_ref, greedy, grad_j)


class LossFailure(Exception):
    """The loss raised, or returned something that is not a finite scalar tensor."""


@dataclass(frozen=True)
class Expectation:
    """``E[g]``, ``E|g|`` (elementwise) and ``grad J`` of one problem, flattened."""

    problem: Problem
    mean_g: np.ndarray
    mean_abs_g: np.ndarray
    grad_j: np.ndarray
    batches: int


def _token_table(space: Space, theta: np.ndarray) -> np.ndarray:
    """``(P, R, T)`` token log-probabilities (padding positions read the after-the-end node)."""
    return np.asarray(_log_softmax(theta)[:, space.nodes, space.tokens])


def expectation(loss_fn: Callable[[SequenceBatch], Any], inst: Instance) -> Expectation:
    """Evaluate ``loss_fn`` on every batch of ``inst`` and average ``g = -grad loss``."""
    pr, sp = inst.problem, inst.space
    k, p_count = pr.group_size, pr.num_prompts
    rows_prompt = np.repeat(np.arange(p_count), k)
    pi_old = np.exp(inst.log_pi_old)  # (P, R)
    old_table = _token_table(sp, inst.theta_old)
    ref_table = _token_table(sp, inst.theta_ref)
    group = torch.from_numpy(rows_prompt.copy())
    greedy = torch.from_numpy(inst.greedy.copy())
    reward_table = inst.rewards

    def reward_fn(tokens: Any, grp: Any) -> torch.Tensor:
        idx = [sp.index_of[tuple(int(v) for v in row)] for row in torch.as_tensor(tokens).tolist()]
        g_rows = torch.as_tensor(grp).tolist()
        return torch.tensor([reward_table[g, i] for g, i in zip(g_rows, idx, strict=True)], dtype=torch.float64)

    total = np.zeros(inst.theta.shape)
    total_abs = np.zeros(inst.theta.shape)
    count = 0
    for combo in itertools.product(range(sp.num_responses), repeat=p_count * k):
        idx = np.asarray(combo)
        w = float(np.prod(pi_old[rows_prompt, idx]))
        nodes, tokens = sp.nodes[idx], sp.tokens[idx]
        x = torch.from_numpy(inst.theta[rows_prompt[:, None], nodes]).requires_grad_(True)
        log_probs = torch.log_softmax(x, dim=-1).gather(
            -1, torch.from_numpy(tokens)[..., None]).squeeze(-1)
        old = (log_probs.detach().clone() if not pr.off_policy
               else torch.from_numpy(old_table[rows_prompt, idx]))
        batch = SequenceBatch(
            logits=x, log_probs=log_probs, tokens=torch.from_numpy(tokens.copy()),
            mask=torch.from_numpy(sp.mask[idx].copy()),
            rewards=torch.from_numpy(reward_table[rows_prompt, idx].copy()),
            old_log_probs=old, ref_log_probs=torch.from_numpy(ref_table[rows_prompt, idx]),
            group=group.clone(), greedy_tokens=greedy.clone(), reward_fn=reward_fn,
            num_prompts=p_count, group_size=k, vocab_size=sp.vocab_size, max_len=sp.max_len,
            kl_coef=pr.kl_coef,
        )
        try:
            loss = loss_fn(batch)
        except Exception as exc:  # the corpus entry is the code under test
            raise LossFailure(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise LossFailure(f"loss is not a scalar tensor: {loss!r}")
        if not bool(torch.isfinite(loss.detach()).all()):
            raise LossFailure(f"non-finite loss {loss.item()!r} on responses {combo}")
        gx = (torch.autograd.grad(loss.reshape(()), x, allow_unused=True)[0]
              if loss.requires_grad else None)
        g = np.zeros(inst.theta.shape)
        if gx is not None:
            if not bool(torch.isfinite(gx).all()):
                raise LossFailure(f"non-finite gradient on responses {combo}")
            np.add.at(g, (rows_prompt[:, None], nodes), -gx.numpy())
        total += w * g
        total_abs += w * np.abs(g)
        count += 1
    return Expectation(pr, total.ravel(), total_abs.ravel(), inst.grad_j.ravel(), count)


@dataclass(frozen=True)
class OracleReport:
    """The oracle's verdict and its evidence."""

    verdict: str
    scales: dict[Key, float] | None
    worst_residual: float  # max over problems of the relative residual of the best fit
    float32_verdict: str  # the verdict at FLOAT32_RTOL (round-off told apart from bias)
    message: str
    batches: int = 0


def _verdict_at(results: Sequence[Expectation], rtol: float) -> tuple[str, dict[Key, float], str]:
    scales: dict[Key, list[float]] = {}
    for r in results:
        norm = max(float(r.mean_abs_g.max()), float(np.abs(r.grad_j).max()))
        if float(np.abs(r.mean_g).max()) <= rtol * norm:
            return "biased", {}, f"{r.problem}: E[g] = 0 while grad J != 0"
        gj2 = float(r.grad_j @ r.grad_j)
        if math.sqrt(gj2) <= DEGENERATE_RTOL * norm:
            continue
        c = float(r.mean_g @ r.grad_j) / gj2
        resid = float(np.abs(r.mean_g - c * r.grad_j).max()) / norm
        if resid > rtol:
            return "biased", {}, f"{r.problem}: E[g] is not proportional to grad J " \
                                 f"(relative residual {resid:.3g} after the best c = {c:.6g})"
        scales.setdefault(r.problem.key, []).append(c)
    if not scales:
        return "biased", {}, "every problem was degenerate (grad J = 0)"
    out: dict[Key, float] = {}
    for key, cs in scales.items():
        lo, hi = min(cs), max(cs)
        if hi - lo > rtol * max(abs(lo), abs(hi)):
            return "biased", {}, f"(k, T, P) = {key}: the factor varies between problems " \
                                 f"({lo:.12g} .. {hi:.12g})"
        if lo <= rtol:
            return "biased", {}, f"(k, T, P) = {key}: E[g] = {lo:.3g} * grad J (not positive)"
        out[key] = float(np.mean(cs))
    if all(abs(c - 1.0) <= rtol for c in out.values()):
        return "unbiased", out, "E[g] = grad J on every problem"
    return "scaled", out, "E[g] = c(k, T, P) * grad J"


def judge(results: Sequence[Expectation]) -> OracleReport:
    """Verdict at float64 precision (strict) and at float32 precision."""
    verdict, scales, message = _verdict_at(results, FLOAT64_RTOL)
    v32, _, _ = _verdict_at(results, FLOAT32_RTOL)
    worst = 0.0
    for r in results:
        norm = max(float(r.mean_abs_g.max()), float(np.abs(r.grad_j).max()))
        gj2 = float(r.grad_j @ r.grad_j)
        if gj2 > 0.0:
            c = float(r.mean_g @ r.grad_j) / gj2
            worst = max(worst, float(np.abs(r.mean_g - c * r.grad_j).max()) / norm)
    return OracleReport(verdict, scales if verdict in ("unbiased", "scaled") else None, worst,
                        v32, message, sum(r.batches for r in results))


def problems_for(*, group_sizes: Iterable[int], num_prompts: Iterable[int], kl_coef: float,
                 off_policy: bool, vocab_size: int, max_len: int,
                 seed: int = 0) -> list[Problem]:
    """A small problem set: two problems per ``(k, T, P)`` key for the smallest ``k``, one for
    the others (their factor is checked against the entry's closed form instead).

    One prompt: the two smallest ``k``; several prompts: the smallest ``k`` only, ``V = 2`` and
    ``T = 2``, so that a problem set stays at about 250 batches.  Shapes stay within
    ``vocab_size``/``max_len``; cheap problems come first (see :func:`run_oracle`).

    >>> [p.key for p in problems_for(group_sizes=(2, 3, 4), num_prompts=(1,), kl_coef=0.0,
    ...                             off_policy=False, vocab_size=3, max_len=3)]
    [(2, 2, 1), (2, 3, 1), (2, 2, 1), (2, 3, 1), (3, 2, 1), (3, 3, 1)]
    """
    shapes = {  # (P, k) -> (V, T) shapes, cheapest first; batch counts in the comments
        (1, 1): [(2, 2), (2, 3), (3, 2), (2, 3)],  # 3 + 4 + 7 + 4
        (1, 2): [(2, 2), (2, 3), (3, 2), (2, 3)],  # 9 + 16 + 49 + 16
        (1, 3): [(2, 2), (2, 3)],  # 27 + 64
        (2, 2): [(2, 2)],  # 81
    }
    out: list[Problem] = []
    s = seed
    for p in num_prompts:
        ks = sorted(group_sizes)[:2] if p == 1 else sorted(group_sizes)[:1]
        for k in ks:
            for v, t in shapes.get((p, k), shapes[(2, 2)] if p > 1 else shapes[(1, 3)]):
                if v <= vocab_size and t <= max_len:
                    out.append(Problem(v, t, k, p, kl_coef, off_policy, s))
                    s += 1
    return out


def _clearly_biased(r: Expectation) -> bool:
    """True when this problem alone shows a bias far beyond float32 round-off, or E[g] = 0."""
    norm = max(float(r.mean_abs_g.max()), float(np.abs(r.grad_j).max()))
    gj2 = float(r.grad_j @ r.grad_j)
    if math.sqrt(gj2) <= DEGENERATE_RTOL * norm:
        return False
    if float(np.abs(r.mean_g).max()) <= FLOAT32_RTOL * norm:
        return True  # E[g] = 0
    c = float(r.mean_g @ r.grad_j) / gj2
    return float(np.abs(r.mean_g - c * r.grad_j).max()) / norm > EARLY_STOP_RTOL


def run_oracle(loss_fn: Callable[[SequenceBatch], Any], problems: Sequence[Problem]) -> OracleReport:
    """Enumerate the problems in order and judge; an exception or bad output is "error".

    The enumeration stops at the first problem whose residual exceeds :data:`EARLY_STOP_RTOL`,
    or whose ``E[g]`` is 0 (the verdict is then "biased" at both precisions).  An error that only a later problem
    would show is missed; :func:`problems_for` puts the smallest ``k`` first.
    """
    results: list[Expectation] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second intra-op thread costs ~5x under load
    try:
        for p in problems:
            results.append(expectation(loss_fn, make_instance(p)))
            if _clearly_biased(results[-1]):
                break
    except LossFailure as exc:
        return OracleReport("error", None, math.nan, "error", str(exc))
    finally:
        torch.set_num_threads(threads)
    return judge(results)


__all__ = [
    "FLOAT32_RTOL",
    "FLOAT64_RTOL",
    "Expectation",
    "Instance",
    "OracleReport",
    "Problem",
    "Space",
    "build_space",
    "expectation",
    "judge",
    "make_instance",
    "problems_for",
    "run_oracle",
]
