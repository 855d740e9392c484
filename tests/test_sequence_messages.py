"""The sequence check's message says what its counterexample is (issue 18, item 4)."""

from __future__ import annotations

import pytest

from properties.sequence.problems import Shape, battery

torch = pytest.importorskip("torch")

from properties.sequence.checker import check_sequence_loss  # noqa: E402


def _token_mean(batch):  # type: ignore[no-untyped-def]
    per = (batch.log_probs * batch.mask).sum(-1) / batch.mask.sum(-1)
    return -(batch.rewards * per).mean()


def _no_ratio(batch):  # type: ignore[no-untyped-def]
    return -(batch.rewards * (batch.log_probs * batch.mask).sum(-1)).mean()


def _eos_entry(shape: Shape) -> str:
    labels = [pr.label for pr in battery(shape, kl_coef=0.0, off_policy=False)]
    return labels[2]  # the third entry: rewards by EOS


def test_ties_label_only_where_rewards_tie() -> None:
    """At T = 1, V = 2 the EOS-rewards entry has rewards 1 and 0 on two responses of length 1: no tie."""
    no_tie = _eos_entry(Shape(2, 1, 2, 1))
    assert "ties)" not in no_tie and "equal rewards" not in no_tie
    assert "ends with EOS" in no_tie and "no ties here" in no_tie
    assert _eos_entry(Shape(2, 2, 2, 1)) == "battery: equal rewards across lengths (ties)"


def test_off_policy_message_names_both_policies() -> None:
    report = check_sequence_loss(_no_ratio, off_policy=True)
    assert report.verdict == "biased"
    lines = report.message.splitlines()
    responses = next(line for line in lines if "prompt 0 responses:" in line)
    assert "pi=" in responses and "pi_old=" in responses
    assert "behaviour policy pi_old" in report.message
    weights = [line for line in lines if "under the behaviour policy" in line]
    assert weights and all("under the current policy" in line for line in weights)
    row = report.counterexample.length_pair[0]  # type: ignore[union-attr]
    assert row.current is not None and "current" in row.to_dict()


def test_on_policy_json_weight_rows_unchanged() -> None:
    report = check_sequence_loss(_token_mean)
    rows = report.to_dict()["counterexample"]["length_pair"]
    assert rows and all(set(r) == {"prompt", "response", "length", "probability", "reward", "weights",
                                   "reinforce"} for r in rows)


def test_weight_table_reads_as_a_sentence() -> None:
    report = check_sequence_loss(_token_mean)
    assert report.verdict == "biased"
    msg = report.message
    assert "REINFORCE gives every token of a response y the same expected weight" in msg
    assert "'a <eos>' (2 tokens, R = 1, p = 0.0667): the loss gives each token an expected weight of 0.5, 0.5" in msg
    assert "the loss gives its one token an expected weight of 1 (2 times REINFORCE's 0.5)" in msg
