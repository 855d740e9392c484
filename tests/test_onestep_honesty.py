"""Issue 15 on the one-step checker: no silent pass, no guessed cause, range as round-off.

* a scale hint says what the value equals ("has the value of ..."), never that a named
  code is the cause: other codes have the same value;
* a multi-prompt check whose call budget capped ``n`` below what the protocol checks
  elsewhere is *partial*: the message, ``to_dict``, ``assert_*`` and the exit status say so;
* a counterexample whose scores float32 flushes to zero says what the verdict is at
  representable magnitudes (a second run, rescaled), as round-off already does.

Time budget: a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from properties.cli import main
from properties.judging.verdict import RANGE_LIMITS, into_range, outside_range
from properties.onestep.checker import (
    EstimatorCheckFailure,
    assert_scaled,
    assert_unbiased,
    check_estimator,
)
from properties.onestep.messages import _range_text
from properties.onestep.results import RangeNote

FEW = 5
"""max_examples where the battery decides (it always runs in full)."""


def _softmax(logits: Any) -> Any:
    p = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def _reinforce(logits: Any, samples: Any, rewards: Any) -> Any:
    p = _softmax(logits)
    return np.mean(rewards[:, None] * (np.eye(p.size)[samples] - p), axis=0)


# --------------------------------------------------------------------------- scale hints


def test_reversed_rewards_baseline_is_not_explained_as_the_self_inclusive_group_mean() -> None:
    """Old: 'c_k = 0.666666666667 (+- ...) = (k-1)/k, the self-inclusive group mean'.

    The baseline of sample ``j`` is the reward of sample ``k-1-j``: leave-one-out except for
    the middle sample at odd ``k``, so ``c_k = (k-1)/k`` at ``k = 3, 5`` without any mean."""

    def reversed_baseline(logits: Any, samples: Any, rewards: Any) -> Any:
        p = _softmax(logits)
        return np.mean((rewards - rewards[::-1])[:, None] * (np.eye(p.size)[samples] - p), axis=0)

    report = check_estimator(reversed_baseline, group_sizes=(3, 5), max_examples=FEW)
    assert report.verdict == "scaled", report.message
    assert report.scale is not None and abs(report.scale[3] - 2 / 3) < 1e-9
    assert "which has the value of (k-1)/k, the scale of a self-inclusive group mean" in report.message
    assert "= (k-1)/k" not in report.message


def test_a_doubled_gradient_is_not_explained_as_a_sum_over_the_group() -> None:
    """Old: 'k=2, P=1: c = 2 (+- ...) = k, a sum over the group instead of a mean'."""

    def doubled(logits: Any, samples: Any, rewards: Any, group: Any) -> Any:
        p = _softmax(logits)
        return 2.0 * rewards[:, None] * (np.eye(p.shape[1])[samples] - p) / rewards.size

    report = check_estimator(doubled, group_sizes=(2,), num_prompts=(1, 2), max_examples=FEW)
    assert report.verdict == "scaled", report.message
    assert "which has the value of k, the scale of a sum over the group" in report.message
    assert "= k," not in report.message


# --------------------------------------------------------------------------- partial checks


def _pooled_mean(logits: Any, samples: Any, rewards: Any, group: Any) -> Any:
    """REINFORCE averaged over all P*k rows: unbiased for the mean objective over prompts."""
    p = _softmax(logits)
    return (rewards / rewards.size)[:, None] * (np.eye(p.shape[1])[samples] - p)


def _pooled_baseline(logits: Any, samples: Any, rewards: Any, group: Any) -> Any:
    """The batch's mean reward as baseline: scaled by (Pk-1)/(Pk)."""
    return _pooled_mean(logits, samples, rewards - rewards.mean(), group)


def test_a_multi_prompt_check_with_n_capped_by_the_budget_is_partial() -> None:
    """Old: 'is UNBIASED' and assert_unbiased passed although at (k, P) = (4, 2) only n = 2
    was checked (a bias only at n >= 3 there went unseen in the blind trial)."""
    report = check_estimator(_pooled_mean, group_sizes=(4,), num_prompts=(2,), max_examples=0)
    assert report.verdict == "unbiased", report.message
    assert report.partial and not report.ok
    assert report.unchecked == (
        "n=3..5 at k=4, P=2 (n**(k*P) = 6561 joint batches at n=3, over the budget of 1024 "
        "calls per problem)",
    )
    assert report.message.startswith("Estimator '_pooled_mean' is UNBIASED (PARTIAL CHECK): ")
    assert "Not checked: n=3..5 at k=4, P=2" in report.message
    data = json.loads(report.to_json())
    assert data["partial"] is True and data["unchecked"] == list(report.unchecked)
    with pytest.raises(EstimatorCheckFailure, match="a full check"):
        assert_unbiased(report)
    assert assert_unbiased(report, allow_partial=True) is report


def test_assert_scaled_fails_on_a_partial_check_unless_allowed() -> None:
    report = check_estimator(_pooled_baseline, group_sizes=(3,), num_prompts=(2,), max_examples=0)
    assert report.verdict == "scaled" and report.partial, report.message
    assert "is SCALED (PARTIAL CHECK)" in report.message
    with pytest.raises(EstimatorCheckFailure, match="allow_partial=True"):
        assert_scaled(report, lambda k, p: (k * p - 1) / (k * p))
    assert_scaled(report, lambda k, p: (k * p - 1) / (k * p), allow_partial=True)
    with pytest.raises(EstimatorCheckFailure, match="allow_partial=True"):  # also when checking
        assert_scaled(_pooled_baseline, group_sizes=(3,), num_prompts=(2,), max_examples=0)


def test_a_full_check_is_not_partial_and_its_json_is_unchanged() -> None:
    """Where the budget reaches every n the protocol checks, nothing changes: no keys added."""
    report = check_estimator(_pooled_mean, group_sizes=(2,), num_prompts=(1, 2), max_examples=0)
    assert report.verdict == "unbiased" and not report.partial and report.ok
    assert report.unchecked == ()
    data = report.to_dict()
    assert "partial" not in data and "unchecked" not in data
    assert "PARTIAL" not in report.message and "Not checked" not in report.message
    assert_unbiased(report)


def test_a_biased_verdict_is_never_partial() -> None:
    def whitened(logits: Any, samples: Any, rewards: Any, group: Any) -> Any:
        a = (rewards - rewards.mean()) / (rewards.std() + 1e-8)
        return _pooled_mean(logits, samples, a, group)

    report = check_estimator(whitened, group_sizes=(4,), num_prompts=(2,), max_examples=0)
    assert report.verdict == "biased" and not report.partial


def test_the_command_line_exits_1_on_a_partial_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Old: exit 0."""
    path = tmp_path / "pooled.py"
    path.write_text(
        "import numpy as np\n\n"
        "def mean_loss(logits, samples, rewards, group):\n"
        "    p = np.exp(logits - logits.max(axis=1, keepdims=True))\n"
        "    p /= p.sum(axis=1, keepdims=True)\n"
        "    return (rewards / rewards.size)[:, None] * (np.eye(p.shape[1])[samples] - p)\n"
    )
    argv = ["check", f"{path}:mean_loss", "--num-prompts", "2", "--group-sizes", "4"]
    assert main([*argv, "--max-examples", "0", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "unbiased" and data["partial"] is True


# --------------------------------------------------------------------------- range


def _f32_group_mean(logits: Any, samples: Any, rewards: Any) -> Any:
    """verl's pattern: the group-mean baseline computed in float32 inside float64 code."""
    p = _softmax(logits)
    baseline = np.float64(rewards.astype(np.float32).mean(dtype=np.float32))
    return np.mean((rewards - baseline)[:, None] * (np.eye(p.size)[samples] - p), axis=0)


def test_a_counterexample_that_float32_flushes_to_zero_says_the_verdict_at_normal_magnitudes() -> None:
    """Old: 'BIASED' on scores like (0, 8.4e-75), which float32 flushes to 0 (the baseline
    vanishes: plain REINFORCE there), with no note; Hypothesis shrank toward them."""
    report = check_estimator(_f32_group_mean, rtol=1e-5, group_sizes=(2, 3), max_examples=30)
    assert report.verdict == "biased", report.message
    cex = report.counterexample
    assert cex is not None and cex.out_of_range is not None, report.message
    assert 0 < float(np.max(np.abs(cex.scores))) < RANGE_LIMITS[0]
    note = cex.out_of_range
    assert (note.direction, note.dtype, note.verdict) == ("underflows", "float32", "scaled")
    assert note.scale is not None and set(note.scale) == {2, 3}
    for k, c in note.scale.items():
        assert abs(c - (k - 1) / k) < 1e-5  # float32's round-off of the baseline, rtol=1e-5
    assert note.largest == float(np.max(np.abs(cex.scores)))
    assert "Biased only where float32 underflows; at representable magnitudes: SCALED: c_2 = 0.5" in report.message
    assert "has the value of (k-1)/k" in report.message
    assert "not shrunk" in cex.found_by  # kept aside, not shrunk toward scores float32 flushes
    assert report.to_dict()["counterexample"]["out_of_range"]["verdict"] == "scaled"


def test_an_in_range_counterexample_has_no_range_note_and_its_json_is_unchanged() -> None:
    def sign_bug(logits: Any, samples: Any, rewards: Any) -> Any:
        return -_reinforce(logits, samples, rewards)

    report = check_estimator(sign_bug, group_sizes=(2,), max_examples=0)
    assert report.verdict == "biased" and report.counterexample is not None
    assert report.counterexample.out_of_range is None
    assert "out_of_range" not in report.to_dict()["counterexample"]
    assert "Range?" not in report.message


def test_a_bias_at_normal_magnitudes_too_is_said_plainly() -> None:
    note = RangeNote(largest=1e-300, direction="underflows", dtype="float32", verdict="biased", scale=None)
    text = _range_text(note)
    assert "At representable magnitudes the verdict is BIASED too" in text
    assert "Biased only where" not in text
    over = _range_text(RangeNote(1e300, "overflows", "float32", "unbiased", {2: 1.0}))
    assert "above float32's largest number" in over
    assert "Biased only where float32 overflows; at representable magnitudes: UNBIASED" in over


def test_rescaling_into_float32s_range_is_exact_and_only_where_needed() -> None:
    scores = np.array([0.0, -5.74143556e-109, 4.27663506e-308])
    assert outside_range(scores) == "underflows"
    rescaled, factor = into_range(scores)
    assert outside_range(rescaled) is None and 0.5 <= float(np.max(np.abs(rescaled))) < 1.0
    np.testing.assert_array_equal(rescaled / factor, scores)  # powers of two: exact
    assert outside_range(np.array([1e-3, 1.0])) is None


def test_the_multi_prompt_protocol_keeps_range_only_mismatches_aside_too() -> None:
    """A mismatch only at scores float32 flushes is kept aside (not raised for Hypothesis to
    shrink) and, with nothing else found, reported with the verdict at normal magnitudes."""
    import time

    from properties.judging.verdict import judge
    from properties.onestep.checker import _make_report
    from properties.onestep.run import _check

    def doubled_when_tiny(logits: Any, samples: Any, rewards: Any, group: Any) -> Any:
        c = 2.0 if np.abs(rewards).max() < RANGE_LIMITS[0] else 1.0
        return _pooled_mean(logits, samples, c * rewards, group)

    run = _check(doubled_when_tiny, (2,), seed=0, max_examples=0, batched=False, rtol=None, atol=0.0,
                 progress=None, prompts=(2,))
    tiny = np.array([[0.0, 1e-300], [0.0, 2e-300]])
    ev = run._evaluate(np.zeros((2, 2)), tiny, 2, source="hypothesis", order=999, determinism=False, rows=False)
    reference = run.book.reference(ev.key)
    assert reference is not None
    found = judge(ev, reference)
    assert found is not None
    assert run._at_representable_magnitudes(found) is None and run.range_only == [found]
    run.take_range_only()
    report = _make_report("doubled_when_tiny", run, time.perf_counter())
    assert report.verdict == "biased" and report.counterexample is not None
    note = report.counterexample.out_of_range
    assert note is not None and (note.verdict, note.scale) == ("unbiased", {(2, 2): 1.0})
    assert "at representable magnitudes: UNBIASED: c(k=2, P=2) = 1" in report.message


# --------------------------------------------------------------------------- per-group partial


def _zeroes_answers_from_2_on(logits: Any, samples: Any, rewards: Any) -> Any:
    """Leave-one-out REINFORCE that drops every coordinate >= 2: biased only where n >= 3."""
    logits, samples, rewards = np.asarray(logits), np.asarray(samples), np.asarray(rewards)
    k = samples.shape[-1]
    p = _softmax(logits)
    onehot = np.eye(logits.shape[-1])[samples]  # (B, k, n)
    baseline = (rewards.sum(-1, keepdims=True) - rewards) / (k - 1)
    g = (((rewards - baseline)[..., None]) * (onehot - p)).sum(-2) / k
    g[..., 2:] = 0.0
    return g


def test_a_group_size_whose_budget_caps_n_is_a_partial_check() -> None:
    """The blind trial's G2: at k = 10 only n = 2 fits the budget, where this bug cannot show.

    Before, the verdict was UNBIASED, assert_unbiased passed and the command line exited 0.
    """
    report = check_estimator(_zeroes_answers_from_2_on, batched=True, group_sizes=(10,), max_examples=FEW)
    assert report.verdict == "unbiased"
    assert report.partial and report.unchecked and "k=10" in report.unchecked[0]
    assert "PARTIAL CHECK" in report.message
    with pytest.raises(EstimatorCheckFailure):
        assert_unbiased(report)
    assert assert_unbiased(report, allow_partial=True) is report
    # where n >= 3 fits, the same estimator is caught
    small = check_estimator(_zeroes_answers_from_2_on, batched=True, group_sizes=(2,), max_examples=FEW)
    assert small.verdict == "biased"


def test_the_default_group_sizes_are_a_full_per_group_check() -> None:
    report = check_estimator(_zeroes_answers_from_2_on, batched=True, max_examples=0)
    assert report.verdict == "biased" and not report.partial
    from impl.estimators import reinforce

    full = check_estimator(reinforce, batched=True, max_examples=FEW)
    assert full.verdict == "unbiased" and not full.partial and "partial" not in full.to_dict()
