"""The exact sequence engine (impl.sequence): counts, identities, gradients (budget: ~5 s).

The gradient is checked three independent ways: the naive enumeration
``sum_y pi(y) A(y) grad log pi(y)`` (from :func:`impl.sequence.sequence_score`), central
finite differences of ``J``, and (``torch`` marker) autograd of ``J`` written in PyTorch.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.errors import InvalidArgument
from impl.sequence import (
    MAX_VOCAB,
    advantages,
    batch_logits,
    batch_probs,
    batch_prompts,
    enumerate_batches,
    format_tokens,
    greedy_tokens,
    node_prefix_log_probs,
    num_responses,
    random_theta,
    response_probs,
    response_space,
    reward_table,
    scatter_positions,
    sequence_gradient,
    sequence_kl,
    sequence_log_probs,
    sequence_objective,
    sequence_score,
    token_log_probs,
    token_scores,
)

ROUNDOFF = 64 * np.finfo(np.float64).eps
"""Engine identities hold to a few dozen ulps of the quantities involved (sums of <= 40 terms)."""

FD_STEP = 1e-5
"""Central-difference step: truncation error ~ h^2 |J'''| ~ 1e-10, cancellation ~ eps |J| / h ~ 1e-11."""

FD_TOL = 1e-7
"""Finite differences agree with the exact gradient to this, relative to max(1, |R|max)."""

SHAPES = [(2, 1), (2, 2), (2, 3), (3, 1), (3, 2), (3, 3), (4, 2), (4, 3), (5, 2)]


def _brute_responses(v: int, t: int) -> list[tuple[int, ...]]:
    """Every response by itertools: EOS-terminated of length 1..T, or T non-EOS tokens."""
    out = []
    for length in range(1, t + 1):
        for body in itertools.product(range(1, v), repeat=length - 1):
            out.append((*body, 0) + (0,) * (t - length))
    out += [tuple(body) for body in itertools.product(range(1, v), repeat=t)]
    return sorted(out)


@pytest.mark.parametrize(("v", "t"), SHAPES)
def test_space_matches_brute_force_enumeration(v: int, t: int) -> None:
    space = response_space(v, t)
    expected = _brute_responses(v, t)
    assert [tuple(row) for row in space.tokens.tolist()] == expected
    assert space.num_responses == len(expected) == num_responses(v, t)
    assert space.num_nodes == sum((v - 1) ** d for d in range(t))
    # lengths and mask
    for row, length, m, trunc in zip(
        space.tokens, space.lengths, space.mask, space.truncated, strict=True
    ):
        eos = [i for i, tok in enumerate(row) if tok == 0]
        assert length == (eos[0] + 1 if eos else t)
        assert trunc == (not eos)
        assert m.tolist() == [1.0] * int(length) + [0.0] * (t - int(length))
    # each position reads the node of its prefix; all prefixes of one length share a node
    prefixes: dict[tuple[int, ...], int] = {}
    for r in range(space.num_responses):
        for pos in range(t):
            node = int(space.nodes[r, pos])
            if pos >= space.lengths[r]:
                assert node == space.end_node
                continue
            prefix = tuple(space.tokens[r, :pos].tolist())
            assert prefixes.setdefault(prefix, node) == node
            assert space.node_string(node) == (
                " ".join(format_tokens([x]) for x in prefix) or "(start)"
            )
    assert sorted(prefixes.values()) == list(range(space.num_nodes))
    # successor tables: exactly one of child / leaf is set, and they are consistent
    assert np.all((space.children >= 0) != (space.leaves >= 0))
    assert space.index_of(space.tokens).tolist() == list(range(space.num_responses))


def test_strings_and_lookup() -> None:
    space = response_space(3, 3)
    assert space.strings[:6] == ("<eos>", "a <eos>", "a a <eos>", "a a a", "a a b", "a b <eos>")
    assert space.index_of([[0, 1, 0], [1, 0, 2], [3, 0, 0], [1, 1, 1]]).tolist() == [-1, -1, -1, 3]
    assert format_tokens([2, 2, 2], truncated_mark=True) == "b b b (truncated)"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((1, 3), "vocab_size"),
        ((MAX_VOCAB + 1, 1), "vocab_size"),
        ((3, 0), "max_len"),
        ((3, 30), "MAX_ENUMERATED"),
        ((True, 2), "vocab_size"),
        ((3.0, 2), "vocab_size"),
    ],
)
def test_bad_space_arguments(args: tuple[object, object], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        response_space(*args)  # type: ignore[arg-type]


def test_bad_theta_and_rewards_are_named() -> None:
    space = response_space(3, 2)
    good = np.zeros((1, space.num_rows, 3))
    with pytest.raises(InvalidArgument, match=r"theta of shape \(P, 4, 3\)"):
        response_probs(space, np.zeros((space.num_rows, 3)))
    with pytest.raises(InvalidArgument, match="finite"):
        response_probs(space, np.full_like(good, np.nan))
    with pytest.raises(InvalidArgument, match=r"rewards of shape \(P, R\) = \(1, 7\)"):
        sequence_objective(space, good, np.zeros(7))
    with pytest.raises(InvalidArgument, match="needs ref_theta"):
        sequence_gradient(space, good, np.zeros((1, 7)), kl_coef=0.5)
    with pytest.raises(InvalidArgument, match="kl_coef"):
        sequence_gradient(space, good, np.zeros((1, 7)), kl_coef=-1.0, ref_theta=good)
    with pytest.raises(InvalidArgument, match="MAX_BATCHES"):
        enumerate_batches(response_space(4, 3), 4, num_prompts=2)


@pytest.mark.parametrize(("v", "t"), SHAPES)
def test_probabilities_sum_to_one_and_match_products(v: int, t: int) -> None:
    space = response_space(v, t)
    theta = random_theta(space, np.random.default_rng(v * 10 + t), num_prompts=2, scale=3.0)
    p = response_probs(space, theta)
    assert np.abs(p.sum(axis=1) - 1.0).max() <= ROUNDOFF
    # each response's probability is the product of its token probabilities
    pi = np.exp(theta - theta.max(-1, keepdims=True))
    pi /= pi.sum(-1, keepdims=True)
    for r in range(space.num_responses):
        want = [
            math.prod(
                pi[q, space.nodes[r, pos], space.tokens[r, pos]]
                for pos in range(int(space.lengths[r]))
            )
            for q in range(2)
        ]
        assert np.allclose(p[:, r], want, rtol=ROUNDOFF, atol=0.0)
    # token log-probs include the padding (token 0 at the after-the-end node)
    lp = token_log_probs(space, theta)
    pad = space.mask == 0
    end = theta[:, space.end_node]
    want_pad = end[:, 0] - np.logaddexp.reduce(end, axis=-1)
    assert np.allclose(lp[:, pad], want_pad[:, None], rtol=ROUNDOFF, atol=ROUNDOFF)
    assert np.allclose(
        sequence_log_probs(space, theta), (lp * space.mask).sum(-1), rtol=ROUNDOFF, atol=0.0
    )
    # reach probabilities of nodes: the mass of the responses passing through them
    reach = np.exp(node_prefix_log_probs(space, theta))
    through = np.zeros((2, space.num_nodes))
    for r in range(space.num_responses):
        for pos in range(int(space.lengths[r])):
            through[:, space.nodes[r, pos]] += p[:, r]
    assert np.allclose(reach, through, rtol=1e-13, atol=0.0)


def _naive_gradient(space, theta, rewards, beta, ref):  # type: ignore[no-untyped-def]
    a = advantages(space, theta, rewards, kl_coef=beta, ref_theta=ref)
    per_prompt = np.einsum("pr,prnv->pnv", response_probs(space, theta) * a, sequence_score(space, theta))
    return per_prompt / theta.shape[0]  # J is the prompts' mean


@pytest.mark.parametrize(("v", "t"), SHAPES)
@pytest.mark.parametrize("beta", [0.0, 0.7])
def test_gradient_equals_naive_enumeration(v: int, t: int, beta: float) -> None:
    space = response_space(v, t)
    rng = np.random.default_rng(100 * v + t)
    theta = random_theta(space, rng, num_prompts=2, scale=2.0)
    ref = random_theta(space, rng, num_prompts=2)
    rewards = rng.normal(size=(2, space.num_responses))
    got = sequence_gradient(space, theta, rewards, kl_coef=beta, ref_theta=ref)
    want = _naive_gradient(space, theta, rewards, beta, ref)
    scale = np.abs(advantages(space, theta, rewards, kl_coef=beta, ref_theta=ref)).max()
    assert np.abs(got - want).max() <= ROUNDOFF * scale
    assert np.all(got[:, space.end_node] == 0.0)
    # E[grad log pi] = 0 (the score has mean zero), so a constant reward has zero gradient
    flat = sequence_gradient(space, theta, np.full((2, space.num_responses), 3.0))
    assert np.abs(flat).max() <= ROUNDOFF * 3.0


def test_gradient_keeps_precision_at_near_deterministic_nodes() -> None:
    space = response_space(2, 2)
    theta = np.zeros((1, space.num_rows, 2))
    theta[0, 0] = [27.7, 0.0]  # pi('a' | start) ~ 1e-12
    rewards = np.array([[0.0, 1.0, 2.0]])
    got = sequence_gradient(space, theta, rewards)
    q = 1.0 / (1.0 + math.exp(27.7))  # P('a' at the start)
    # d J / d theta[start, a] = q (1 - q) (Q(a) - Q(eos)) with Q(a) = 1.5, Q(eos) = 0
    assert got[0, 0, 1] == pytest.approx(q * (1 - q) * 1.5, rel=1e-14)
    assert got[0, 0, 0] == pytest.approx(-q * (1 - q) * 1.5, rel=1e-14)
    # node 'a' is reached with probability q: its gradient is q * 1/4 * (2 - 1) * 2 / 2
    assert got[0, 1, 1] == pytest.approx(q * 0.25, rel=1e-14)


def _objective_fd(space, theta, rewards, beta, ref):  # type: ignore[no-untyped-def]
    out = np.zeros_like(theta)
    for idx in np.ndindex(*theta.shape):
        up, down = theta.copy(), theta.copy()
        up[idx] += FD_STEP
        down[idx] -= FD_STEP
        j_up = sequence_objective(space, up, rewards, kl_coef=beta, ref_theta=ref)
        j_down = sequence_objective(space, down, rewards, kl_coef=beta, ref_theta=ref)
        out[idx] = (j_up - j_down) / (2 * FD_STEP)
    return out


@settings(max_examples=25, deadline=None, database=None)
@given(
    shape=st.sampled_from([(2, 1), (2, 3), (3, 2), (3, 3)]),
    prompts=st.integers(1, 2),
    beta=st.sampled_from([0.0, 0.3, 2.0]),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([0.0, 1.0, 3.0]),
)
def test_gradient_matches_finite_differences(
    shape: tuple[int, int], prompts: int, beta: float, seed: int, scale: float
) -> None:
    space = response_space(*shape)
    rng = np.random.default_rng(seed)
    theta = random_theta(space, rng, num_prompts=prompts, scale=scale)
    ref = random_theta(space, rng, num_prompts=prompts)
    rewards = rng.integers(-3, 4, size=(prompts, space.num_responses)).astype(np.float64)
    exact = sequence_gradient(space, theta, rewards, kl_coef=beta, ref_theta=ref)
    fd = _objective_fd(space, theta, rewards, beta, ref)
    size = max(1.0, float(np.abs(rewards).max()), beta * 20)
    assert np.abs(exact - fd).max() <= FD_TOL * size


@pytest.mark.torch
@pytest.mark.parametrize(("v", "t"), [(2, 3), (3, 3), (4, 2)])
def test_gradient_matches_torch_autograd(v: int, t: int) -> None:
    torch = pytest.importorskip("torch")
    space = response_space(v, t)
    rng = np.random.default_rng(7)
    theta = random_theta(space, rng, num_prompts=2, scale=2.0)
    ref = random_theta(space, rng, num_prompts=2)
    rewards = rng.normal(size=(2, space.num_responses))
    beta = 0.4
    th = torch.tensor(theta, requires_grad=True)
    tok, nodes, mask = (
        torch.tensor(space.tokens),
        torch.tensor(space.nodes),
        torch.tensor(space.mask),
    )
    seq = (torch.log_softmax(th, -1)[:, nodes, tok] * mask).sum(-1)
    seq_ref = (torch.log_softmax(torch.tensor(ref), -1)[:, nodes, tok] * mask).sum(-1)
    j = ((seq.exp() * torch.tensor(rewards)).sum() - beta * (seq.exp() * (seq - seq_ref)).sum()) / 2
    j.backward()
    exact = sequence_gradient(space, theta, rewards, kl_coef=beta, ref_theta=ref)
    assert np.abs(exact - th.grad.numpy()).max() <= ROUNDOFF * 10
    assert float(j.detach()) == pytest.approx(
        sequence_objective(space, theta, rewards, kl_coef=beta, ref_theta=ref), rel=1e-14
    )


def test_kl_is_zero_at_ref_and_positive_elsewhere() -> None:
    space = response_space(3, 3)
    rng = np.random.default_rng(3)
    theta = random_theta(space, rng, num_prompts=2)
    assert np.abs(sequence_kl(space, theta, theta)).max() == 0.0
    assert np.all(sequence_kl(space, theta, random_theta(space, rng, num_prompts=2)) > 0)
    # the KL gradient vanishes at ref = theta
    g = sequence_gradient(space, theta, np.zeros((2, 15)), kl_coef=1.0, ref_theta=theta)
    assert np.abs(g).max() == 0.0


@pytest.mark.parametrize(
    ("v", "t", "k", "p"), [(2, 1, 2, 1), (2, 2, 2, 2), (3, 2, 3, 1), (2, 3, 1, 2)]
)
def test_batches_and_their_probabilities(v: int, t: int, k: int, p: int) -> None:
    space = response_space(v, t)
    batches = enumerate_batches(space, k, p)
    r = space.num_responses
    assert batches.shape == (r ** (k * p), k * p)
    assert len({tuple(b) for b in batches.tolist()}) == batches.shape[0]
    assert batches.tolist() == sorted(batches.tolist())
    theta = random_theta(space, np.random.default_rng(5), num_prompts=p, scale=2.0)
    w = batch_probs(space, theta, k)
    probs = response_probs(space, theta)
    prompt = batch_prompts(k, p)
    assert np.allclose(w, np.prod(probs[prompt[None, :], batches], axis=1), rtol=ROUNDOFF, atol=0.0)
    assert abs(w.sum() - 1.0) <= ROUNDOFF


def test_batch_logits_and_scatter_are_adjoint() -> None:
    """<scatter(v), theta> = <v, gather(theta)>: the scatter is the gather's transpose."""
    space = response_space(3, 2)
    rng = np.random.default_rng(11)
    batches = enumerate_batches(space, 2, 2)[::37]
    theta = rng.normal(size=space.theta_shape(2))
    x = batch_logits(space, theta, batches, 2)
    vals = rng.normal(size=x.shape)
    g = scatter_positions(space, batches, 2, 2, vals)
    lhs = np.einsum("gpnv,pnv->g", g, theta)
    rhs = np.einsum("gbtv,gbtv->g", vals, x)
    assert np.allclose(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_reinforce_weights_through_scatter_give_the_exact_gradient() -> None:
    """E over all batches of sum_j R(y_j) grad log pi(y_j) / (P k) is grad J: the engine's own REINFORCE."""
    space = response_space(3, 2)
    rng = np.random.default_rng(2)
    theta = random_theta(space, rng, num_prompts=2)
    rewards = rng.normal(size=(2, space.num_responses))
    k = 2
    batches = enumerate_batches(space, k, 2)
    prompt = batch_prompts(k, 2)
    w = batch_probs(space, theta, k)
    scores = token_scores(space, theta)[prompt[None, :], batches]  # (G, B, T, V)
    weights = (rewards[prompt[None, :], batches] / (k * 2))[:, :, None] * space.mask[batches]
    g = scatter_positions(space, batches, k, 2, weights[..., None] * scores)
    mean = np.einsum("g,gpnv->pnv", w, g)
    assert np.abs(mean - sequence_gradient(space, theta, rewards)).max() <= 1e-14


def test_greedy_tokens_follow_the_argmax() -> None:
    space = response_space(3, 3)
    theta = np.zeros((2, space.num_rows, 3))
    theta[0, 0] = [0.0, 0.0, 1.0]  # 'b'
    theta[0, 2] = [0.0, 2.0, 2.0]  # at 'b': tie between a and b -> 'a'
    theta[0, 5] = [0.0, 0.0, 3.0]  # at 'b a': 'b' -> truncated 'b a b'
    assert greedy_tokens(space, theta).tolist() == [[2, 1, 2], [0, 0, 0]]


def test_reward_table_validates() -> None:
    space = response_space(2, 2)
    with pytest.raises(InvalidArgument, match="at least one"):
        reward_table(space)
    with pytest.raises(InvalidArgument, match="3 finite values"):
        reward_table(space, lambda tokens, lengths: np.zeros(2))
    assert reward_table(space, lambda tokens, lengths: lengths * 1.0).tolist() == [[1.0, 2.0, 2.0]]


def test_the_objective_is_the_mean_over_prompts() -> None:
    """Two copies of one prompt have the objective and the per-prompt gradient of one prompt."""
    space = response_space(3, 2)
    rng = np.random.default_rng(12)
    theta = random_theta(space, rng, num_prompts=1, scale=2.0)
    rewards = rng.normal(size=(1, space.num_responses))
    twice, rewards_twice = np.concatenate([theta, theta]), np.concatenate([rewards, rewards])
    one = sequence_objective(space, theta, rewards)
    assert sequence_objective(space, twice, rewards_twice) == pytest.approx(one, rel=1e-15)
    g1 = sequence_gradient(space, theta, rewards)
    g2 = sequence_gradient(space, twice, rewards_twice)
    assert np.abs(g2 - np.concatenate([g1, g1]) / 2).max() <= ROUNDOFF * np.abs(g1).max()
