"""The multiset route of the sequence checker (issue 15, "Widen the region").

A loss symmetric in the rows of a prompt's group is summed over multisets of each group's
responses with their exact multinomial counts (:mod:`properties.sequence.multisets`); the
symmetry is checked on a re-ordered copy of every multiset, and an asymmetric loss is judged
on ordered batches.  Each test below fails on the code before the route (commit a137910):
there the shapes named were over the batch budget, or the route did not exist.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from impl.sequence import enumerate_batches, response_space  # noqa: E402
from properties.judging.verdict import decide  # noqa: E402
from properties.sequence.checker import check_sequence_loss, check_token_weights  # noqa: E402
from properties.sequence.evaluation import RouteChanged, Sandbox  # noqa: E402
from properties.sequence.multisets import (  # noqa: E402
    multiset_batches,
    multiset_cost,
    reordered_copies,
)
from properties.sequence.problems import (  # noqa: E402
    LOOPED_EXTRA_VOCAB_BATCHES,
    MAX_BATCHES_LOOPED,
    MAX_BATCHES_VECTORISED,
    MULTISET_BATCHES_LOOPED,
    battery,
    plan_shapes,
)
from properties.sequence.run import _execute, evaluate_checked  # noqa: E402
from properties.sequence.torch_loss import TorchLoss, torch_threads  # noqa: E402

pytestmark = pytest.mark.torch

SAME_SUM = 1e-12
"""Two float64 sums of the same finite expectation in different orders, per unit of scale."""


def _seqsum(b: Any) -> Any:
    return (b.log_probs * b.mask).sum(-1)


def group_mean(b: Any) -> Any:
    """A self-inclusive group-mean baseline: symmetric, scaled by (k-1)/k."""
    r = b.rewards.view(b.num_prompts, b.group_size)
    return -((r - r.mean(-1, keepdim=True)).reshape(-1) * _seqsum(b)).mean()


def row0_baseline(b: Any) -> Any:
    """Row 0's reward as every row's baseline: not symmetric (and scaled by (k-1)/k)."""
    r = b.rewards.view(b.num_prompts, b.group_size)
    return -((r - r[:, :1]).reshape(-1) * _seqsum(b)).mean()


def order_dependent(b: Any) -> Any:
    """REINFORCE when each group's rows come in the responses' order, else row 0 counts twice.

    On one (sorted) ordering of each multiset it is REINFORCE, so summing multisets without
    the symmetry check would certify it; over all orderings it is biased.
    """
    v = b.vocab_size
    code = (b.tokens * v ** torch.arange(b.max_len - 1, -1, -1)).sum(-1).view(b.num_prompts, -1)
    ordered = (code[:, 1:] >= code[:, :-1]).all(-1)  # (P,)
    extra = torch.zeros_like(code, dtype=b.log_probs.dtype)
    extra[:, 0] = 1.0
    w = 1.0 + torch.where(ordered[:, None], torch.zeros_like(extra), extra)
    return -(w.reshape(-1) * b.rewards * _seqsum(b)).mean()


# --------------------------------------------------------------------------- the enumeration


@pytest.mark.parametrize(("v", "t", "k", "p"), [(2, 1, 3, 1), (3, 2, 2, 1), (2, 2, 2, 2), (2, 1, 4, 2)])
def test_multisets_with_their_counts_are_exactly_the_ordered_batches(v: int, t: int, k: int, p: int) -> None:
    space = response_space(v, t)
    ordered = enumerate_batches(space, k, p)
    sorted_rows = np.sort(ordered.reshape(-1, p, k), axis=2).reshape(ordered.shape)
    expected = collections.Counter(map(tuple, sorted_rows.tolist()))
    reps, counts = multiset_batches(space.num_responses, k, p)
    assert dict(zip(map(tuple, reps.tolist()), counts.tolist(), strict=True)) == dict(expected)
    assert counts.dtype == np.int64 and int(counts.sum()) == ordered.shape[0]
    source, copies = reordered_copies(reps, k, p)
    assert multiset_cost(space.num_responses, k, p) == reps.shape[0] + source.size
    groups, moved = reps[source].reshape(-1, p, k), copies.reshape(-1, p, k)
    assert np.array_equal(np.sort(moved, axis=2), groups)  # the same multiset in every group
    mixed = (groups != groups[:, :, :1]).any(axis=2)
    assert np.all((moved != groups).any(axis=2) == mixed)  # every mixed group re-ordered, no other


def test_the_fallback_now_covers_the_shapes_vmap_covered_on_ordered_batches() -> None:
    """Issue 16 item 4: the one-call-per-batch fallback (on ordered batches 14 of the 17 shapes
    vmap covered by default) covers all 17, and vmap covers all 18 default shapes."""
    args = ((2, 3, 4), (1,), 3, 3)
    old_vmap = {s.key for s in plan_shapes(*args, budget=MAX_BATCHES_VECTORISED)}
    old_loop = plan_shapes(*args, budget=MAX_BATCHES_LOOPED, extra_vocab_budget=LOOPED_EXTRA_VOCAB_BATCHES)
    new_loop = {s.key for s in plan_shapes(*args, budget=MULTISET_BATCHES_LOOPED, multiset=True)}
    new_vmap = {s.key for s in plan_shapes(*args, budget=MAX_BATCHES_VECTORISED, multiset=True)}
    assert (len(old_vmap), len(old_loop)) == (17, 14)
    assert old_vmap <= new_loop and len(new_loop) == 17
    assert len(new_vmap) == 18 and (4, 3, 1, 3) in new_vmap
    # two prompts: k = 3 up to T = 3 and k = 4 at V = 2, T <= 3 under vmap
    two = {s.key for s in plan_shapes((3, 4), (2,), 3, 3, budget=MAX_BATCHES_VECTORISED, multiset=True)}
    assert {(3, 2, 2, 2), (3, 3, 2, 2), (4, 1, 2, 2), (4, 2, 2, 2), (4, 3, 2, 2)} <= two


# --------------------------------------------------------------------------- symmetric: same sums


def test_a_symmetric_loss_gets_the_same_expectation_on_both_routes() -> None:
    """E[g], its variance and the expected token weights, problem by problem."""
    shapes = plan_shapes((3, 4), (1, 2), 3, 2, budget=MAX_BATCHES_VECTORISED, multiset=True)
    multiset = [s for s in shapes if s.route == "multiset"]
    assert len(multiset) >= 8
    with torch_threads():
        for shape in multiset:
            problems = battery(shape, kl_coef=0.1, off_policy=True)[:3]
            ordered = [
                dataclasses.replace(p, shape=shape.on_route("ordered"), _cache={}) for p in problems
            ]
            evaluator = TorchLoss(group_mean, sandbox=Sandbox())
            ours = evaluate_checked(evaluator, problems, rtol=None, atol=0.0, check_determinism=False)
            theirs = evaluator.evaluate(ordered, rtol=None, atol=0.0, check_determinism=False)
            for a, b in zip(ours, theirs, strict=True):
                scale = 1.0 + float(np.abs(b.magnitude).max())
                np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=SAME_SUM * scale)
                np.testing.assert_allclose(a.magnitude, b.magnitude, rtol=0, atol=SAME_SUM * scale)
                assert a.variance == pytest.approx(b.variance, rel=1e-10, abs=SAME_SUM * scale**2)
                wa, wb = a.token_weights, b.token_weights
                assert wa is not None and wb is not None
                np.testing.assert_allclose(wa, wb, rtol=0, atol=SAME_SUM * scale, equal_nan=True)


def test_a_symmetric_loss_gets_the_same_verdict_and_constants_on_both_routes() -> None:
    opts = {
        "group_sizes": (3, 4), "num_prompts": (1,), "vocab_size": 3, "max_len": 2, "kl_coef": 0.0,
        "off_policy": False, "seed": 0, "max_examples": 0, "rtol": None, "atol": 0.0,
    }
    decisions = []
    with torch_threads():
        for multiset in (False, True):
            evaluator = TorchLoss(group_mean, sandbox=Sandbox())
            run = _execute(evaluator, opts, MAX_BATCHES_VECTORISED, multiset=multiset)
            keys = sorted({s.key for s in run.shapes})
            assert any(s.route == "multiset" for s in run.shapes) == multiset
            decisions.append(decide(fault=False, mismatch=run.mismatch is not None,
                                    references=run.book.references(), keys=keys))
    ordered, multiset_ = decisions
    assert ordered.verdict == multiset_.verdict == "scaled"
    assert ordered.scale is not None and multiset_.scale is not None
    assert set(ordered.scale) == set(multiset_.scale)
    for key, c in ordered.scale.items():
        assert multiset_.scale[key] == pytest.approx(c, rel=SAME_SUM, abs=0)
        assert c == pytest.approx((key[0] - 1) / key[0], rel=1e-10)


# --------------------------------------------------------------------------- asymmetric: ordered


def test_a_row_0_baseline_is_judged_on_ordered_batches_and_says_so() -> None:
    report = check_sequence_loss(row0_baseline, group_sizes=(3,), max_len=2, max_examples=3)
    assert report.run is not None
    assert report.run.route_fallback.startswith("it is not symmetric in the rows of a prompt's group")
    assert report.run.multiset == ""
    assert "; over ordered batches only: it is not symmetric" in report.message
    assert report.verdict == "scaled", report.message  # (k-1)/k, exactly as before
    assert report.scale is not None
    assert all(c == pytest.approx(2 / 3, rel=1e-10) for c in report.scale.values())
    data = json.loads(report.to_json())
    assert data["run"]["route_fallback"] == report.run.route_fallback
    assert "multiset_shapes" not in data["run"]


def test_an_order_dependent_bias_is_caught_though_sorted_batches_hide_it() -> None:
    shapes = plan_shapes((3,), (1,), 2, 2, budget=MAX_BATCHES_VECTORISED, multiset=True)
    shape = next(s for s in shapes if s.route == "multiset" and s.max_len == 2)
    problem = battery(shape, kl_coef=0.0, off_policy=False)[1]
    with torch_threads():
        evaluator = TorchLoss(order_dependent, sandbox=Sandbox())
        (plain,) = evaluator.evaluate([problem], rtol=None, atol=0.0, check_determinism=False)
        # the sorted orderings alone: REINFORCE, E[g] = grad J
        np.testing.assert_allclose(plain.mean, problem.gradient, rtol=0, atol=1e-12)
        with pytest.raises(RouteChanged, match="gave different gradients"):
            evaluate_checked(evaluator, [problem], rtol=None, atol=0.0, check_determinism=False)
    report = check_sequence_loss(order_dependent, group_sizes=(3,), max_len=2, max_examples=3)
    assert report.verdict == "biased", report.message
    assert report.run is not None and "not symmetric" in report.run.route_fallback


def test_a_symmetric_check_says_which_shapes_took_the_route() -> None:
    report = check_sequence_loss(group_mean, group_sizes=(2, 3), max_len=2, max_examples=0)
    assert report.run is not None and report.run.route_fallback == ""
    assert report.run.multiset == "k=3, P=1: T=1..2 at V=2..3"  # k = 2, P = 1: no cheaper
    data = json.loads(report.to_json())
    assert data["run"]["multiset_shapes"] == report.run.multiset and "route_fallback" not in data["run"]


# --------------------------------------------------------------------------- the blind trial's bugs


def only_at_three_by_two(rewards: Any, mask: Any, log_probs: Any, group: Any) -> Any:
    """Per-batch weights: REINFORCE, except at k = 3, P = 2, where each response is divided by
    its length (biased once T >= 2)."""
    w = rewards[:, None] * mask / rewards.shape[0]
    if rewards.shape[0] == 6 and int(group.max()) == 1:
        w = w / mask.sum(-1, keepdims=True)
    return w


def drops_token_b(rewards: Any, mask: Any, log_probs: Any, tokens: Any) -> Any:
    """Per-batch weights that drop every response starting with token 2 (a tokenizer treating
    it as padding): biased only where V >= 3."""
    w = rewards[:, None] * mask / rewards.shape[0]
    return np.where(tokens[:, :1] == 2, 0.0, w)


def test_a_per_batch_weight_bias_only_at_k3_p2_t2_is_caught() -> None:
    """Before: k=3, P=2, T=2 has 729 ordered batches, over the per-batch budget of 256:
    'UNBIASED ... PARTIAL'.  Now 100 multisets and 91 copies."""
    report = check_token_weights(
        only_at_three_by_two, group_sizes=(3,), num_prompts=(2,), vocab_size=2, max_len=2,
        max_examples=0,
    )
    assert report.verdict == "biased", report.message
    assert not report.partial
    assert "k=3, T=2, P=2" in report.message


def test_a_bias_only_at_three_tokens_for_k4_p2_is_caught() -> None:
    """Before: V=3 at k=4, P=2 has 6,561 ordered batches, over the per-batch budget of 256,
    and V=2 cannot show it: 'UNBIASED'.  Now 225 multisets and 216 copies."""
    report = check_token_weights(
        drops_token_b, group_sizes=(4,), num_prompts=(2,), vocab_size=3, max_len=1, max_examples=0
    )
    assert report.verdict == "biased", report.message
    assert "V=3, T=1, k=4, P=2" in report.message


def test_the_fallback_catches_a_bias_only_at_v3_t3_k3() -> None:
    """A loss vmap cannot run (``.item()``), length-normalised only at V = 3, T = 3, k = 3:
    outside the fallback's ordered budget before (3,375 batches), inside it now (1,345)."""

    def loss(b: Any) -> Any:
        _ = float(b.rewards.sum().item())
        per = b.rewards * _seqsum(b)
        if b.vocab_size == 3 and b.max_len == 3 and b.group_size == 3:
            per = per / b.mask.sum(-1)
        return -per.mean()

    report = check_sequence_loss(loss, group_sizes=(3,), max_examples=0)
    assert report.run is not None and report.run.mode == "loop"
    assert report.verdict == "biased", report.message
    assert "V=3, T=3, k=3, P=1" in report.message
