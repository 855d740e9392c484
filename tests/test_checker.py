"""Unit tests for the estimator checker (properties.onestep.checker) and ``ida-verify check``.

Fast: every check here uses small ``max_examples``; the catalogue-wide quality tier
lives in tests/quality/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from impl.errors import InvalidArgument
from impl.estimators import group_mean_baseline, reinforce, rloo
from properties.cli import main
from properties.onestep.checker import (
    EstimatorCheckFailure,
    EstimatorReport,
    assert_scaled,
    assert_unbiased,
    check_estimator,
    expectation_of,
)

FEW = 15
"""max_examples for the fast unit tests (the battery runs in full regardless)."""


def _softmax(logits: Any) -> Any:
    p = np.exp(logits - np.max(logits))
    return p / p.sum()


def per_group_reinforce(logits: Any, samples: Any, rewards: Any) -> Any:
    p = _softmax(logits)
    return np.mean(rewards[:, None] * (np.eye(p.size)[samples] - p), axis=0)


def per_group_rloo(logits: Any, samples: Any, rewards: Any) -> Any:
    p = _softmax(logits)
    k = rewards.size
    baseline = (rewards.sum() - rewards) / (k - 1)
    return np.mean((rewards - baseline)[:, None] * (np.eye(p.size)[samples] - p), axis=0)


# --------------------------------------------------------------------------- verdicts


def test_correct_estimators_are_unbiased_batched_and_per_group() -> None:
    for fn, batched in (
        (reinforce, True),
        (rloo, True),
        (per_group_reinforce, False),
        (per_group_rloo, False),
    ):
        report = check_estimator(fn, batched=batched, max_examples=FEW)
        assert report.verdict == "unbiased", report.message
        assert report.scale == {2: 1.0, 3: 1.0, 4: 1.0}
        assert report.counterexample is None and report.error is None
        assert report.ok


def test_self_inclusive_baseline_is_scaled_by_k_minus_1_over_k() -> None:
    report = check_estimator(group_mean_baseline, batched=True, max_examples=FEW)
    assert report.verdict == "scaled", report.message
    assert report.scale is not None
    for k, c in report.scale.items():
        assert c == pytest.approx((k - 1) / k, rel=1e-12, abs=0.0)
    assert "(k-1)/k" in report.message


def test_self_inclusive_baseline_at_k1_is_biased() -> None:
    # at k = 1 the group mean is the sample itself: g = 0, c_1 = 0
    report = check_estimator(group_mean_baseline, batched=True, group_sizes=(1, 2), max_examples=0)
    assert report.verdict == "biased"
    assert report.counterexample is not None and report.counterexample.k == 1
    assert "<= 0" in report.counterexample.reason


def test_sign_bug_reports_multiple_minus_one() -> None:
    def descent(logits: Any, samples: Any, rewards: Any) -> Any:
        return -per_group_reinforce(logits, samples, rewards)

    report = check_estimator(descent, max_examples=FEW)
    assert report.verdict == "biased"
    cex = report.counterexample
    assert cex is not None and cex.multiple == pytest.approx(-1.0, rel=1e-12, abs=0.0)
    assert cex.scores.size == 2  # the simplest problem already shows it


def test_bias_of_one_part_in_a_million_is_found() -> None:
    def tiny_bias(logits: Any, samples: Any, rewards: Any) -> Any:
        g = per_group_reinforce(logits, samples, rewards)
        p = _softmax(logits)
        return g * (1 + 1e-6 * p[samples].mean())  # relative bias ~1e-6, depends on p

    report = check_estimator(tiny_bias, max_examples=FEW)
    assert report.verdict == "biased", report.message


def test_float32_output_of_a_correct_estimator_is_unbiased() -> None:
    def f32(logits: Any, samples: Any, rewards: Any) -> Any:
        return per_group_reinforce(logits, samples, rewards).astype(np.float32)

    assert check_estimator(f32, max_examples=FEW).verdict == "unbiased"


def test_list_and_tuple_outputs_are_accepted() -> None:
    def as_list(logits: Any, samples: Any, rewards: Any) -> Any:
        return [np.float64(v) for v in per_group_reinforce(logits, samples, rewards)]

    assert check_estimator(as_list, max_examples=FEW).verdict == "unbiased"


def test_hypothesis_finds_and_shrinks_a_bias_the_battery_misses() -> None:
    # biased only for scores of moderate size (20, 500): no battery problem has one
    def mid_range_bug(logits: Any, samples: Any, rewards: Any) -> Any:
        r = np.where((np.abs(rewards) > 20) & (np.abs(rewards) < 500), 1.01 * rewards, rewards)
        return per_group_reinforce(logits, samples, r)

    report = check_estimator(mid_range_bug, max_examples=200)
    assert report.verdict == "biased", report.message
    cex = report.counterexample
    assert cex is not None and cex.found_by.startswith("hypothesis")
    assert cex.scores.size == 2 and cex.k == 2  # shrunk to the fewest answers, smallest k
    assert np.any((np.abs(cex.scores) > 20) & (np.abs(cex.scores) < 500))


def test_bias_only_at_k1_is_found_when_k1_is_checked() -> None:
    def k1_bug(logits: Any, samples: Any, rewards: Any) -> Any:
        if rewards.size == 1:
            return np.zeros(np.size(logits))
        return per_group_rloo(logits, samples, rewards)

    assert check_estimator(k1_bug, max_examples=FEW).verdict == "unbiased"
    report = check_estimator(k1_bug, group_sizes=(1, 2, 3), max_examples=FEW)
    assert report.verdict == "biased" and report.counterexample is not None
    assert report.counterexample.k == 1


def test_nonzero_expectation_where_gradient_is_zero() -> None:
    def bonus(logits: Any, samples: Any, rewards: Any) -> Any:
        p = _softmax(logits)
        return per_group_reinforce(logits, samples, rewards) + 1e-6 * (p - 1 / p.size)

    report = check_estimator(bonus, max_examples=FEW)
    assert report.verdict == "biased"


def test_scale_varying_with_the_problem_is_biased() -> None:
    def std_normalised(logits: Any, samples: Any, rewards: Any) -> Any:
        r = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
        return per_group_reinforce(logits, samples, r)

    report = check_estimator(std_normalised, max_examples=FEW)
    assert report.verdict == "biased"
    assert report.counterexample is not None


# --------------------------------------------------------------------------- errors


def _raises(logits: Any, samples: Any, rewards: Any) -> Any:
    raise ZeroDivisionError("boom")


def _none(logits: Any, samples: Any, rewards: Any) -> Any:
    return None


def _wrong_shape(logits: Any, samples: Any, rewards: Any) -> Any:
    return per_group_reinforce(logits, samples, rewards)[:-1]


def _nan(logits: Any, samples: Any, rewards: Any) -> Any:
    with np.errstate(invalid="ignore", divide="ignore"):
        return per_group_reinforce(logits, samples, np.exp(np.log(rewards)))  # NaN for r < 0


def _noisy(logits: Any, samples: Any, rewards: Any) -> Any:
    return per_group_reinforce(logits, samples, rewards) + np.random.default_rng().normal(
        size=np.size(logits)
    )


def _mutates(logits: Any, samples: Any, rewards: Any) -> Any:
    rewards -= rewards.mean()
    return per_group_reinforce(logits, samples, rewards)


def _mutates_logits(logits: Any, samples: Any, rewards: Any) -> Any:
    logits -= logits.max()
    return per_group_reinforce(logits, samples, rewards)


def _strings(logits: Any, samples: Any, rewards: Any) -> Any:
    return ["a"] * np.size(logits)


def _complex(logits: Any, samples: Any, rewards: Any) -> Any:
    return per_group_reinforce(logits, samples, rewards) + 0j


@pytest.mark.parametrize(
    ("fn", "kind", "needle"),
    [
        (_raises, "raised", "ZeroDivisionError"),
        (_none, "returned-none", "None"),
        (_wrong_shape, "wrong-shape", "shape (1,)"),
        (_nan, "non-finite", "nan"),
        (_noisy, "nondeterministic", "sampling check"),
        (_mutates, "mutated-input", "rewards"),
        (_mutates_logits, "mutated-input", "logits"),
        (_strings, "bad-type", "dtype"),
        (_complex, "bad-type", "complex"),
    ],
)
def test_misbehaviour_is_an_error_verdict_naming_the_input(fn: Any, kind: str, needle: str) -> None:
    report = check_estimator(fn, max_examples=FEW)
    assert report.verdict == "error", report.message
    assert report.error is not None and report.error.kind == kind, report.message
    assert needle in report.message
    assert "fn(logits=np.array(" in report.message or kind == "nondeterministic"


def test_batched_flag_mismatch_gives_a_hint() -> None:
    report = check_estimator(reinforce, batched=False, max_examples=0)
    assert report.verdict == "error" and "batched=True" in report.message
    report = check_estimator(per_group_reinforce, batched=True, max_examples=0)
    assert report.verdict == "error" and "batched=False" in report.message


def test_error_found_by_hypothesis_names_the_shrunk_input() -> None:
    def fails_on_mid_scores(logits: Any, samples: Any, rewards: Any) -> Any:
        if np.any((np.abs(rewards) > 20) & (np.abs(rewards) < 500)):
            raise RuntimeError("unexpected reward")
        return per_group_reinforce(logits, samples, rewards)

    report = check_estimator(fails_on_mid_scores, max_examples=200)
    assert report.verdict == "error" and report.error is not None
    assert report.error.kind == "raised" and report.error.found_by.startswith("hypothesis")
    assert report.error.scores is not None and report.error.scores.size == 2


def test_checker_never_mutates_or_keeps_writeable_views() -> None:
    seen: list[bool] = []

    def spy(logits: Any, samples: Any, rewards: Any) -> Any:
        seen.extend(a.flags.writeable for a in (logits, samples, rewards))
        return per_group_reinforce(logits, samples, rewards)

    check_estimator(spy, max_examples=0, group_sizes=(2,))
    assert seen and not any(seen)


# --------------------------------------------------------------------------- API


def test_report_to_dict_is_json_serialisable_for_every_verdict() -> None:
    for fn, batched in (
        (reinforce, True),
        (group_mean_baseline, True),
        (_raises, False),
        (_nan, False),
    ):
        report = check_estimator(fn, batched=batched, max_examples=0)
        data = json.loads(json.dumps(report.to_dict()))
        assert data["verdict"] == report.verdict
        assert str(report) == report.message == data["message"]
    biased = check_estimator(lambda t, x, r: -per_group_reinforce(t, x, r), max_examples=0)
    data = biased.to_dict()
    assert set(data["counterexample"]) >= {
        "logits",
        "scores",
        "k",
        "expectation",
        "gradient",
        "multiple",
        "residual",
    }


def test_biased_message_is_a_bug_report() -> None:
    report = check_estimator(
        lambda t, x, r: 2 * per_group_reinforce(t, x, r) * _softmax(t)[x].mean(), max_examples=0
    )
    text = report.message
    for needle in (
        "BIASED",
        "logits = np.array(",
        "scores = np.array(",
        "E[g]_i",
        "grad J_i",
        "tolerance",
        "expectation_of(fn",
        "seed=0",
        "<--",
    ):
        assert needle in text, text


def test_expectation_of_reproduces_a_counterexample() -> None:
    report = check_estimator(group_mean_baseline, batched=True, group_sizes=(1,), max_examples=0)
    cex = report.counterexample
    assert cex is not None
    mean, grad = expectation_of(group_mean_baseline, cex.logits, cex.scores, cex.k, batched=True)
    np.testing.assert_array_equal(mean, cex.expectation)
    np.testing.assert_array_equal(grad, cex.gradient)


def test_assert_forms() -> None:
    assert isinstance(assert_unbiased(reinforce, batched=True, max_examples=0), EstimatorReport)
    with pytest.raises(EstimatorCheckFailure) as info:
        assert_unbiased(group_mean_baseline, batched=True, max_examples=0)
    assert isinstance(info.value, AssertionError) and "SCALED" in str(info.value)
    assert_scaled(group_mean_baseline, {2: 0.5, 3: 2 / 3, 4: 0.75}, batched=True, max_examples=0)
    with pytest.raises(EstimatorCheckFailure, match=r"c_2 = 0\.6"):
        assert_scaled(group_mean_baseline, lambda k: 0.6, batched=True, max_examples=0)
    with pytest.raises(EstimatorCheckFailure, match="expected scaled"):
        assert_scaled(reinforce, batched=True, max_examples=0)


def test_same_seed_same_verdict_and_counterexample() -> None:
    def mid_range_bug(logits: Any, samples: Any, rewards: Any) -> Any:
        r = np.where((np.abs(rewards) > 20) & (np.abs(rewards) < 500), 1.01 * rewards, rewards)
        return per_group_reinforce(logits, samples, r)

    a = check_estimator(mid_range_bug, max_examples=60, seed=3, group_sizes=(2,))
    b = check_estimator(mid_range_bug, max_examples=60, seed=3, group_sizes=(2,))
    assert a.verdict == b.verdict
    if a.counterexample is not None and b.counterexample is not None:
        np.testing.assert_array_equal(a.counterexample.scores, b.counterexample.scores)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"fn": 3}, "callable"),
        ({"group_sizes": ()}, "group_sizes"),
        ({"group_sizes": (0,)}, "group_sizes"),
        ({"group_sizes": (2.5,)}, "group_sizes"),
        ({"group_sizes": (True,)}, "group_sizes"),
        ({"group_sizes": 3}, "group_sizes"),
        ({"group_sizes": (99,)}, "group_sizes"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"max_examples": -1}, "max_examples"),
        ({"batched": "yes"}, "batched"),
        ({"rtol": 0.0}, "rtol"),
        ({"rtol": float("nan")}, "rtol"),
        ({"atol": -1.0}, "atol"),
    ],
)
def test_bad_arguments_raise_invalid_argument(kwargs: dict[str, Any], needle: str) -> None:
    fn = kwargs.pop("fn", reinforce)
    with pytest.raises(InvalidArgument, match=needle):
        check_estimator(fn, **kwargs)


def test_rtol_override_accepts_float32_internals() -> None:
    def f32_internal(logits: Any, samples: Any, rewards: Any) -> Any:
        g = per_group_reinforce(logits.astype(np.float32), samples, rewards.astype(np.float32))
        return g.astype(np.float64)

    assert check_estimator(f32_internal, max_examples=FEW).verdict == "biased"
    assert check_estimator(f32_internal, max_examples=FEW, rtol=1e-4).verdict == "unbiased"


# --------------------------------------------------------------------------- CLI


USER_FILE = """
import numpy as np

def est(logits, samples, rewards):
    p = np.exp(logits - logits.max()); p = p / p.sum()
    return np.mean(rewards[:, None] * (np.eye(p.size)[samples] - p), axis=0)

def bad(logits, samples, rewards):
    return -est(logits, samples, rewards)

NOT_CALLABLE = 3
"""


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "user_est.py"
    path.write_text(USER_FILE)
    return path


def test_cli_exit_codes(user_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{user_file}:est", "--max-examples", "5"]) == 0
    assert "UNBIASED" in capsys.readouterr().out
    assert main(["check", f"{user_file}:bad", "--max-examples", "5", "--group-sizes", "2,3"]) == 1
    assert "BIASED" in capsys.readouterr().out
    assert main(["check", "impl.estimators:rloo", "--batched", "--max-examples", "5"]) == 0
    capsys.readouterr()
    assert main(["check", "catalogue:group-mean-baseline", "--max-examples", "5", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "scaled" and data["batched"] is True


@pytest.mark.parametrize(
    "target_args",
    [
        ["{f}:nope"],
        ["{f}:NOT_CALLABLE"],
        ["/no/such/file.py:est"],
        ["no_such_module_xyz:f"],
        ["catalogue:no-such-entry"],
        ["just-a-name"],
        ["{f}:est", "--group-sizes", "2,x"],
        ["{f}:est", "--group-sizes", "0"],
        ["{f}:est", "--max-examples", "-3"],
    ],
)
def test_cli_bad_usage_exits_2_with_one_line(
    target_args: list[str], user_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["check", *(a.replace("{f}", str(user_file)) for a in target_args)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ida-verify check:"), captured.err


@pytest.mark.torch
def test_torch_surrogate_adapter() -> None:
    torch = pytest.importorskip("torch")
    from properties.onestep.checker import from_torch_surrogate

    def surrogate(logits: Any, samples: Any, rewards: Any) -> Any:
        return -(rewards * torch.log_softmax(logits, 0)[samples]).mean()

    def surrogate_group_mean(logits: Any, samples: Any, rewards: Any) -> Any:
        return -((rewards - rewards.mean()) * torch.log_softmax(logits, 0)[samples]).mean()

    assert check_estimator(from_torch_surrogate(surrogate), max_examples=5).verdict == "unbiased"
    assert (
        check_estimator(from_torch_surrogate(surrogate_group_mean), max_examples=5).verdict
        == "scaled"
    )


def test_nan_is_reported_as_non_finite_not_as_nondeterminism() -> None:
    from impl.catalogue import get

    report = check_estimator(
        get("rloo-unguarded").fn, batched=True, group_sizes=(1, 2), max_examples=0
    )
    assert report.error is not None and report.error.kind == "non-finite", report.message


def test_batched_exception_is_narrowed_to_one_group() -> None:
    def fails_on_ties(logits: Any, samples: Any, rewards: Any) -> Any:
        if np.any(samples[:, 0] == samples[:, -1]):
            raise ValueError("tie")
        return reinforce(logits, samples, rewards)

    report = check_estimator(fails_on_ties, batched=True, group_sizes=(3,), max_examples=0)
    assert report.error is not None and report.error.kind == "raised"
    assert np.asarray(report.error.samples).shape == (1, 3)
    assert "samples=np.array([[0, 0, 0]])" in report.message


@pytest.mark.torch
def test_torch_tensor_outputs_are_accepted() -> None:
    torch = pytest.importorskip("torch")

    def tensor_out(logits: Any, samples: Any, rewards: Any) -> Any:
        return torch.tensor(per_group_reinforce(logits, samples, rewards), requires_grad=True)

    assert check_estimator(tensor_out, max_examples=5).verdict == "unbiased"


def test_a_value_preserving_write_still_names_the_input() -> None:
    """``rewards -= rewards.mean()`` on all-zero rewards changes nothing, yet it is a write."""

    def centre_in_place(logits: Any, samples: Any, rewards: Any) -> Any:
        rewards -= rewards.mean()
        return per_group_reinforce(logits, samples, rewards)

    report = check_estimator(centre_in_place, max_examples=5)
    assert report.verdict == "error"
    assert "its input rewards" in report.message


def test_writes_into_two_inputs_name_both() -> None:
    from impl.catalogue import get

    report = check_estimator(get("in-place-sort-by-reward").fn, batched=True, max_examples=5)
    assert report.verdict == "error" and "inputs samples and rewards" in report.message


# --------------------------------------------------------------------------- report fields


def test_every_message_and_dict_states_the_region_and_protocol() -> None:
    for fn, batched in ((reinforce, True), (group_mean_baseline, True), (_raises, False)):
        report = check_estimator(fn, batched=batched, max_examples=3)
        assert report.protocol == "one-step"
        assert "Region checked: " in report.message, report.message
        data = json.loads(report.to_json())
        assert data["protocol"] == "one-step"
        assert data["region"]["group_sizes"] == [2, 3, 4]
        assert set(data["timing"]) >= {"estimator", "evaluation", "judging", "generation", "other"}
    region = check_estimator(reinforce, batched=True, max_examples=3).region
    assert region.n_range is not None and region.logit_range is not None
    assert region.score_range is not None
    assert region.problems["battery"] > 0 and region.problems["hypothesis"] >= 3
    assert "n in 2.." in region.describe()


def test_assert_forms_accept_a_finished_report() -> None:
    report = check_estimator(reinforce, batched=True, max_examples=0)
    assert assert_unbiased(report) is report
    scaled = check_estimator(group_mean_baseline, batched=True, max_examples=0)
    assert assert_scaled(scaled, lambda k: (k - 1) / k) is scaled
    with pytest.raises(EstimatorCheckFailure, match="SCALED"):
        assert_unbiased(scaled)
    with pytest.raises(InvalidArgument, match="finished EstimatorReport"):
        assert_unbiased(report, batched=True)


def test_progress_is_called_after_every_problem() -> None:
    calls: list[tuple[int, int]] = []
    report = check_estimator(
        reinforce, batched=True, max_examples=5, progress=lambda d, t: calls.append((d, t))
    )
    assert [d for d, _ in calls] == list(range(1, report.problems_checked + 1))
    assert all(d <= t for d, t in calls)
    with pytest.raises(InvalidArgument, match="progress"):
        check_estimator(reinforce, batched=True, progress=3)  # type: ignore[arg-type]

    def broken(done: int, planned: int) -> None:
        raise RuntimeError("progress bar broke")

    with pytest.raises(RuntimeError, match="progress bar broke"):
        check_estimator(reinforce, batched=True, max_examples=2, progress=broken)
