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
    SequenceCounterexample,
    assert_sequence_scaled,
    assert_sequence_unbiased,
    check_sequence_loss,
    check_token_weights,
)
from properties.sequence.region import ONE_PROMPT_BLIND_SPOT  # noqa: E402

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


# --------------------------------------------------------------------------- 3. partial checks


def weights_reinforce(rewards: Any, mask: Any, log_probs: Any) -> Any:
    return rewards[:, None] * mask / rewards.shape[0]


def test_a_check_that_dropped_a_requested_shape_is_partial_not_a_pass() -> None:
    # k=5, T=3 fits one prompt now (summed over multisets), but not two: 6,256 batches at V = 2
    report = check_token_weights(
        weights_reinforce, group_sizes=(2, 5), num_prompts=(2,), max_len=3, max_examples=0
    )
    assert report.verdict == "unbiased"  # the verdict's values are kept for old consumers
    assert report.partial
    assert report.run is not None and report.run.unchecked == ((5, 3, 2),)
    assert report.message.startswith(
        "Weight function 'weights_reinforce' is UNBIASED on the shapes checked; PARTIAL: "
        "not checked at any V (over the batch budget 1536): k=5, T=3, P=2:"
    )
    assert report.to_dict()["partial"] is True
    with pytest.raises(EstimatorCheckFailure, match="the check was partial"):
        assert_sequence_unbiased(report)
    assert assert_sequence_unbiased(report, allow_partial=True) is report


def test_a_complete_check_is_not_partial() -> None:
    report = check_sequence_loss(reinforce, **SMALL)
    assert report.verdict == "unbiased" and not report.partial
    assert "PARTIAL" not in report.message
    assert assert_sequence_unbiased(report) is report


def test_a_partial_pass_exits_non_zero(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from properties.cli import main

    path = tmp_path / "w.py"
    path.write_text(
        "def reinforce(b):\n    return -(b.rewards * (b.log_probs * b.mask).sum(-1)).mean()\n"
    )
    argv = ["check", f"{path}:reinforce", "--sequence", "--max-examples", "0", "--max-len", "2"]
    assert main([*argv, "--group-sizes", "2"]) == 0
    # k = 12 fits one prompt at T <= 2 now (summed over multisets), not two prompts at T = 2
    assert main([*argv, "--group-sizes", "12", "--num-prompts", "1,2"]) == 1
    out = capsys.readouterr().out
    assert "UNBIASED on the shapes checked; PARTIAL" in out


# --------------------------------------------------------------------------- 4. the region line


def test_the_region_line_lists_exactly_the_shapes_evaluated_and_the_rest() -> None:
    report = check_sequence_loss(reinforce, max_examples=0)  # defaults: V <= 3, T <= 3, k 2..4
    assert report.run is not None and report.run.mode == "vmap"
    evaluated = {text for text, _, _ in report.run.shapes}
    # V=3, T=3, k=4 (50,625 ordered batches) is summed as 3,060 multisets and their copies
    assert "V=3, T=3, k=4, P=1" in evaluated and len(evaluated) == 18
    assert "k=4, P=1: T=1..3 at V=2..3 (up to 50625 batches each)" in report.message
    assert (
        "summed over multisets of each group's responses (the symmetry within a group checked on a "
        "re-ordered copy of every multiset) on k=3, P=1: T=1..3 at V=2..3; k=4, P=1: T=1..3 at "
        "V=2..3, over ordered batches elsewhere" in report.message
    )
    assert "not evaluated" not in report.message and report.run.over_budget == ""
    assert not report.partial  # every (k, T, P) was checked at some V


def test_the_fallback_region_line_says_which_shapes_plain_calls_evaluated() -> None:
    def looped(b: Any) -> Any:  # .item(): vmap cannot run it
        scale = 1.0 + 0.0 * float(b.rewards.sum().item())
        return -scale * (b.rewards * (b.log_probs * b.mask).sum(-1)).mean()

    report = check_sequence_loss(looped, max_examples=0)
    assert report.verdict == "unbiased" and report.run is not None
    assert report.run.mode == "loop"
    assert "evaluated one batch at a time (plain calls) (fallback:" in report.message
    assert "V in {" not in report.message
    evaluated = {text for text, _, _ in report.run.shapes}
    assert "V=3, T=3, k=2, P=1" in evaluated  # 225 batches: within the looped budget
    assert "V=3, T=3, k=3, P=1" in evaluated  # 1,345 multisets and copies for 3,375 batches
    assert (
        ": k=2, P=1: T=1..3 at V=2..3; k=3, P=1: T=1..3 at V=2..3; k=4, P=1: T=1..2 at V=2..3, "
        "T=3 at V=2 (up to 3375 batches each)" in report.message
    )
    assert report.run.over_budget == "k=4, P=1: T=3 at V=3"
    # the shapes left out, then (one prompt per batch) the pooling blind spot
    assert (
        "not evaluated (over the batch budget 1536): k=4, P=1: T=3 at V=3; only one prompt per "
        "batch (P = 1) was evaluated" in report.message
    )


def test_a_check_that_cannot_show_length_bias_says_so() -> None:
    # k = 12 reaches T = 2 summed over multisets (and length_normalised is caught there); a
    # loss that weighs row 0 twice and row 1 not at all is not symmetric: ordered batches,
    # where only T = 1 at V = 2 fits (4,096 batches)
    def asymmetric(b: Any) -> Any:
        w = torch.ones(b.rewards.shape[0], dtype=b.log_probs.dtype)
        w[0], w[1] = 2.0, 0.0
        return -(w * _per_response(b).sum(-1) / b.mask.sum(-1)).mean()

    assert check_sequence_loss(length_normalised, group_sizes=(12,), max_examples=0).verdict == "biased"
    report = check_sequence_loss(asymmetric, group_sizes=(12,), max_examples=0)
    assert report.run is not None and "not symmetric in the rows" in report.run.route_fallback
    assert report.verdict == "unbiased" and report.partial
    assert "only T = 1 was evaluated" in report.message
    assert "no bias from response lengths" in report.message


def test_a_large_vocabulary_is_claimed_only_where_it_was_evaluated() -> None:
    report = check_sequence_loss(
        reinforce, vocab_size=12, max_len=4, group_sizes=(2,), max_examples=0
    )
    assert report.verdict == "unbiased" and not report.partial
    assert "k=2, P=1: T=1 at V=2..12, T=2 at V=2..9, T=3 at V=2..5, T=4 at V=2..3" in (
        report.message
    )
    assert report.run is not None
    assert report.run.over_budget == "k=2, P=1: T=2 at V=10..12, T=3 at V=6..12, T=4 at V=4..12"


# --------------------------------------------------------------------------- 5. extreme logits


def float32_log_of_softmax(b: Any) -> Any:
    """log(softmax(x)) in float32: -inf (then NaN) once a logit gap passes about 103."""
    x = b.logits.float()
    lp = torch.log(torch.softmax(x, -1)).gather(-1, b.tokens[..., None])[..., 0].double()
    return -(b.rewards * (lp * b.mask).sum(-1)).mean()


def softmax_without_the_maximum(b: Any) -> Any:
    """exp(logits) / sum: overflows once the logits are shifted far enough."""
    e = b.logits.exp()
    lp = (e / e.sum(-1, keepdim=True)).log().gather(-1, b.tokens[..., None])[..., 0]
    return -(b.rewards * (lp * b.mask).sum(-1)).mean()


@pytest.mark.parametrize(
    ("loss", "problem"),
    [
        (float32_log_of_softmax, "extreme logit gaps"),
        (softmax_without_the_maximum, "logits shifted by +1000"),
    ],
)
def test_extreme_and_shifted_logits_are_tried(loss: Any, problem: str) -> None:
    report = check_sequence_loss(loss, **SMALL)
    assert report.verdict == "error", report.message
    assert report.error is not None and report.error.kind == "non-finite"
    assert problem in report.message


def test_the_region_line_gives_the_value_ranges() -> None:
    report = check_sequence_loss(reinforce, **SMALL)
    assert report.run is not None
    ranges = report.run.ranges
    assert ranges["log_prob_min"] is not None and ranges["log_prob_min"] < -200
    assert ranges["logit_max"] is not None and ranges["logit_max"] > 999
    assert "token log-probs down to -24" in report.message
    assert "rewards in [" in report.message


# --------------------------------------------------------------------------- 6. where the error is


def float32_eye_baseline(b: Any) -> Any:
    base = torch.matmul(1 - torch.eye(b.rewards.shape[0]), b.rewards)  # float32 @ float64: raises
    return -((b.rewards - base) * (b.log_probs * b.mask).sum(-1)).mean()


def test_an_error_inside_a_torch_call_names_the_users_line() -> None:
    report = check_sequence_loss(float32_eye_baseline, group_sizes=(2,), max_examples=0)
    assert report.verdict == "error" and report.error is not None
    assert report.error.kind == "raised"
    line = float32_eye_baseline.__code__.co_firstlineno + 1
    assert f"test_sequence_hostile.py:{line} in float32_eye_baseline)" in report.message
    assert "torch_loss.py" not in report.message and "torch_inputs.py" not in report.message


# --------------------------------------------------------------------------- 7. the weight table


def half_weight_when_truncated(b: Any) -> Any:
    """A response that hit max_len without EOS gets half the weight: biased."""
    has_eos = ((b.tokens == 0) & (b.mask > 0)).any(-1)
    w = torch.where(has_eos, 1.0, 0.5).to(b.rewards.dtype)
    return -(w * b.rewards * (b.log_probs * b.mask).sum(-1)).mean()


def test_the_weight_table_shows_the_truncated_response_where_the_misfit_is() -> None:
    report = check_sequence_loss(half_weight_when_truncated, **SMALL)
    assert report.verdict == "biased"
    cex = report.counterexample
    assert isinstance(cex, SequenceCounterexample) and cex.length_pair
    shown = [row.response for row in cex.length_pair]
    assert any(text.endswith("(truncated)") for text in shown), report.message
    assert "whose weights depart most from REINFORCE's" in report.message


def test_a_check_stopped_at_a_counterexample_claims_no_blind_spot() -> None:
    report = check_sequence_loss(half_weight_when_truncated, **SMALL)
    assert report.verdict == "biased" and report.run is not None
    # nothing it did not reach is claimed (no "only T = 1", "only V = 2"); P = 1 holds throughout
    assert report.run.blind_spots == (ONE_PROMPT_BLIND_SPOT,)
    assert "not reached (the check stopped at the first failure)" in report.message


def test_a_fallback_during_the_round_off_rerun_restarts_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from properties.sequence import run  # the check and its notes run there (_execute_with_notes)

    real = run._roundoff_note
    calls: list[int] = []

    def falls_back_once(run: Any, evaluator: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # as when the rerun's new problems show vmap and plain calls apart
            evaluator._fallback("under torch.func.vmap it gave a different loss (test)")
        return real(run, evaluator, *args, **kwargs)

    monkeypatch.setattr(run, "_roundoff_note", falls_back_once)
    report = check_sequence_loss(reinforce, **SMALL)
    assert report.verdict == "unbiased" and report.run is not None
    assert report.run.mode == "loop" and len(calls) == 2


def test_round_off_of_a_loss_that_cancels_to_zero_is_not_a_vmap_difference() -> None:
    from impl.sequence_catalogue import SEQUENCE_CATALOGUE

    entry = next(e for e in SEQUENCE_CATALOGUE if e.name == "rloo-group-index-multi-prompt")
    # on V=3, T=1, k=3 one batch's loss is -7e-17 under vmap and 4e-17 in a plain call
    report = check_sequence_loss(entry.fn, group_sizes=(3,), max_len=1, max_examples=0)
    assert report.verdict == "unbiased", report.message
    assert report.run is not None and report.run.mode == "vmap", report.run.fallback_reason
