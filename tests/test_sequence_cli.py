"""``ida-verify check FILE:FN --sequence [--weights] ...``: exit statuses, options, bad usage (budget: ~10 s)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


# --------------------------------------------------------------------------- issue 15


ONE_STEP_AND_LOOPED = """
import numpy as np

def estimator(logits, samples, rewards):
    return np.zeros_like(logits)

def looped(b):  # .item() keeps torch.func.vmap from running it: called once per batch
    scale = 1.0 + 0.0 * float(b.rewards.sum().item())
    return -scale * (b.rewards * (b.log_probs * b.mask).sum(-1)).mean()

def looped_row0(b):  # the same, with row 0's reward as every row's baseline: not symmetric
    scale = 1.0 + 0.0 * float(b.rewards.sum().item())
    return -scale * ((b.rewards - b.rewards[0]) * (b.log_probs * b.mask).sum(-1)).mean()
"""


@pytest.fixture
def more(tmp_path: Path) -> Path:
    path = tmp_path / "more.py"
    path.write_text(ONE_STEP_AND_LOOPED)
    return path


def _one_usage_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1, captured.err
    assert lines[0].startswith("ida-verify check: ")
    return lines[0]


def test_a_one_step_estimator_under_sequence_asks_did_you_mean(
    more: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to be "ERROR (raised): TypeError ... (at .../isolation.py ...)", exit 1."""
    line = _one_usage_line(["check", f"{more}:estimator", "--sequence", *FAST], capsys)
    assert "without --sequence?" in line and "TypeError" not in line


def test_group_sizes_that_fit_no_shape_are_bad_usage(
    losses: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to be "ERROR (imprecise): it no shape fits the batch budget", exit 1."""
    argv = ["check", f"{losses}:reinforce", "--sequence", "--group-sizes", "12", "--num-prompts", "2"]
    line = _one_usage_line(argv, capsys)
    assert "fits no shape" in line and "imprecise" not in line


def test_no_shape_after_the_vmap_fallback_is_bad_usage(
    more: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """k = 9 fits the vmap budget (512 batches) but not the per-batch one (256) on ordered
    batches; summed over multisets it fits (18 batches), unless the loss is not symmetric."""
    argv = ["check", f"{more}:looped_row0", "--sequence", "--group-sizes", "9", "--max-examples", "0"]
    argv += ["--max-len", "1", "--vocab-size", "2"]
    line = _one_usage_line(argv, capsys)
    assert "batch budget" in line and "once per batch" in line and "bug in ida-verify" not in line
    assert "not symmetric in the rows of a prompt's group" in line
    symmetric = [*argv[:1], f"{more}:looped", *argv[2:]]
    assert main(symmetric) == 0


def test_the_api_raises_invalid_argument_when_no_shape_fits() -> None:
    from impl.errors import InvalidArgument
    from properties import check_sequence_loss

    def loss(b: Any) -> Any:
        return -(b.rewards * (b.log_probs * b.mask).sum(-1)).mean()

    with pytest.raises(InvalidArgument, match="batch budget"):
        check_sequence_loss(loss, group_sizes=(12,), num_prompts=(2,))
