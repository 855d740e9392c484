"""Blind trial 3's findings, each a regression test that fails on the code before the fix.

The trainer checker: a biased trainer loss stays on ``torch.func.vmap`` (its counterexample was
confirmed through the sequence inputs, an internal ``AssertionError`` read as "vmap could not
run it"); a loss whose terms cancel to round-off does not fall back (the size of its terms was
taken from ``log_probs``, which a trainer loss never reads); ``against="one-call"`` without a
split is refused (it compared the loss with itself); writes to the tensors a call owns and by
``advantages=`` are named; a large ``atol`` is blamed, not round-off.  The command line: a
trainer loss given to ``check`` is bad usage; ``audit --expect`` fails on a recorded
configuration the library no longer offers; ``--only`` takes several names; ``--list --json``
is JSON; counts are singular when one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from impl.trainer_catalogue import get  # noqa: E402
from properties import check_trainer_loss  # noqa: E402
from properties.cli import main  # noqa: E402

pytestmark = pytest.mark.torch

SMALL: dict[str, Any] = {"group_sizes": (2,), "max_len": 2, "max_examples": 2}
"""Shapes small enough for a second or two per check."""


def _log_probs(model: Any, inputs: dict[str, Any]) -> Any:
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"].long()], dim=1)
    t = inputs["completion_ids"].size(1)
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=t + 1).logits[:, :-1]
    return logits.log_softmax(-1).gather(-1, inputs["completion_ids"][..., None])[..., 0]


def _token_mean(model: Any, inputs: dict[str, Any]) -> Any:
    """REINFORCE with a token mean over the batch: biased (length normalisation)."""
    m = inputs["completion_mask"]
    return -(inputs["rewards"][:, None] * _log_probs(model, inputs) * m).sum() / m.sum()


def _sequence_sum(model: Any, inputs: dict[str, Any]) -> Any:
    """The given advantages times each response's log-probability, a mean over the step's rows."""
    seq = (_log_probs(model, inputs) * inputs["completion_mask"]).sum(-1)
    rows = inputs["completion_ids"].shape[0] * inputs["current_gradient_accumulation_steps"]
    return -(inputs["advantages"] * seq).sum() / rows


def _group_std(inputs: dict[str, Any]) -> Any:
    r = inputs["rewards"].view(-1, inputs["group_size"])
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).reshape(-1)


def test_a_biased_trainer_loss_is_judged_by_vmap_without_an_internal_fallback() -> None:
    report = check_trainer_loss(_token_mean, **SMALL)
    assert report.verdict == "biased"
    assert report.run is not None and report.run.mode == "vmap", report.run
    assert "AssertionError" not in report.message


def test_a_loss_that_cancels_to_round_off_does_not_fall_back() -> None:
    """GRPO advantages of equal rewards are 0 up to round-off: vmap and a plain call differ by
    one ulp of the O(1) terms, which is no reason to fall back."""
    report = check_trainer_loss(
        _sequence_sum, advantages=_group_std, micro_batches=2, against="one-call",
        **{**SMALL, "group_sizes": (2, 4)},
    )
    assert report.run is not None and report.run.mode == "vmap", report.message
    assert report.verdict == "unbiased"


def _writes_prompt_ids(model: Any, inputs: dict[str, Any]) -> Any:
    inputs["prompt_ids"][:, 0] = inputs["prompt_ids"][:, -1]
    return get("trainer-reinforce").fn(model, inputs)


def _doubles_the_count(model: Any, inputs: dict[str, Any]) -> Any:
    n = inputs["num_items_in_batch"]
    n.mul_(2)
    m = inputs["completion_mask"]
    return -(inputs["rewards"][:, None] * _log_probs(model, inputs) * m).sum() / n


@pytest.mark.parametrize(
    ("fn", "field", "extra"),
    [
        (_writes_prompt_ids, "prompt_ids", {"num_prompts": (2,)}),
        (_doubles_the_count, "num_items_in_batch", {}),
        (_doubles_the_count, "num_items_in_batch", {"micro_batches": 2}),
    ],
)
def test_a_write_to_a_tensor_the_call_owns_is_named(fn: Any, field: str, extra: dict[str, Any]) -> None:
    report = check_trainer_loss(fn, **{**SMALL, **extra})
    assert report.verdict == "error" and report.error is not None
    assert report.error.kind == "mutated-input", report.message
    assert f"inputs[{field!r}]" in report.error.detail


def test_an_advantage_function_that_writes_the_rewards_is_blamed() -> None:
    def centred_in_place(inputs: dict[str, Any]) -> Any:
        r = inputs["rewards"]
        r -= r.mean()
        return r

    report = check_trainer_loss(_sequence_sum, advantages=centred_in_place, **SMALL)
    assert report.verdict == "error" and report.error is not None
    assert report.error.kind == "mutated-input"
    assert "centred_in_place, which changed inputs['rewards'] in place" in report.error.detail
    assert "the advantage function failed, not the loss" in report.error.detail


def test_an_atol_too_large_to_judge_is_named() -> None:
    report = check_trainer_loss(get("trainer-reinforce").fn, atol=1e3, **SMALL)
    assert report.verdict == "error" and report.error is not None
    assert report.error.kind == "imprecise"
    assert "atol=1000.0" in report.error.detail and "round-off tolerance" not in report.error.detail


def test_a_trainer_loss_given_to_check_is_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "trainer_loss.py"
    source.write_text("def loss(model, inputs):\n    return inputs['rewards'].sum()\n")
    for extra in ([], ["--sequence"]):
        assert main(["check", f"{source}:loss", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "check_trainer_loss" in err


# --------------------------------------------------------------------- the audit command line


ONE = "reinforce-seq-mean-token-sum"
"""A catalogue configuration (fast: a sequence loss under vmap)."""


def test_expect_fails_on_a_recorded_configuration_the_library_no_longer_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "catalogue", "--jobs", "1", "--json", "--only", ONE]) == 0
    payload = json.loads(capsys.readouterr().out)
    verdict = payload["rows"][0]["verdict"]
    expect = tmp_path / "expect.json"
    expect.write_text(json.dumps({ONE: verdict, "reinforce-removed": "biased"}))
    # selected by --only 'reinforce*' and recorded, but gone: a change
    assert main(["audit", "catalogue", "--jobs", "1", "--expect", str(expect), "--only", ONE,
                 "--only", "reinforce-removed"]) == 1
    err = capsys.readouterr().err
    assert "reinforce-removed: no longer a configuration of catalogue" in err
    # not selected: not compared
    assert main(["audit", "catalogue", "--jobs", "1", "--expect", str(expect), "--only", ONE]) == 0


def test_only_takes_several_names_and_list_json_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "catalogue", "--list", "--json", "--only", ONE, "rloo"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in listed["configurations"]] == [ONE, "rloo"]
    assert listed["library"] == "catalogue" and all("axes" in c for c in listed["configurations"])


def test_one_configuration_in_one_group_is_singular(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "catalogue", "--jobs", "1", "--only", ONE]) == 0
    out = capsys.readouterr().out
    assert "1 configuration in 1 group of rows that agree" in out
    assert main(["audit", "catalogue", "--jobs", "1", "--no-group", "--only", ONE]) == 0
    assert ": 1 configuration\n" in capsys.readouterr().out


def test_an_error_row_states_its_kind_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "catalogue", "--jobs", "1", "--json", "--only", "raises-not-implemented"]) == 1
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["verdict"] == "error"
    assert row["cause"].startswith("raised NotImplementedError") and "raised: raised" not in row["cause"]


def test_diagnose_refuses_an_option_no_checker_takes() -> None:
    from impl.errors import InvalidArgument
    from properties.sequence.diagnosis import diagnose

    def token_mean(batch: Any) -> Any:
        per = (batch.log_probs * batch.mask).sum(-1) / batch.mask.sum(-1)
        return -(batch.rewards * per).mean()

    with pytest.raises(InvalidArgument, match="kl_cof"):
        diagnose(token_mean, {"kl_cof": 0.1})
    assert diagnose(token_mean, {"kl_coef": 0.0, "max_len": 2}).names() == ("length",)


def test_the_options_diagnose_accepts_are_the_checkers_keyword_arguments() -> None:
    import inspect

    from properties import check_sequence_loss, check_token_weights, check_trainer_loss
    from properties.sequence.diagnosis import CHECK_OPTIONS

    taken = {"checker"}
    for check in (check_sequence_loss, check_token_weights, check_trainer_loss):
        taken |= set(inspect.signature(check).parameters) - {"fn", "loss_fn"}
    assert taken == CHECK_OPTIONS


def _children(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux ``/proc``)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads children from Linux /proc")
def test_sigterm_stops_the_pool_workers_and_exits_143() -> None:
    """A CI timeout's SIGTERM reaches the parent only: it used to die at once and leave its
    pool's workers running their configurations as orphans."""
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-c", "from properties.cli import entry; entry()", "audit", "catalogue",
         "--jobs", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = [c for c in _children(proc.pid)
                   if "resource_tracker" not in Path(f"/proc/{c}/cmdline").read_text(errors="replace")]
    assert len(workers) >= 2, "the pool's workers never started"
    time.sleep(3.0)  # they import torch and take configurations
    assert proc.poll() is None, "the audit finished before it could be terminated"
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == "ida-verify audit: terminated", err
    stop = time.monotonic() + 20
    while time.monotonic() < stop and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "a worker outlived its terminated parent"
