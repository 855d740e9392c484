"""Messages that blame the right code (issue 15, F5): the advantage function, the micro-batch
rows, a loss with no gradient path, a loss whose output changes between calls."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from impl.trainer_catalogue import get  # noqa: E402
from properties import check_sequence_loss, check_trainer_loss  # noqa: E402
from properties.trainer.evaluation import ADVANTAGE_BLAME  # noqa: E402

pytestmark = pytest.mark.torch

TINY: dict[str, Any] = {"group_sizes": (2,), "max_len": 1, "max_examples": 1}
"""One shape family is enough: each fault shows on the first batch."""


def loss_with_advantages(model: Any, inputs: dict[str, Any]) -> Any:
    """Dr. GRPO from the catalogue reads inputs["advantages"] when given."""
    return get("trl-dr-grpo").fn(model, inputs)


def adv_raise(inputs: dict[str, Any]) -> Any:
    raise RuntimeError("adv boom")


def adv_numpy(inputs: dict[str, Any]) -> Any:
    return np.zeros(inputs["rewards"].shape[0])


def adv_nan(inputs: dict[str, Any]) -> Any:
    return inputs["rewards"] * float("nan")


def adv_column(inputs: dict[str, Any]) -> Any:
    return inputs["rewards"][:, None]


@pytest.mark.parametrize(
    ("adv", "kind", "says"),
    [
        (adv_raise, "raised", "raised RuntimeError: adv boom"),
        (adv_numpy, "bad-type", "(type=ndarray) instead of a tensor of shape (2,)"),
        (adv_nan, "non-finite", "returned non-finite advantages"),
        (adv_column, "wrong-shape", "returned a tensor of shape (2, 1), expected (2,)"),
    ],
)
def test_a_failing_advantage_function_is_named_not_the_loss(adv: Any, kind: str, says: str) -> None:
    report = check_trainer_loss(loss_with_advantages, advantages=adv, **TINY)
    assert report.verdict == "error" and report.error is not None, report.message
    assert report.error.kind == kind, report.message
    assert f"it was checked with advantages={adv.__name__}, which" in report.message
    assert says in report.message and ADVANTAGE_BLAME in report.message
    assert "it the advantage" not in report.message


def test_a_shape_error_in_a_micro_batch_names_the_micro_batch_rows() -> None:
    def grouped(model: Any, inputs: dict[str, Any]) -> Any:
        # views the rows as whole groups: a micro-batch holds half a group
        inputs["rewards"].view(inputs["num_prompts"], inputs["group_size"])
        return get("trainer-reinforce").fn(model, inputs)

    report = check_trainer_loss(grouped, micro_batches=2, **TINY)
    assert report.verdict == "error" and report.error is not None, report.message
    assert "each call holds one micro-batch: B/2 of the batch's B = P*k rows" in report.message
    whole = check_trainer_loss(lambda m, i: i["rewards"].view(3, 5), **TINY)
    assert "each call holds the batch: B = P*k rows" in whole.message
    assert "tokens/mask/log_probs" not in whole.message  # the sequence protocol's names


def fresh_leaf(b: Any) -> Any:
    """Requires grad, but depends on nothing: no gradient path to the policy."""
    return torch.tensor(0.0, dtype=torch.float64, requires_grad=True)


def test_a_fresh_leaf_is_the_documented_no_gradient_path_error() -> None:
    report = check_sequence_loss(fresh_leaf, **TINY)
    assert report.verdict == "error" and report.error is not None, report.message
    assert report.error.kind == "no-grad" and "no gradient path" in report.message
    trainer = check_trainer_loss(lambda m, i: fresh_leaf(i), **TINY)
    assert trainer.verdict == "error" and trainer.error is not None
    assert trainer.error.kind == "no-grad"


def test_a_zero_gradient_with_a_path_is_still_biased() -> None:
    # exp(lp - lp) == 1 has a path and a zero gradient: E = 0, a nonpositive scale
    report = check_sequence_loss(lambda b: -(torch.exp(b.log_probs - b.log_probs) * b.mask).sum(), **TINY)
    assert report.verdict == "biased", report.message


def test_a_loss_whose_output_doubles_after_its_200th_call_is_nondeterministic() -> None:
    calls = [0]

    def stateful(b: Any) -> Any:
        calls[0] += 1
        r = b.rewards.view(b.num_prompts, b.group_size)
        adv = (r - (r.sum(-1, keepdim=True) - r) / (b.group_size - 1)).reshape(-1)
        return -(adv * (b.log_probs * b.mask).sum(-1)).mean() * (1.0 if calls[0] < 200 else 2.0)

    report = check_sequence_loss(stateful, group_sizes=(2, 3), max_len=2, max_examples=3)
    assert report.verdict == "error" and report.error is not None, report.message
    assert report.error.kind == "nondeterministic", report.message
    assert "no state kept between calls" in report.message
