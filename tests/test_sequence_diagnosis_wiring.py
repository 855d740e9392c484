"""The diagnosis in the sequence check's report and message (issue 18, items 1 and 4 wired)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from impl.errors import InvalidArgument
from properties.cli import main

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from properties.sequence.checker import check_sequence_loss, check_token_weights  # noqa: E402

SOURCE = """
def reinforce(b):
    return -(b.rewards * (b.log_probs * b.mask).sum(-1)).mean()

def token_mean(b):
    return -(b.rewards * (b.log_probs * b.mask).sum(-1) / b.mask.sum(-1)).mean()

def token_weights_mean(rewards, mask, log_probs):
    return rewards[:, None] * mask / mask.sum(-1, keepdims=True) / rewards.shape[0]
"""

FAST = ["--group-sizes", "2", "--max-len", "2", "--max-examples", "1"]


def _token_mean(b):  # type: ignore[no-untyped-def]
    return -(b.rewards * (b.log_probs * b.mask).sum(-1) / b.mask.sum(-1)).mean()


def _token_sum_of_all(b):  # type: ignore[no-untyped-def]
    return -(b.rewards * (b.log_probs * b.mask).sum(-1)).sum()  # sum over the group: scaled by k


@pytest.fixture
def losses(tmp_path: Path) -> Path:
    path = tmp_path / "wired_losses.py"
    path.write_text(SOURCE)
    return path


def test_api_diagnosis_is_opt_in_and_names_the_cause() -> None:
    plain = check_sequence_loss(_token_mean, max_examples=0)
    assert plain.diagnosis is None and "diagnosis" not in plain.to_dict()
    assert "Causes" not in plain.message
    found = check_sequence_loss(_token_mean, max_examples=0, diagnose=True)
    assert found.verdict == "biased" and found.diagnosis is not None
    assert found.diagnosis.names() == ("length",)
    assert "Causes (diagnosis: targeted probes):\n  length: a token's expected weight is proportional to 1/|y|" in (
        found.message
    )
    assert found.to_dict()["diagnosis"]["findings"][0]["name"] == "length"
    # the rest of the report is the plain check's
    assert found.message.replace("\n".join(_causes_block(found.message)) + "\n", "") == plain.message.replace(
        f"{plain.seconds:.2f} s", f"{found.seconds:.2f} s"
    )


def _causes_block(message: str) -> list[str]:
    lines = message.splitlines()
    start = lines.index("Causes (diagnosis: targeted probes):")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("  "))
    return lines[start:end]


def test_scaled_verdict_gets_causes_too() -> None:
    report = check_sequence_loss(_token_sum_of_all, max_examples=0, diagnose=True)
    assert report.verdict == "scaled" and report.diagnosis is not None and report.diagnosis.findings
    assert "Causes (diagnosis: targeted probes):" in report.message


def test_token_weights_diagnosis() -> None:
    def mean_weights(rewards, mask, log_probs):  # type: ignore[no-untyped-def]
        return rewards[:, None] * mask / mask.sum(-1, keepdims=True) / rewards.shape[0]

    report = check_token_weights(mean_weights, max_examples=0, diagnose=True)
    assert report.verdict == "biased" and report.diagnosis is not None
    assert "length" in report.diagnosis.names()


def test_unbiased_is_not_diagnosed_and_bad_flag_is_invalid() -> None:
    def reinforce(b):  # type: ignore[no-untyped-def]
        return -(b.rewards * (b.log_probs * b.mask).sum(-1)).mean()

    assert check_sequence_loss(reinforce, max_examples=0, diagnose=True).diagnosis is None
    with pytest.raises(InvalidArgument, match="diagnose=True or False"):
        check_sequence_loss(reinforce, diagnose="yes")  # type: ignore[arg-type]


def test_cli_diagnoses_through_the_seam(losses: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The parent re-runs the probes on the child's record: confirmed, not 'unconfirmed'."""
    assert main(["check", f"{losses}:token_mean", "--sequence", "--diagnose", "--json", *FAST]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "biased", data.get("error")
    assert [f["name"] for f in data["diagnosis"]["findings"]] == ["length"]
    assert main(["check", f"{losses}:token_mean", "--sequence", "--diagnose", *FAST]) == 1
    assert "Causes (diagnosis: targeted probes):\n  length: " in capsys.readouterr().out


def test_cli_weights_diagnosed_and_opt_in(losses: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{losses}:token_weights_mean", "--weights", "--diagnose", "--json", *FAST]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "biased" and "length" in [f["name"] for f in data["diagnosis"]["findings"]]
    assert main(["check", f"{losses}:token_mean", "--sequence", "--json", *FAST]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "biased" and "diagnosis" not in data


def test_diagnose_without_sequence_is_bad_usage(losses: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{losses}:reinforce", "--diagnose"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--diagnose" in captured.err and len(captured.err.strip().splitlines()) == 1
