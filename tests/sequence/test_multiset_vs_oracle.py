"""The multiset route's exact E[g] must equal the brute-force oracle's ordered sum (issue 15).

The oracle (``sequence_oracle``) visits every ordered batch one at a time; the engine on the
multiset route (``Shape(..., route="multiset")``, :mod:`properties.sequence.multisets`) sums
one ordering of each multiset of a group's responses, weighted by its exact number of
orderings, after checking on a re-ordered copy of every multiset that the loss is symmetric.
For every cross-checked catalogue entry at ``k = 3`` (one and two prompts) either the two
agree to round-off, or the engine refused the route (``RouteChanged``); the symmetric
entries named below must be accepted.  Budget: ~10 s of CPU (one core).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from sequence_oracle import loss_expectation, problem_set, weights_expectation  # noqa: E402
from test_engine_vs_oracle import AGREEMENT_TOL, CROSS_CHECKED, _translate  # noqa: E402

from impl.sequence_catalogue import get  # noqa: E402
from properties.sequence.evaluation import RouteChanged, Sandbox, TokenWeights  # noqa: E402
from properties.sequence.problems import SequenceProblem, Shape  # noqa: E402
from properties.sequence.run import evaluate_checked  # noqa: E402
from properties.sequence.torch_loss import TorchLoss  # noqa: E402

pytestmark = pytest.mark.torch

SYMMETRIC = frozenset(CROSS_CHECKED)
"""Every cross-checked entry is symmetric within a group: the multiset route must accept them
(the catalogue's asymmetric losses are judged on ordered batches, as the row-0 test shows)."""


def _multiset_mean(entry: Any, problem: Any) -> np.ndarray:
    args, _ = _translate(problem)
    st = entry.settings
    shape = Shape(
        problem.vocab_size, problem.max_len, problem.group_size, problem.num_prompts,
        bool(st.tool_tokens), args["sampler_theta"] is not None,
        "exact" if args["exact_values"] else "random" if args["value_table"] is not None else "",
        route="multiset",
    )
    pr = SequenceProblem(
        shape=shape, theta=args["theta"], rewards=args["rewards"], ref_theta=args["ref_theta"],
        old_theta=args["old_theta"], kl_coef=args["kl_coef"], label="oracle",
        sampler_theta=args["sampler_theta"], value_table=args["value_table"],
    )
    sandbox = Sandbox()
    evaluator: Any = (
        TorchLoss(entry.fn, sandbox=sandbox)
        if entry.protocol == "loss"
        else TokenWeights(entry.fn, batched=st.batched, sandbox=sandbox)
    )
    (ev,) = evaluate_checked(evaluator, [pr], rtol=None, atol=0.0, check_determinism=False)
    return np.asarray(ev.mean)


@pytest.mark.parametrize("name", CROSS_CHECKED)
def test_the_multiset_route_agrees_with_the_oracle_or_is_refused(name: str) -> None:
    entry = get(name)
    st = entry.settings
    problems = problem_set(
        group_sizes=(3,), num_prompts=st.num_prompts, vocab_size=st.vocab_size,
        max_len=st.max_len, off_policy=st.off_policy, kl_coef=st.kl_coef, seed=31,
        tool_tokens=st.tool_tokens, sampling_mismatch=st.sampling_mismatch, values=st.values or "",
    )
    assert problems
    for problem in problems:
        _, rows = _translate(problem)
        ours = (
            loss_expectation(entry.fn, problem)
            if entry.protocol == "loss"
            else weights_expectation(entry.fn, problem, batched=st.batched)
        )
        assert ours.mean is not None and ours.mean_abs is not None, ours.error
        try:
            mean = _multiset_mean(entry, problem)
        except RouteChanged as exc:
            assert name not in SYMMETRIC, f"{name}: {exc}"
            continue
        scale = 1.0 + max(float(ours.mean_abs.max()), float(np.abs(ours.gradient).max()))
        np.testing.assert_allclose(
            mean, ours.mean[:, rows], rtol=0, atol=AGREEMENT_TOL * scale,
            err_msg=f"{name}: E[g] on the multiset route differs on {problem!r}",
        )


def test_a_loss_that_treats_row_0_as_its_baseline_is_refused() -> None:
    """The oracle's exact E[g] of a row-0 baseline differs from its value on sorted batches."""

    def row0(b: Any) -> Any:
        r = b.rewards.view(b.num_prompts, b.group_size)
        return -((r - r[:, :1]).reshape(-1) * (b.log_probs * b.mask).sum(-1)).mean()

    class Entry:
        fn = staticmethod(row0)
        protocol = "loss"
        settings = get("rloo-verl-dict-loop").settings

    (problem,) = problem_set(group_sizes=(3,), num_prompts=(1,), vocab_size=2, max_len=1, seed=5)[:1]
    with pytest.raises(RouteChanged, match="not symmetric in the rows of a prompt's group"):
        _multiset_mean(Entry, problem)
