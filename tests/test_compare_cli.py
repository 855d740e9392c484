"""``ida-verify compare``: the isolated children give the table ``compare_estimators`` gives in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from impl.estimators import group_mean_baseline, reinforce, rloo
from properties import compare_estimators
from properties.cli import main

USER_CODE = '''
import time
import numpy as np

def mine(logits, samples, rewards):
    p = np.exp(logits - logits.max()); p /= p.sum()
    return np.mean((rewards - rewards.mean())[:, None] * (np.eye(p.size)[samples] - p), axis=0)

def hang(logits, samples, rewards):
    time.sleep(60)
'''


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "ests.py"
    path.write_text(USER_CODE)
    return path


def test_compare_json_matches_the_in_process_comparison(
    user_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([
        "compare", "catalogue:reinforce", "catalogue:rloo", f"{user_file}:mine",
        "--group-sizes", "2,3", "--max-examples", "0", "--problems", "4", "--json",
    ])
    out = capsys.readouterr().out
    assert status == 0
    data = json.loads(out)
    here = compare_estimators(
        [reinforce, rloo, group_mean_baseline], batched=[True, True, True],
        group_sizes=(2, 3), max_examples=0, num_problems=4,
    ).to_dict()
    assert [r["verdict"] for r in data["rows"]] == ["unbiased", "unbiased", "scaled"]
    for got, want in zip(data["rows"], here["rows"], strict=True):
        assert got["scale"] == pytest.approx(want["scale"])
        assert got["variance_ratio"] == pytest.approx(want["variance_ratio"], rel=1e-12)
        assert got["mse_ratio"] == pytest.approx(want["mse_ratio"], rel=1e-12)
    assert data["rows"][2]["name"].endswith("ests.py:mine")
    assert data["problems"] == here["problems"]


def test_compare_table_says_which_estimator_got_no_variance_and_exits_1(
    user_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([
        "compare", "catalogue:reinforce", f"{user_file}:hang", "catalogue:raises-value-error",
        "--group-sizes", "2", "--max-examples", "0", "--problems", "2", "--call-timeout", "1",
    ])
    out = capsys.readouterr().out
    assert status == 1
    assert "no variance: the check ended in an error (timeout)" in out
    assert "no variance: the check ended in an error (raised)" in out
    assert "geometric mean" in out and "catalogue:reinforce" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["compare"],
        ["compare", "catalogue:no-such-entry"],
        ["compare", "no_such_file.py:f"],
        ["compare", "catalogue:pooled-reinforce-mean"],
        ["compare", "catalogue:reinforce", "--group-sizes", "0"],
        ["compare", "catalogue:reinforce", "--problems", "0"],
        ["compare", "catalogue:reinforce", "--problems", "100000"],
        ["compare", "catalogue:reinforce", "--timeout", "-1"],
        ["compare", "not-a-target"],
    ],
)
def test_bad_usage_exits_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ida-verify compare"), captured.err


def test_a_missing_function_is_bad_usage(user_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", f"{user_file}:nothere", "--max-examples", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no attribute 'nothere'" in err[0]


def test_compare_is_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "compare" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--problems" in out and "--json" in out


SEQUENCE_CODE = '''
def rloo(b):
    k = b.rewards.shape[0]
    loo = (b.rewards.sum() - b.rewards) / (k - 1)
    return -((b.rewards - loo)[:, None] * b.log_probs * b.mask).sum() / k

def rloo_weights(rewards, mask, log_probs):
    k = rewards.shape[0]
    return (rewards - (rewards.sum() - rewards) / (k - 1))[:, None] * mask / k
'''


@pytest.mark.torch
def test_compare_sequence_matches_the_in_process_comparison(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    from properties import compare_sequence_losses

    path = tmp_path / "losses.py"
    path.write_text(SEQUENCE_CODE)
    status = main([
        "compare", f"{path}:rloo", "--sequence", "--group-sizes", "2", "--max-examples", "0",
        "--problems", "2", "--reference", "token-mean", "--json",
    ])
    data = json.loads(capsys.readouterr().out)
    assert status == 0
    namespace: dict[str, object] = {}
    exec(SEQUENCE_CODE, namespace)  # the same functions, in-process
    here = compare_sequence_losses(
        [namespace["rloo"]], group_sizes=(2,), max_examples=0, num_problems=2,  # type: ignore[list-item]
        reference="token-mean",
    ).to_dict()
    assert data["rows"][0]["verdict"] == "unbiased"
    assert data["rows"][0]["variance_ratio"] == pytest.approx(here["rows"][0]["variance_ratio"], rel=1e-12)
    assert "aggregation 'token-mean'" in data["source"]
    status = main([
        "compare", f"{path}:rloo_weights", "--weights", "--group-sizes", "2", "--max-examples", "0",
        "--problems", "2", "--reference", "token-mean", "--json",
    ])
    weights = json.loads(capsys.readouterr().out)
    assert status == 0
    assert weights["rows"][0]["variance_ratio"] == pytest.approx(
        data["rows"][0]["variance_ratio"], rel=1e-10
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["catalogue:rloo", "--sequence"], "drop --sequence"),
        (["catalogue:rloo", "--reference", "token-mean"], "--reference needs --sequence"),
        (["{f}", "--sequence", "--reference", "avg"], "reference='avg'"),
        (["{f}", "--sequence", "--batched"], "--batched applies to --weights"),
        (["{f}", "--sequence", "--vocab-size", "1"], "vocab_size=1"),
        (["{f}", "--sequence", "--kl-coef", "-1"], "--kl-coef must be"),
    ],
)
def test_bad_sequence_usage_exits_2_with_one_line(
    argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "losses.py"
    path.write_text(SEQUENCE_CODE)
    assert main(["compare", *(a.format(f=f"{path}:rloo") for a in argv)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines
