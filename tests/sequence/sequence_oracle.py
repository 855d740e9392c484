r"""A brute-force oracle for sequence-level gradient estimators (test code only).

Deliberately slow and obviously right.  It is written from ``design/sequence.md`` and the
docstring of :class:`properties.sequence.batch.SequenceBatch` alone, shares no code with the
engine (``impl.sequence`` / ``properties.sequence.checker``), and uses nothing cleverer than
``itertools.product`` and one ``torch.autograd.grad`` per batch:

* :func:`make_space` lists the live prefixes (nodes) and the responses of a vocabulary of
  ``V`` tokens (token 0 is EOS) and maximum length ``T``; ``N = sum_{t<T} (V-1)^t`` nodes, one
  after-the-end node (index ``N``) read by padding positions, ``R = N + (V-1)^T`` responses.
* :func:`exact_objective` is
  :math:`J(\theta) = \frac1P\sum_p \sum_y \pi_p(y) R_p(y) - \beta\,\pi_p(y)(\log\pi_p(y) - \log\pi_{\mathrm{ref},p}(y))`
  summed response by response; :func:`exact_gradient` differentiates it with autograd.
* :func:`build_batch` builds the :class:`SequenceBatch` of one tuple of response indices
  (prompt-major rows, tokens padded with EOS, mask 1.0 on response tokens incl. EOS,
  ``log_probs`` gathered from ``log_softmax(logits)`` at every position, padding positions
  reading the after-the-end node, ``greedy_tokens`` under the current policy, ``reward_fn`` a
  table lookup).
* :func:`loss_expectation` / :func:`weights_expectation` visit every batch of ``P*k``
  responses (``(R^k)^P`` of them), one at a time, weight each batch's estimate by its
  probability under the behaviour policy and sum: :math:`E[g]`.  A loss's estimate is
  ``g = -d loss / d theta`` (autograd, per batch); a weight function's is
  :math:`\sum_{j,t} w_{jt}(e_{y_{jt}} - \mathrm{softmax}(\theta_{node_{jt}}))` in row ``node_jt``
  (the explicit score, not autograd).
* :func:`judge` turns the results of several problems into a verdict ``unbiased`` /
  ``scaled`` (one constant per ``(k, T, P)``) / ``biased`` / ``error``, or ``inconclusive``
  when a discrepancy is above round-off but not clearly so (a test treats that as a failure).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from properties.sequence.batch import EOS_TOKEN_ID, PAD_TOKEN_ID, SequenceBatch  # noqa: E402

EOS = EOS_TOKEN_ID
PAD = PAD_TOKEN_ID

ROUNDOFF_REL = 1e-9
"""Round-off budget per unit of the problem's largest |E g|, |grad J| (plus 1).

E[g] sums at most a few thousand float64 terms, each a short chain of softmax/log/gather
operations: the error is ~1e-14 of the largest term, so 1e-9 leaves five orders of margin."""

CLEAR_BIAS = 1e3
"""A discrepancy counts as a bias only above this many round-off budgets; between 1 and this
many the oracle says ``inconclusive`` (a test must then fail, not guess)."""

DETERMINISM_BATCHES = 3
"""The first batches of each problem are evaluated twice and must give identical gradients.

Over a problem set (a dozen problems, so ~36 repeated batches) an estimator that draws a
fresh random keep-mask per call escapes with probability < 1e-6 (each repeat of a batch with
>= 2 response tokens differs with probability >= 0.3 at a 90% keep rate)."""

WEIGHT_EXTRAS = ("group", "tokens", "old_log_probs", "ref_log_probs", "sampling_log_probs", "values")
"""Keyword-only arrays a weight function receives when its signature names them."""


# ----------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class Space:
    """Nodes (live prefixes, no EOS, length ``0..T-1``) and responses of ``(V, T)``."""

    vocab_size: int
    max_len: int
    nodes: tuple[tuple[int, ...], ...]
    responses: tuple[tuple[int, ...], ...]

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def after_the_end(self) -> int:
        """Index of the node read by padding positions."""
        return len(self.nodes)

    @property
    def num_responses(self) -> int:
        return len(self.responses)

    def node_index(self, prefix: tuple[int, ...]) -> int:
        return self.nodes.index(prefix)

    def padded(self, r: int) -> list[int]:
        y = self.responses[r]
        return list(y) + [PAD] * (self.max_len - len(y))

    def mask(self, r: int) -> list[float]:
        n = len(self.responses[r])
        return [1.0] * n + [0.0] * (self.max_len - n)

    def node_path(self, r: int) -> list[int]:
        """The node whose logits position ``t`` reads, for ``t = 0..T-1``."""
        y = self.responses[r]
        return [
            self.node_index(y[:t]) if t < len(y) else self.after_the_end
            for t in range(self.max_len)
        ]

    def render(self, r: int) -> str:
        names = ["<eos>"] + [chr(ord("a") + i) for i in range(self.vocab_size - 1)]
        y = self.responses[r]
        text = " ".join(names[t] for t in y)
        return text if y[-1] == EOS else text + " (truncated)"


@functools.cache
def make_space(vocab_size: int, max_len: int) -> Space:
    """All live prefixes and all responses, by brute force.

    A response is ``body + (EOS,)`` with a body of ``0..T-1`` non-EOS tokens, or ``T``
    non-EOS tokens (truncated).
    """
    live = range(1, vocab_size)
    nodes = tuple(p for n in range(max_len) for p in itertools.product(live, repeat=n))
    ended = [(*body, EOS) for n in range(max_len) for body in itertools.product(live, repeat=n)]
    truncated = list(itertools.product(live, repeat=max_len))
    return Space(vocab_size, max_len, nodes, tuple(ended + truncated))


# ----------------------------------------------------------------------------- policies


def response_log_prob(
    space: Space, theta_p: Any, r: int, *, logp: Any = None, tool_tokens: bool = False
) -> Any:
    """``log pi(y) = sum_{t < len(y)} log softmax(theta[node_t])[y_t]`` (a torch scalar).

    ``tool_tokens``: the terms of odd ``t`` (the environment's tokens) are detached.

    ``logp`` may pass ``log_softmax(theta_p, -1)`` already computed (same value)."""
    if logp is None:
        logp = torch.log_softmax(theta_p, dim=-1)
    y = space.responses[r]
    total = torch.zeros((), dtype=torch.float64)
    for t in range(len(y)):
        # a tool's token (odd t with tool_tokens): the environment's fixed distribution, whose
        # value here is the table's but which does not depend on the policy's parameters
        term = logp[space.node_index(y[:t]), y[t]]
        total = total + (term.detach() if tool_tokens and t % 2 == 1 else term)
    return total


def response_probs(space: Space, theta: np.ndarray) -> np.ndarray:
    """``(P, R)`` probabilities of every response under every prompt's policy."""
    th = torch.tensor(theta, dtype=torch.float64)
    return np.array(
        [
            [math.exp(float(response_log_prob(space, th[p], r))) for r in range(space.num_responses)]
            for p in range(th.shape[0])
        ]
    )


def greedy_response(space: Space, theta_p: np.ndarray) -> list[int]:
    """Greedy decoding (ties to the lowest id), padded to ``T``."""
    prefix: tuple[int, ...] = ()
    while len(prefix) < space.max_len:
        token = int(np.argmax(theta_p[space.node_index(prefix)]))  # first maximum = lowest id
        prefix = (*prefix, token)
        if token == EOS:
            break
    return list(prefix) + [PAD] * (space.max_len - len(prefix))


# ----------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """One policy problem: ``P`` prompts, ``k`` responses each, shapes ``(V, T)``.

    ``theta``, ``theta_ref`` (and ``theta_old`` off-policy, else ``None``) have shape
    ``(P, N+1, V)``; ``rewards[p, r]`` is prompt ``p``'s reward table.
    """

    vocab_size: int
    max_len: int
    group_size: int
    num_prompts: int
    theta: np.ndarray
    theta_old: np.ndarray | None
    theta_ref: np.ndarray
    rewards: np.ndarray
    kl_coef: float
    label: str = ""
    tool_tokens: bool = False
    theta_sampler: np.ndarray | None = None
    values: str = ""
    value_table: np.ndarray | None = None

    @property
    def key(self) -> tuple[int, int, int]:
        """``(k, T, P)``: a scaled estimator has one constant per key."""
        return (self.group_size, self.max_len, self.num_prompts)

    @property
    def num_batches(self) -> int:
        r = make_space(self.vocab_size, self.max_len).num_responses
        return int(r ** (self.group_size * self.num_prompts))

    def __repr__(self) -> str:
        return (
            f"Problem({self.label} V={self.vocab_size} T={self.max_len} k={self.group_size} "
            f"P={self.num_prompts} kl_coef={self.kl_coef} "
            f"off_policy={self.theta_old is not None} tool_tokens={self.tool_tokens} "
            f"sampling_mismatch={self.theta_sampler is not None} values={self.values!r})"
        )


def random_problem(
    rng: np.random.Generator,
    *,
    vocab_size: int,
    max_len: int,
    group_size: int,
    num_prompts: int = 1,
    off_policy: bool = False,
    kl_coef: float = 0.0,
    label: str = "",
    tool_tokens: bool = False,
    sampling_mismatch: bool = False,
    values: str = "",
) -> Problem:
    """Logits ``N(0, 1)`` for the policy, the reference and (off-policy) the behaviour policy;
    rewards ``N(0.5, 1)`` (a nonzero mean, so a missing baseline matters).

    ``tool_tokens``: the prefixes of odd length are the environment's; its next-token
    distribution is one for every policy, so the reference and behaviour copy ``theta`` there.
    ``sampling_mismatch``: the responses are drawn by an inference engine whose logits are the
    behaviour policy's plus ``N(0, 0.3)`` noise.  ``values``: ``"random"`` draws a critic's
    value per node ``N(0.5, 1)``; ``"exact"`` leaves it to :func:`node_value`.
    """
    space = make_space(vocab_size, max_len)
    shape = (num_prompts, space.num_nodes + 1, vocab_size)
    theta = rng.normal(size=shape)
    theta_ref = rng.normal(size=shape)
    theta_old = rng.normal(size=shape) if off_policy else None
    rewards = rng.normal(0.5, 1.0, size=(num_prompts, space.num_responses))
    theta_sampler = None
    if sampling_mismatch:
        base = theta if theta_old is None else theta_old
        theta_sampler = base + rng.normal(0.0, 0.3, size=shape)
    value_table = None
    if values == "random":
        value_table = rng.normal(0.5, 1.0, size=shape[:2])
    if tool_tokens:
        env = [i for i, prefix in enumerate(space.nodes) if len(prefix) % 2 == 1]
        for other in (theta_ref, theta_old, theta_sampler):
            if other is not None:
                other[:, env] = theta[:, env]
    return Problem(
        vocab_size, max_len, group_size, num_prompts, theta, theta_old, theta_ref, rewards,
        float(kl_coef), label, tool_tokens, theta_sampler, values, value_table,
    )


def exact_objective(problem: Problem, theta: Any) -> Any:
    """``J(theta)``, the mean over prompts, by enumeration (torch scalar, differentiable in ``theta``)."""
    space = make_space(problem.vocab_size, problem.max_len)
    ref = torch.tensor(problem.theta_ref, dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    for p in range(problem.num_prompts):
        table = torch.log_softmax(theta[p], dim=-1)
        ref_table = torch.log_softmax(ref[p], dim=-1)
        for r in range(space.num_responses):
            logp = response_log_prob(
                space, theta[p], r, logp=table, tool_tokens=problem.tool_tokens
            )
            pi = torch.exp(logp)
            total = total + pi * float(problem.rewards[p, r])
            if problem.kl_coef:
                logp_ref = response_log_prob(space, ref[p], r, logp=ref_table)
                total = total - problem.kl_coef * pi * (logp - logp_ref)
    return total / problem.num_prompts  # the prompts' mean


def exact_gradient(problem: Problem) -> np.ndarray:
    """``grad J(theta)`` ``(P, N+1, V)`` by autograd of :func:`exact_objective`."""
    with one_thread():
        return _exact_gradient(problem)


def _exact_gradient(problem: Problem) -> np.ndarray:
    theta = torch.tensor(problem.theta, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(exact_objective(problem, theta), theta)
    out: np.ndarray = grad.numpy()
    return out


# ----------------------------------------------------------------------------- batches


def make_reward_fn(space: Space, rewards: np.ndarray) -> Callable[[Any, Any], Any]:
    """``reward_fn(tokens (m, T), group (m,)) -> (m,)``: a lookup in the reward table.

    Everything after a row's first EOS is ignored (a row is read as the response it starts).
    """
    index = {tuple(space.padded(r)): r for r in range(space.num_responses)}

    def reward_fn(tokens: Any, group: Any) -> Any:
        rows = np.asarray(tokens).tolist()
        prompts = np.asarray(group).tolist()
        out = []
        for row, p in zip(rows, prompts, strict=True):
            body: list[int] = []
            for tok in row:
                body.append(int(tok))
                if tok == EOS:
                    break
            out.append(float(rewards[int(p), index[tuple(body + [PAD] * (space.max_len - len(body)))]]))
        return torch.tensor(out, dtype=torch.float64)

    return reward_fn


def _gathered_log_probs(theta: Any, prompts: list[int], paths: list[list[int]], tokens: Any) -> tuple[Any, Any]:
    rows = torch.tensor(prompts, dtype=torch.int64)[:, None]
    nodes = torch.tensor(paths, dtype=torch.int64)
    logits = theta[rows, nodes]  # (B, T, V): position t of row b reads node paths[b][t]
    log_probs = torch.log_softmax(logits, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)
    return logits, log_probs


def node_value(problem: Problem, space: Space, p: int, node: int) -> float:
    """The critic's value of ``node`` for prompt ``p``: 0 after the end; the drawn table; or,
    ``values == "exact"``, ``E[R | the response starts with the node's prefix]`` under the
    current policy, by summing over the responses through it."""
    if node == space.after_the_end or not problem.values:
        return 0.0
    if problem.values == "random":
        assert problem.value_table is not None
        return float(problem.value_table[p, node])
    prefix = space.nodes[node]
    probs = response_probs(space, problem.theta)[p]
    through = [
        r for r, y in enumerate(space.responses) if len(y) > len(prefix) and y[: len(prefix)] == prefix
    ]
    return float(sum(probs[r] * problem.rewards[p, r] for r in through) / sum(probs[r] for r in through))


def build_batch(problem: Problem, space: Space, rows: Sequence[int], theta: Any) -> SequenceBatch:
    """The :class:`SequenceBatch` of response indices ``rows`` (length ``P*k``, prompt-major).

    ``theta`` is the differentiable ``(P, N+1, V)`` parameter tensor of the current policy.
    """
    k, num_p = problem.group_size, problem.num_prompts
    prompts = [b // k for b in range(k * num_p)]
    tokens = torch.tensor([space.padded(r) for r in rows], dtype=torch.int64)
    mask = torch.tensor([space.mask(r) for r in rows], dtype=torch.float64)
    if problem.tool_tokens:  # the environment's tokens (odd positions) are holes in the mask
        mask[:, 1::2] = 0.0
    paths = [space.node_path(r) for r in rows]
    logits, log_probs = _gathered_log_probs(theta, prompts, paths, tokens)
    if problem.theta_old is None:
        old = log_probs.detach().clone()
    else:
        _, old = _gathered_log_probs(torch.tensor(problem.theta_old), prompts, paths, tokens)
    _, ref = _gathered_log_probs(torch.tensor(problem.theta_ref), prompts, paths, tokens)
    if problem.theta_sampler is None:  # the inference engine is the behaviour policy
        sampling = old
    else:
        _, sampling = _gathered_log_probs(torch.tensor(problem.theta_sampler), prompts, paths, tokens)
    rewards = torch.tensor(
        [float(problem.rewards[p, r]) for p, r in zip(prompts, rows, strict=True)],
        dtype=torch.float64,
    )
    greedy = torch.tensor(
        [greedy_response(space, problem.theta[p]) for p in range(num_p)], dtype=torch.int64
    )
    return SequenceBatch(
        logits=logits,
        log_probs=log_probs,
        tokens=tokens,
        mask=mask,
        rewards=rewards,
        old_log_probs=old.detach(),
        ref_log_probs=ref.detach(),
        sampling_log_probs=sampling.detach().clone(),
        values=torch.tensor(
            [[node_value(problem, space, p, n) for n in path] for p, path in zip(prompts, paths, strict=True)],
            dtype=torch.float64,
        ),
        group=torch.tensor(prompts, dtype=torch.int64),
        greedy_tokens=greedy,
        reward_fn=make_reward_fn(space, problem.rewards),
        num_prompts=num_p,
        group_size=k,
        vocab_size=problem.vocab_size,
        max_len=problem.max_len,
        kl_coef=problem.kl_coef,
    )


def all_batches(problem: Problem) -> Iterable[tuple[tuple[int, ...], float]]:
    """Every ``(rows, probability under the behaviour policy)``; probabilities sum to 1."""
    space = make_space(problem.vocab_size, problem.max_len)
    behaviour = problem.theta if problem.theta_old is None else problem.theta_old
    if problem.theta_sampler is not None:  # the inference engine draws the responses
        behaviour = problem.theta_sampler
    probs = response_probs(space, behaviour)
    k = problem.group_size
    for rows in itertools.product(range(space.num_responses), repeat=k * problem.num_prompts):
        weight = 1.0
        for b, r in enumerate(rows):
            weight *= probs[b // k, r]
        yield rows, weight


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class OracleResult:
    """``E[g]`` and ``grad J`` on one problem, or the error the estimator made."""

    problem: Problem
    mean: np.ndarray | None
    mean_abs: np.ndarray | None
    gradient: np.ndarray
    batches: int
    error: str | None = None

    @property
    def tolerance(self) -> float:
        assert self.mean_abs is not None
        return ROUNDOFF_REL * (1.0 + max(float(self.mean_abs.max()), float(np.abs(self.gradient).max())))


class _Fault(Exception):
    pass


def _snapshot(batch: SequenceBatch) -> dict[str, Any]:
    return {
        name: getattr(batch, name).detach().clone()
        for name in (
            "logits", "log_probs", "tokens", "mask", "rewards", "old_log_probs",
            "ref_log_probs", "sampling_log_probs", "values", "group", "greedy_tokens",
        )
    }


def _mutated(batch: SequenceBatch, before: dict[str, Any]) -> list[str]:
    return [
        name for name, value in before.items()
        if not torch.equal(getattr(batch, name).detach(), value)
    ]


def _loss_gradient(
    loss_fn: Callable[[SequenceBatch], Any], problem: Problem, space: Space, rows: Sequence[int]
) -> np.ndarray:
    theta = torch.tensor(problem.theta, dtype=torch.float64, requires_grad=True)
    batch = build_batch(problem, space, rows, theta)
    before = _snapshot(batch)
    try:
        loss = loss_fn(batch)
    except Exception as exc:  # the estimator's own failure, reported as an error verdict
        raise _Fault(f"raised {type(exc).__name__}") from exc
    if not isinstance(loss, torch.Tensor):
        raise _Fault(f"returned {type(loss).__name__}, not a tensor")
    if loss.dim() != 0:
        raise _Fault(f"returned shape {tuple(loss.shape)}, not a scalar")
    changed = _mutated(batch, before)
    if changed:
        raise _Fault(f"mutated {changed}")
    if not bool(torch.isfinite(loss)):
        raise _Fault(f"non-finite loss {float(loss.detach())}")
    if loss.requires_grad:
        try:
            (grad,) = torch.autograd.grad(loss, theta, allow_unused=True)
        except Exception as exc:
            raise _Fault(f"backward raised {type(exc).__name__}") from exc
    else:
        grad = None
    g = np.zeros(problem.theta.shape) if grad is None else -grad.numpy()
    if not np.all(np.isfinite(g)):
        raise _Fault("non-finite gradient")
    return g


def _call_weights(
    fn: Callable[..., Any], batch: SequenceBatch, batched: bool
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    arrays = {
        "rewards": batch.rewards.numpy().copy(),
        "mask": batch.mask.numpy().copy(),
        "log_probs": batch.log_probs.detach().numpy().copy(),
        "group": batch.group.numpy().copy(),
        "tokens": batch.tokens.numpy().copy(),
        "old_log_probs": batch.old_log_probs.numpy().copy(),
        "ref_log_probs": batch.ref_log_probs.numpy().copy(),
        "sampling_log_probs": batch.sampling_log_probs.numpy().copy(),
        "values": batch.values.numpy().copy(),
    }
    if batched:
        arrays = {name: a[None, ...] for name, a in arrays.items()}
    before = {name: a.copy() for name, a in arrays.items()}
    names = inspect.signature(fn).parameters
    extras = {name: arrays[name] for name in WEIGHT_EXTRAS if name in names}
    try:
        out = fn(arrays["rewards"], arrays["mask"], arrays["log_probs"], **extras)
    except Exception as exc:
        raise _Fault(f"raised {type(exc).__name__}") from exc
    changed = [n for n, a in arrays.items() if not np.array_equal(a, before[n], equal_nan=True)]
    if changed:
        raise _Fault(f"mutated {changed}")
    try:
        w = np.asarray(out, dtype=np.float64)
    except Exception as exc:
        raise _Fault(f"returned {type(out).__name__}, not numbers") from exc
    shape = tuple(batch.mask.shape)
    if batched:
        shape = (1, *shape)
    if w.shape != shape:
        raise _Fault(f"returned shape {w.shape}, expected {shape}")
    if not np.all(np.isfinite(w)):
        raise _Fault("non-finite weights")
    return (w[0] if batched else w), arrays


def _weights_gradient(
    fn: Callable[..., Any], problem: Problem, space: Space, rows: Sequence[int], batched: bool
) -> np.ndarray:
    """``sum_{j,t} w_jt (e_{y_jt} - softmax(theta[node_jt]))`` added to row ``node_jt``."""
    theta = torch.tensor(problem.theta, dtype=torch.float64)
    batch = build_batch(problem, space, rows, theta)
    w, _ = _call_weights(fn, batch, batched)
    g = np.zeros(problem.theta.shape)
    k = problem.group_size
    for b, r in enumerate(rows):
        p = b // k
        padded = space.padded(r)
        for t, node in enumerate(space.node_path(r)):
            logits = problem.theta[p, node]
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            score = -probs
            score[padded[t]] += 1.0
            g[p, node] += w[b, t] * score
    return g


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Tiny tensors: intra-op threads only cost (10x on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _expectation(gradient_of: Callable[[Sequence[int]], np.ndarray], problem: Problem) -> OracleResult:
    with one_thread():
        return _expectation_loop(gradient_of, problem)


def _expectation_loop(gradient_of: Callable[[Sequence[int]], np.ndarray], problem: Problem) -> OracleResult:
    grad_j = _exact_gradient(problem)
    mean = np.zeros(problem.theta.shape)
    mean_abs = np.zeros(problem.theta.shape)
    batches = 0
    try:
        for rows, weight in all_batches(problem):
            g = gradient_of(rows)
            if batches < DETERMINISM_BATCHES and not np.array_equal(g, gradient_of(rows)):
                raise _Fault("nondeterministic: two calls on the same batch differ")
            mean += weight * g
            mean_abs += weight * np.abs(g)
            batches += 1
    except _Fault as fault:
        return OracleResult(problem, None, None, grad_j, batches, error=str(fault))
    return OracleResult(problem, mean, mean_abs, grad_j, batches)


def loss_expectation(loss_fn: Callable[[SequenceBatch], Any], problem: Problem) -> OracleResult:
    """``E[-grad loss]`` over every batch, one autograd call per batch."""
    space = make_space(problem.vocab_size, problem.max_len)
    return _expectation(lambda rows: _loss_gradient(loss_fn, problem, space, rows), problem)


def weights_expectation(fn: Callable[..., Any], problem: Problem, *, batched: bool = False) -> OracleResult:
    """``E[sum_{j,t} w_jt grad log pi(y_jt | y_j,<t)]`` over every batch (explicit score)."""
    space = make_space(problem.vocab_size, problem.max_len)
    return _expectation(lambda rows: _weights_gradient(fn, problem, space, rows, batched), problem)


# ----------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Judgement:
    """The oracle's verdict over several problems.

    ``scales`` maps ``(k, T, P)`` to the measured constant ``c`` (``E[g] = c grad J``) for
    ``unbiased``/``scaled``; ``evidence`` says why (the worst problem and the size of the
    discrepancy in round-off budgets); ``bias_ratio`` is the largest discrepancy seen, in
    round-off budgets (a biased verdict needs more than :data:`CLEAR_BIAS`).
    """

    verdict: str
    scales: dict[tuple[int, int, int], float]
    evidence: str
    bias_ratio: float
    relative_bias: float


def _fit(result: OracleResult) -> tuple[float, float, float, float]:
    """``(c, residual/tol, c-uncertainty, relative residual)`` of ``E = c G`` on one problem."""
    assert result.mean is not None
    e, g = result.mean.ravel(), result.gradient.ravel()
    tol = result.tolerance
    gg = float(g @ g)
    if math.sqrt(gg) <= CLEAR_BIAS * tol * math.sqrt(g.size):
        raise AssertionError(f"grad J ~ 0 on {result.problem!r}: pick another problem")
    c = float(e @ g) / gg
    resid = e - c * g
    dc = tol * math.sqrt(g.size) / math.sqrt(gg)
    rel = float(np.abs(resid).max()) / max(float(np.abs(e).max()), float(np.abs(g).max()))
    return c, float(np.abs(resid).max()) / tol, dc, rel


def judge(results: Sequence[OracleResult]) -> Judgement:
    """Verdict from exact results on several problems (see :class:`Judgement`)."""
    for res in results:
        if res.error is not None:
            return Judgement("error", {}, f"{res.problem!r}: {res.error}", math.inf, math.inf)
    worst, worst_rel = 0.0, 0.0
    evidence = "E[g] = c grad J within round-off on every problem, one c per (k, T, P)"
    by_key: dict[tuple[int, int, int], list[tuple[float, float, OracleResult]]] = {}
    for res in results:
        c, ratio, dc, rel = _fit(res)
        by_key.setdefault(res.problem.key, []).append((c, dc, res))
        if ratio > max(worst, 1.0):
            worst, worst_rel = ratio, rel
            evidence = (
                f"{res.problem!r}: E[g] is not a multiple of grad J, residual after the best "
                f"fit c={c:.6g} is {ratio:.3g} round-off budgets (relative {rel:.3g})"
            )
    scales: dict[tuple[int, int, int], float] = {}
    for key, fits in by_key.items():
        cs = [c for c, _, _ in fits]
        dc = max(d for _, d, _ in fits)
        spread = (max(cs) - min(cs)) / dc
        if spread > max(worst, 1.0):
            worst = spread
            worst_rel = (max(cs) - min(cs)) / max(abs(c) for c in cs)
            evidence = (
                f"(k, T, P) = {key}: c differs between problems ({min(cs):.6g} .. {max(cs):.6g}, "
                f"{spread:.3g} budgets): {[repr(r.problem) for _, _, r in fits]}"
            )
        if min(cs) <= CLEAR_BIAS * dc:
            return Judgement(
                "biased", {}, f"(k, T, P) = {key}: c = {min(cs):.6g} <= 0", math.inf, 1.0
            )
        scales[key] = float(np.mean(cs))
    if worst > CLEAR_BIAS:
        return Judgement("biased", {}, evidence, worst, worst_rel)
    if worst > 1.0:
        return Judgement("inconclusive", scales, evidence, worst, worst_rel)
    unit = all(
        abs(c - 1.0) <= max(d for _, d, _ in by_key[key]) for key, c in scales.items()
    )
    return Judgement("unbiased" if unit else "scaled", scales, evidence, worst, worst_rel)


# ----------------------------------------------------------------------------- problem sets

STANDARD_SHAPES: dict[tuple[int, int], tuple[tuple[int, int], ...]] = {
    # (k, P): the (V, T) shapes, a shape listed twice gets two random draws.  Every
    # (k, T, P) appears at least twice, so a constant that depends on the problem shows.
    # At most ~100 batches per problem: ((V-1)... R)^(k P) with R = 2..15.
    (1, 1): ((2, 1), (3, 1), (2, 2), (3, 2), (2, 3), (3, 3)),
    (2, 1): ((2, 1), (3, 1), (2, 2), (3, 2), (2, 3), (2, 3)),
    (3, 1): ((2, 1), (3, 1), (2, 2), (2, 2), (2, 3), (2, 3)),
    (1, 2): ((2, 1), (3, 1), (2, 2), (3, 2), (2, 3), (2, 3)),
    (2, 2): ((2, 1), (3, 1), (2, 2), (2, 2)),
    (3, 2): ((2, 1), (2, 1)),
}
"""The oracle's problem shapes per ``(k, P)`` (``k`` in 1..3, ``P`` in 1..2)."""


def problem_set(
    *,
    group_sizes: Iterable[int],
    num_prompts: Iterable[int] = (1,),
    vocab_size: int = 3,
    max_len: int = 3,
    off_policy: bool = False,
    kl_coef: float = 0.0,
    seed: int = 0,
    shapes: dict[tuple[int, int], tuple[tuple[int, int], ...]] | None = None,
    tool_tokens: bool = False,
    sampling_mismatch: bool = False,
    values: str = "",
) -> list[Problem]:
    """Random problems over the standard shapes that fit the given settings (``k <= 3``)."""
    rng = np.random.default_rng(seed)
    table = STANDARD_SHAPES if shapes is None else shapes
    out = []
    for p in num_prompts:
        for k in group_sizes:
            for v, t in table.get((k, p), ()):
                if v <= vocab_size and t <= max_len:
                    out.append(
                        random_problem(
                            rng, vocab_size=v, max_len=t, group_size=k, num_prompts=p,
                            off_policy=off_policy, kl_coef=kl_coef, label=f"seed={seed}",
                            tool_tokens=tool_tokens, sampling_mismatch=sampling_mismatch,
                            values=values,
                        )
                    )
    return out
