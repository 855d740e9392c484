"""Tests of the brute-force oracle itself (``sequence_oracle``): is the truth true?

Each test recomputes something the oracle produces by a second, independent route: counts
by formula, probabilities by a NumPy product of softmaxes, ``grad J`` by central finite
differences and by the explicit score-function sum, a loss's gradient against the explicit
score weighted by the same coefficients, and a one-token problem in closed form.  The
judging thresholds are tested in both directions (a planted length weighting of 1e-4 per
token is caught, 1e-7 is "inconclusive", 1e-14 is no bias), and every error kind is
provoked.

Budget: ~10 s of CPU (one core).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sequence_oracle import (  # noqa: E402
    CLEAR_BIAS,
    EOS,
    ROUNDOFF_REL,
    Problem,
    all_batches,
    build_batch,
    exact_gradient,
    exact_objective,
    greedy_response,
    judge,
    loss_expectation,
    make_space,
    problem_set,
    random_problem,
    response_probs,
    weights_expectation,
)

pytestmark = pytest.mark.torch

FD_STEP = 1e-6
"""Central-difference step: truncation ~h^2 |J'''| ~ 1e-12, round-off ~eps |J| / h ~ 1e-10."""

FD_TOL = 1e-7
"""Finite differences against autograd: three orders above the error estimate above."""

EXACT_TOL = 1e-12
"""Two float64 routes to the same finite sum (a few hundred terms of size <= 10)."""


# ----------------------------------------------------------------------------- the space


@pytest.mark.parametrize(("v", "t"), list(itertools.product((2, 3, 4), (1, 2, 3))))
def test_space_has_the_documented_counts_and_valid_responses(v: int, t: int) -> None:
    space = make_space(v, t)
    n = sum((v - 1) ** i for i in range(t))
    assert space.num_nodes == n
    assert space.num_responses == n + (v - 1) ** t
    assert len(set(space.responses)) == space.num_responses
    for y in space.responses:
        assert 1 <= len(y) <= t
        assert EOS not in y[:-1]  # EOS only as the last token
        assert y[-1] == EOS or len(y) == t  # ended, or truncated at T


def test_space_sizes_quoted_in_the_design_note() -> None:
    assert (make_space(3, 3).num_nodes, make_space(3, 3).num_responses) == (7, 15)
    assert make_space(3, 2).num_responses == 7
    assert make_space(2, 3).num_responses == 4
    assert [make_space(2, 2).render(r) for r in range(3)] == ["<eos>", "a <eos>", "a a (truncated)"]


@pytest.mark.parametrize(("v", "t"), [(2, 1), (2, 3), (3, 2), (3, 3), (4, 3)])
def test_response_probabilities_sum_to_one_and_match_a_numpy_product(v: int, t: int) -> None:
    rng = np.random.default_rng(v * 10 + t)
    space = make_space(v, t)
    theta = rng.normal(scale=2.0, size=(2, space.num_nodes + 1, v))
    probs = response_probs(space, theta)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=EXACT_TOL)
    for p in range(2):
        for r, y in enumerate(space.responses):
            direct = 1.0
            for i, tok in enumerate(y):
                logits = theta[p, space.nodes.index(y[:i])]
                direct *= np.exp(logits[tok]) / np.exp(logits).sum()
            assert probs[p, r] == pytest.approx(direct, rel=EXACT_TOL, abs=0)


# ----------------------------------------------------------------------------- batches


def _problem(**kw: object) -> Problem:
    defaults: dict[str, object] = {"vocab_size": 3, "max_len": 3, "group_size": 2, "num_prompts": 2}
    defaults.update(kw)
    return random_problem(np.random.default_rng(7), **defaults)  # type: ignore[arg-type]


@pytest.mark.parametrize("off_policy", [False, True])
def test_batch_layout_follows_the_protocol(off_policy: bool) -> None:
    problem = _problem(off_policy=off_policy, kl_coef=0.1)
    space = make_space(3, 3)
    rows = [space.responses.index(y) for y in [(0,), (1, 2, 0), (2, 2, 2), (1, 0)]]
    theta = torch.tensor(problem.theta, requires_grad=True)
    batch = build_batch(problem, space, rows, theta)
    assert batch.tokens.tolist() == [[0, 0, 0], [1, 2, 0], [2, 2, 2], [1, 0, 0]]
    assert batch.mask.tolist() == [[1, 0, 0], [1, 1, 1], [1, 1, 1], [1, 1, 0]]
    assert batch.group.tolist() == [0, 0, 1, 1]  # prompt-major
    assert (batch.num_prompts, batch.group_size, batch.vocab_size, batch.max_len) == (2, 2, 3, 3)
    assert batch.kl_coef == 0.1
    after = space.after_the_end
    for b, r in enumerate(rows):
        p = b // 2
        y = space.responses[r]
        for t in range(3):
            node = space.nodes.index(y[:t]) if t < len(y) else after
            np.testing.assert_array_equal(batch.logits[b, t].detach().numpy(), problem.theta[p, node])
            expected = torch.log_softmax(torch.tensor(problem.theta[p, node]), -1)[batch.tokens[b, t]]
            assert float(batch.log_probs[b, t].detach()) == pytest.approx(float(expected), abs=EXACT_TOL)
            ref = torch.log_softmax(torch.tensor(problem.theta_ref[p, node]), -1)[batch.tokens[b, t]]
            assert float(batch.ref_log_probs[b, t]) == pytest.approx(float(ref), abs=EXACT_TOL)
            behaviour = problem.theta if problem.theta_old is None else problem.theta_old
            old = torch.log_softmax(torch.tensor(behaviour[p, node]), -1)[batch.tokens[b, t]]
            assert float(batch.old_log_probs[b, t]) == pytest.approx(float(old), abs=EXACT_TOL)
        assert float(batch.rewards[b]) == problem.rewards[p, r]
        masked = float((batch.log_probs[b] * batch.mask[b]).sum().detach())
        assert masked == pytest.approx(math.log(response_probs(space, problem.theta)[p, r]), abs=EXACT_TOL)
    assert batch.log_probs.requires_grad and batch.logits.requires_grad
    assert not batch.old_log_probs.requires_grad and not batch.ref_log_probs.requires_grad
    np.testing.assert_array_equal(batch.reward_fn(batch.tokens, batch.group).numpy(), batch.rewards.numpy())


def test_reward_fn_reads_a_row_up_to_its_first_eos() -> None:
    problem = _problem(num_prompts=1)
    space = make_space(3, 3)
    batch = build_batch(problem, space, [0, 1], torch.tensor(problem.theta))
    r = batch.reward_fn(torch.tensor([[1, 0, 2], [1, 0, 0]]), torch.tensor([0, 0]))
    assert float(r[0]) == float(r[1]) == problem.rewards[0, space.responses.index((1, 0))]


def test_greedy_tokens_decode_greedily_with_ties_to_the_lowest_id() -> None:
    space = make_space(3, 3)
    theta = np.zeros((space.num_nodes + 1, 3))
    theta[space.nodes.index(())] = [0.0, 1.0, 1.0]  # tie a/b -> a
    theta[space.nodes.index((1,))] = [0.0, 0.0, 2.0]  # -> b
    theta[space.nodes.index((1, 2))] = [3.0, 0.0, 0.0]  # -> eos
    assert greedy_response(space, theta) == [1, 2, 0]
    theta[space.nodes.index((1, 2))] = [0.0, 0.0, 3.0]  # -> b, truncated
    assert greedy_response(space, theta) == [1, 2, 2]
    theta[space.nodes.index(())] = [5.0, 0.0, 0.0]
    assert greedy_response(space, theta) == [0, 0, 0]


@pytest.mark.parametrize(("v", "t", "k", "p"), [(2, 2, 2, 2), (3, 2, 2, 1), (2, 3, 3, 1)])
def test_batches_are_all_tuples_and_their_probabilities_sum_to_one(v: int, t: int, k: int, p: int) -> None:
    problem = _problem(vocab_size=v, max_len=t, group_size=k, num_prompts=p, off_policy=True)
    batches = list(all_batches(problem))
    r = make_space(v, t).num_responses
    assert len(batches) == r ** (k * p) == problem.num_batches
    assert len({rows for rows, _ in batches}) == len(batches)
    assert sum(w for _, w in batches) == pytest.approx(1.0, abs=EXACT_TOL)


# ----------------------------------------------------------------------------- grad J


@pytest.mark.parametrize("kl_coef", [0.0, 0.3])
def test_exact_gradient_matches_central_finite_differences(kl_coef: float) -> None:
    problem = _problem(vocab_size=3, max_len=2, num_prompts=2, kl_coef=kl_coef)
    grad = exact_gradient(problem)
    fd = np.zeros_like(grad)
    for idx in np.ndindex(*grad.shape):
        up, down = problem.theta.copy(), problem.theta.copy()
        up[idx] += FD_STEP
        down[idx] -= FD_STEP
        fd[idx] = (
            float(exact_objective(problem, torch.tensor(up))) - float(exact_objective(problem, torch.tensor(down)))
        ) / (2 * FD_STEP)
    np.testing.assert_allclose(grad, fd, rtol=0, atol=FD_TOL)
    assert np.all(grad[:, -1] == 0.0)  # the after-the-end node does not enter J
    assert np.abs(grad).max() > 100 * FD_TOL


@pytest.mark.parametrize("kl_coef", [0.0, 0.3])
def test_exact_gradient_matches_the_explicit_score_function_sum(kl_coef: float) -> None:
    """grad J = 1/P sum_p sum_y pi(y) (R(y) - beta log(pi/pi_ref)(y)) sum_t (e_{y_t} - pi(.|node_t))."""
    problem = _problem(vocab_size=3, max_len=3, num_prompts=2, kl_coef=kl_coef)
    space = make_space(3, 3)
    pi = response_probs(space, problem.theta)
    pi_ref = response_probs(space, problem.theta_ref)
    expected = np.zeros_like(problem.theta)
    for p in range(2):
        for r, y in enumerate(space.responses):
            weight = pi[p, r] * (problem.rewards[p, r] - kl_coef * math.log(pi[p, r] / pi_ref[p, r]))
            for t, tok in enumerate(y):
                node = space.nodes.index(y[:t])
                probs = np.exp(problem.theta[p, node]) / np.exp(problem.theta[p, node]).sum()
                expected[p, node] += weight * (np.eye(3)[tok] - probs) / 2  # the mean of P = 2
    np.testing.assert_allclose(exact_gradient(problem), expected, rtol=0, atol=EXACT_TOL)


def test_one_token_problem_in_closed_form() -> None:
    """V=3, T=1, k=1: E[g_reinforce] = sum_x p_x R_x (e_x - p) = p * (R - J) = grad J."""
    problem = _problem(vocab_size=3, max_len=1, group_size=1, num_prompts=1)
    p = np.exp(problem.theta[0, 0]) / np.exp(problem.theta[0, 0]).sum()
    rewards = problem.rewards[0]  # responses of T=1 are the tokens 0, 1, 2 in order
    assert make_space(3, 1).responses == ((0,), (1,), (2,))
    closed = p * (rewards - p @ rewards)

    def reinforce(batch: Any) -> Any:
        return -(batch.rewards[:, None] * batch.log_probs * batch.mask).sum(-1).mean()

    result = loss_expectation(reinforce, problem)
    assert result.mean is not None
    np.testing.assert_allclose(result.gradient[0, 0], closed, rtol=0, atol=EXACT_TOL)
    np.testing.assert_allclose(result.mean[0, 0], closed, rtol=0, atol=EXACT_TOL)
    np.testing.assert_allclose(result.mean[0, 1], 0.0, rtol=0, atol=0)  # after-the-end node


# ----------------------------------------------------------------------------- estimates


def _reinforce(batch: Any) -> Any:
    return -(batch.rewards[:, None] * batch.log_probs * batch.mask).sum(-1).mean()


def _reinforce_weights(rewards: Any, mask: Any, log_probs: Any, *, group: Any) -> Any:
    return rewards[:, None] * mask / rewards.shape[0]  # a mean over all P*k rows


def test_loss_gradient_equals_the_explicit_score_of_its_weights() -> None:
    """Two routes: autograd through the loss, and sum_jt w_jt (e_y - pi) for w = R mask / (P k)."""
    for problem in problem_set(group_sizes=(2,), num_prompts=(1, 2), seed=3):
        by_loss = loss_expectation(_reinforce, problem)
        by_weights = weights_expectation(_reinforce_weights, problem)
        assert by_loss.mean is not None and by_weights.mean is not None
        np.testing.assert_allclose(by_loss.mean, by_weights.mean, rtol=0, atol=EXACT_TOL)


@pytest.mark.parametrize("off_policy", [False, True])
def test_reinforce_with_the_matching_normalisation_is_unbiased(off_policy: bool) -> None:
    def loss(batch: Any) -> Any:
        # on-policy the sequence ratio is exactly 1
        ratio = torch.exp(((batch.log_probs - batch.old_log_probs) * batch.mask).sum(-1)).detach()
        return -(ratio * batch.rewards * (batch.log_probs * batch.mask).sum(-1)).mean()

    problems = problem_set(group_sizes=(1, 2), num_prompts=(1, 2), off_policy=off_policy, seed=1)
    verdict = judge([loss_expectation(loss, p) for p in problems])
    assert verdict.verdict == "unbiased", verdict.evidence
    assert all(c == pytest.approx(1.0, abs=1e-12) for c in verdict.scales.values())


def test_k1_in_the_reward_is_unbiased_for_the_kl_objective() -> None:
    def loss(batch: Any) -> Any:
        seq_logp = (batch.log_probs * batch.mask).sum(-1)
        kl = ((batch.log_probs - batch.ref_log_probs) * batch.mask).sum(-1).detach()
        return -((batch.rewards - batch.kl_coef * kl) * seq_logp).mean()

    problems = problem_set(group_sizes=(1, 2), kl_coef=0.5, seed=2)
    assert judge([loss_expectation(loss, p) for p in problems]).verdict == "unbiased"


def test_self_inclusive_group_mean_is_scaled_by_k_minus_one_over_k() -> None:
    def loss(batch: Any) -> Any:
        r = batch.rewards.view(-1, batch.group_size)
        adv = (r - r.mean(-1, keepdim=True)).reshape(-1)
        return -(adv * (batch.log_probs * batch.mask).sum(-1)).mean()

    verdict = judge([loss_expectation(loss, p) for p in problem_set(group_sizes=(2, 3), seed=4)])
    assert verdict.verdict == "scaled"
    for (k, _, _), c in verdict.scales.items():
        assert c == pytest.approx((k - 1) / k, abs=1e-12)


# ----------------------------------------------------------------------------- thresholds


def _length_weighted(eps: float) -> Callable[[Any], Any]:
    def loss(batch: Any) -> Any:
        weight = 1.0 + eps * (batch.mask.sum(-1) - 1.0)  # favours long responses by eps per token
        return -(weight * batch.rewards * (batch.log_probs * batch.mask).sum(-1)).sum() / batch.group_size

    return loss


def test_a_bias_of_one_part_in_ten_thousand_is_caught() -> None:
    problems = problem_set(group_sizes=(1, 2), max_len=3, seed=5)
    verdict = judge([loss_expectation(_length_weighted(1e-4), p) for p in problems])
    assert verdict.verdict == "biased", verdict.evidence
    assert verdict.bias_ratio > CLEAR_BIAS


def test_a_perturbation_below_round_off_is_not_a_bias() -> None:
    problems = problem_set(group_sizes=(1, 2), max_len=3, seed=5)
    verdict = judge([loss_expectation(_length_weighted(1e-14), p) for p in problems])
    assert verdict.verdict == "unbiased", verdict.evidence


def test_a_bias_between_round_off_and_clear_is_inconclusive_not_guessed() -> None:
    # a 1e-7 length weighting is ~10-30 round-off budgets: neither "unbiased" nor "biased"
    problems = problem_set(group_sizes=(1, 2), max_len=3, seed=5)
    verdict = judge([loss_expectation(_length_weighted(1e-7), p) for p in problems])
    assert verdict.verdict == "inconclusive", verdict.evidence
    assert 1.0 < verdict.bias_ratio < CLEAR_BIAS
    assert ROUNDOFF_REL * CLEAR_BIAS < 1e-5  # a 1e-5 bias is always "biased"


def test_zero_gradient_is_biased_not_scaled() -> None:
    def loss(batch: Any) -> Any:
        return (batch.log_probs * 0.0).sum()

    verdict = judge([loss_expectation(loss, p) for p in problem_set(group_sizes=(2,), seed=6)])
    assert verdict.verdict == "biased"


def test_a_scale_that_depends_on_the_problem_is_biased() -> None:
    def loss(batch: Any) -> Any:
        # c = 1 + first logit of the root (a constant per problem, different between problems)
        c = 1.0 + float(batch.logits[0, 0, 0].detach()) ** 2
        return c * _reinforce(batch)

    verdict = judge([loss_expectation(loss, p) for p in problem_set(group_sizes=(1,), max_len=1, seed=8)])
    assert verdict.verdict == "biased" and "c differs between problems" in verdict.evidence


# ----------------------------------------------------------------------------- errors


def _raises(batch: Any) -> Any:
    raise RuntimeError("boom")


def _vector(batch: Any) -> Any:
    return -(batch.rewards[:, None] * batch.log_probs).sum(-1)


def _float(batch: Any) -> Any:
    return float(_reinforce(batch).detach())


def _nan(batch: Any) -> Any:
    return _reinforce(batch) * torch.tensor(float("nan"))


def _mutates_mask(batch: Any) -> Any:
    batch.mask[:, -1] = 0.0
    return _reinforce(batch)


def _mutates_logits(batch: Any) -> Any:
    with torch.no_grad():
        batch.logits.add_(1.0)
    return _reinforce(batch)


_CALLS = {"n": 0}


def _alternating(batch: Any) -> Any:
    _CALLS["n"] += 1
    return _reinforce(batch) * (1.0 + 1e-9 * (_CALLS["n"] % 2))


@pytest.mark.parametrize(
    ("fn", "says"),
    [
        (_raises, "raised RuntimeError"),
        (_vector, "not a scalar"),
        (_float, "not a tensor"),
        (_nan, "non-finite"),
        (_mutates_mask, "mutated ['mask']"),
        (_mutates_logits, "mutated ['logits'"),
        (_alternating, "nondeterministic"),
    ],
)
def test_every_error_kind_is_reported(fn: Callable[..., Any], says: str) -> None:
    result = loss_expectation(fn, _problem(vocab_size=2, max_len=2, num_prompts=1))
    assert result.error is not None and says in result.error, result.error
    assert judge([result]).verdict == "error"


def _w_shape(rewards: Any, mask: Any, log_probs: Any) -> Any:
    return rewards


def _w_inf(rewards: Any, mask: Any, log_probs: Any) -> Any:
    return mask / 0.0


def _w_mutates(rewards: Any, mask: Any, log_probs: Any, *, tokens: Any) -> Any:
    tokens[:] = 0
    return mask


def _w_strings(rewards: Any, mask: Any, log_probs: Any) -> Any:
    return [["a"] * mask.shape[1]] * mask.shape[0]


@pytest.mark.parametrize(
    ("fn", "says"),
    [(_w_shape, "returned shape"), (_w_inf, "non-finite"), (_w_mutates, "mutated ['tokens']"),
     (_w_strings, "not numbers")],
)
def test_every_weights_error_kind_is_reported(fn: Callable[..., Any], says: str) -> None:
    with np.errstate(divide="ignore", invalid="ignore"):
        result = weights_expectation(fn, _problem(vocab_size=2, max_len=2, num_prompts=1))
    assert result.error is not None and says in result.error, result.error


def test_weights_receive_exactly_the_extras_they_name() -> None:
    seen: dict[str, tuple[int, ...]] = {}

    def fn(rewards: Any, mask: Any, log_probs: Any, *, ref_log_probs: Any, group: Any) -> Any:
        seen.update(ref=ref_log_probs.shape, group=group.shape)
        return mask * 0.0

    result = weights_expectation(fn, _problem(vocab_size=2, max_len=2, group_size=2, num_prompts=2))
    assert result.error is None and seen == {"ref": (4, 2), "group": (4,)}
    batched = weights_expectation(fn, _problem(vocab_size=2, max_len=2, num_prompts=1), batched=True)
    assert batched.error is None and seen == {"ref": (1, 2, 2), "group": (1, 2)}


def test_problem_set_covers_every_key_twice() -> None:
    problems = problem_set(group_sizes=(1, 2, 3), num_prompts=(1, 2), seed=0)
    keys = [p.key for p in problems]
    assert all(keys.count(key) >= 2 for key in keys)
    assert max(p.num_batches for p in problems) <= 256
    assert dataclasses.replace(problems[0], label="x").key == problems[0].key
