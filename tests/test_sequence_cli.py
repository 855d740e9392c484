"""``ida-verify check FILE:FN --sequence [--weights] ...``: exit statuses, options, bad usage (budget: ~10 s)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from properties.cli import main

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

SOURCE = """
def reinforce(b):
    return -(b.rewards * (b.log_probs * b.mask).sum(-1)).mean()

def token_mean(b):
    return -(b.rewards * (b.log_probs * b.mask).sum(-1) / b.mask.sum(-1)).mean()

def kl_in_reward(b):
    kl = ((b.log_probs - b.ref_log_probs) * b.mask).sum(-1).detach()
    return -((b.rewards - b.kl_coef * kl) * (b.log_probs * b.mask).sum(-1)).mean()

def weights(rewards, mask, log_probs):
    return rewards[..., None] * mask / rewards.shape[-1]
"""

FAST = ["--group-sizes", "2", "--max-len", "2", "--max-examples", "1"]


@pytest.fixture
def losses(tmp_path: Path) -> Path:
    path = tmp_path / "losses.py"
    path.write_text(SOURCE)
    return path


def test_exit_status_follows_the_verdict(losses: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{losses}:reinforce", "--sequence", *FAST]) == 0
    assert "UNBIASED" in capsys.readouterr().out
    assert main(["check", f"{losses}:token_mean", "--sequence", *FAST]) == 1
    out = capsys.readouterr().out
    assert "BIASED" in out and "<eos>" in out


def test_options_reach_the_checker(losses: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "check",
        f"{losses}:kl_in_reward",
        "--sequence",
        "--kl-coef",
        "0.5",
        "--off-policy",
        "--num-prompts",
        "1,2",
        "--vocab-size",
        "2",
        "--json",
        *FAST,
    ]
    status = main(argv)
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["kl_coef"] == 0.5 and data["settings"]["off_policy"] is True
    assert data["settings"]["num_prompts"] == [1, 2] and data["settings"]["vocab_size"] == 2
    assert data["verdict"] == "biased" and status == 1  # no importance weights off-policy


def test_weights_protocol(losses: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{losses}:weights", "--weights", "--batched", *FAST]) == 0
    assert capsys.readouterr().out.startswith("Weight function 'weights' is UNBIASED")


@pytest.mark.parametrize(
    "extra",
    [
        ["--num-prompts", "0"],
        ["--num-prompts", "x"],
        ["--vocab-size", "1"],
        ["--max-len", "0"],
        ["--kl-coef", "-1"],
    ],
)
def test_bad_usage_exits_2(
    losses: Path, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", f"{losses}:reinforce", "--sequence", *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("ida-verify check: ")
