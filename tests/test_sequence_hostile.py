"""The sequence checker against hostile and unusual losses (issue 15): vmap must not change
the verdict, the scale is keyed by what a model fixes, partial checks say so, the region
line is true, extreme logits are tried, errors name the user's line.

Each test failed on the code before its fix (see the commit that adds it).
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from properties.onestep.checker import EstimatorCheckFailure  # noqa: E402 - after the torch skip
from properties.sequence import torch_loss  # noqa: E402
from properties.sequence.checker import (  # noqa: E402
    assert_sequence_scaled,
    check_sequence_loss,
)

pytestmark = pytest.mark.torch

SMALL: dict[str, Any] = {"group_sizes": (2, 3), "max_len": 2, "max_examples": 3}


def _per_response(b: Any) -> Any:
    return b.rewards[:, None] * b.log_probs * b.mask


def reinforce(b: Any) -> Any:
    """Token sum per response, mean over the batch: unbiased (P = 1)."""
    return -(_per_response(b).sum(-1)).mean()


def length_normalised(b: Any) -> Any:
    """1/|y| per response: biased for T >= 2."""
    return -(_per_response(b).sum(-1) / b.mask.sum(-1)).mean()


# --------------------------------------------------------------------------- 1. vmap


def branches_on_requires_grad(b: Any) -> Any:
    """Training branch (log_probs requires grad): length-normalised, biased.  Under vmap
    log_probs reports requires_grad=False, so vmap sees only the unbiased eval branch."""
    if b.log_probs.requires_grad:
        return length_normalised(b)
    return -_per_response(b).sum() / b.rewards.shape[0]


def branches_on_batched_tensor(b: Any) -> Any:
    """The same, telling vmap apart by torch._C._functorch.is_batchedtensor."""
    if not torch._C._functorch.is_batchedtensor(b.log_probs):
        return length_normalised(b)
    return -_per_response(b).sum() / b.rewards.shape[0]


def detached_when_no_grad(b: Any) -> Any:
    """A correct loss that returns a detached value in eval mode: unbiased in training."""
    val = reinforce(b)
    return val if b.log_probs.requires_grad else val.detach()


def biased_only_under_vmap(b: Any) -> Any:
    """Unbiased in plain calls; length-normalised (biased) under vmap."""
    if torch._C._functorch.is_batchedtensor(b.log_probs):
        return length_normalised(b)
    return reinforce(b)


@pytest.mark.parametrize("loss", [branches_on_requires_grad, branches_on_batched_tensor])
def test_a_loss_that_tells_vmap_apart_is_judged_on_plain_calls(loss: Any) -> None:
    report = check_sequence_loss(loss, **SMALL)
    assert report.verdict == "biased"
    assert report.run is not None and report.run.mode == "loop"
    assert report.run.fallback_reason is not None
    assert "plain calls are judged" in report.run.fallback_reason
    assert "plain calls are judged" in report.message


def test_a_detached_eval_branch_falls_back_instead_of_no_grad() -> None:
    report = check_sequence_loss(detached_when_no_grad, **SMALL)
    assert report.verdict == "unbiased", report.message
    assert report.run is not None and report.run.mode == "loop"
    assert "no gradient path" in (report.run.fallback_reason or "")


def test_a_counterexample_found_under_vmap_is_confirmed_by_plain_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # without the sampled confirmation, only the counterexample's re-check sees the difference
    monkeypatch.setattr(torch_loss, "CONFIRM_BATCHES", 0, raising=False)
    report = check_sequence_loss(biased_only_under_vmap, **SMALL)
    assert report.verdict == "unbiased", report.message
    assert report.run is not None and report.run.mode == "loop"
    assert "different loss" in (report.run.fallback_reason or "")


# --------------------------------------------------------------------------- 2. the scale key


def vocabulary_mean(b: Any) -> Any:
    """One-hot times log-softmax, averaged over the vocabulary: c = 1/V, fixed for a model."""
    onehot = torch.nn.functional.one_hot(b.tokens, b.vocab_size).to(b.logits.dtype)
    per_token = (onehot * torch.log_softmax(b.logits, -1)).mean(-1)
    return -(b.rewards * (per_token * b.mask).sum(-1)).mean()


def test_a_scale_that_depends_on_the_vocabulary_is_scaled_not_biased() -> None:
    report = check_sequence_loss(vocabulary_mean, **SMALL)
    assert report.verdict == "scaled", report.message
    assert report.scale is not None
    assert set(report.scale) == {(k, t, 1, v) for k in (2, 3) for t in (1, 2) for v in (2, 3)}
    for (_k, _t, _p, v), c in report.scale.items():
        assert abs(c - 1.0 / v) < 1e-9
    assert "per (k, T, P, V)" in report.message
    assert "k=2, T=1, P=1, V=3: c = 0.333333333333" in report.message
    assert "has the value of 1/V" in report.message
    assert_sequence_scaled(report, lambda k, t, p, v: 1.0 / v)
    with pytest.raises(EstimatorCheckFailure, match="scaled with c"):
        assert_sequence_scaled(report, lambda k, t, p: 0.5)


def reversed_rewards_baseline(b: Any) -> Any:
    """Reversed rewards as a baseline: c = 2/3 at k = 3 (the value of (k-1)/k, another cause)."""
    r = b.rewards.view(b.num_prompts, b.group_size)
    base = r.flip(-1)
    return -((r - base).reshape(-1) * (b.log_probs * b.mask).sum(-1)).mean()


def test_a_scale_hint_names_a_value_not_a_cause() -> None:
    report = check_sequence_loss(
        reversed_rewards_baseline, group_sizes=(3,), max_len=1, max_examples=0
    )
    assert report.verdict == "scaled", report.message
    assert "c = 0.666666666667" in report.message
    assert "has the value of (k-1)/k" in report.message
    assert "= (k-1)/k, the self-inclusive group mean" not in report.message
