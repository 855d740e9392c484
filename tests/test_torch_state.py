"""User code cannot leave torch's global modes changed for later checks (issue 15, F2).

Before the fix a loss calling ``torch.set_grad_enabled(False)`` (rightly an error) left
grad mode off, and every later check of a correct loss in the process was "error
(no-grad)"; ``torch.set_default_dtype`` leaked too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from impl.trainer_catalogue import get  # noqa: E402
from properties import (  # noqa: E402
    check_estimator,
    check_sequence_loss,
    check_token_weights,
    check_trainer_loss,
)

pytestmark = pytest.mark.torch

TINY: dict[str, Any] = {"group_sizes": (2,), "max_len": 1, "max_examples": 1}
"""The cheapest shapes: the leak shows after one call."""


def rloo(b: Any) -> Any:
    r = b.rewards.view(b.num_prompts, b.group_size)
    base = (r.sum(-1, keepdim=True) - r) / (b.group_size - 1)
    return -((r - base).reshape(-1) * (b.log_probs * b.mask).sum(-1)).mean()


def _modes() -> tuple[Any, ...]:
    return (
        torch.is_grad_enabled(),
        torch.get_default_dtype(),
        torch.is_anomaly_enabled(),
        torch.are_deterministic_algorithms_enabled(),
        torch.get_num_threads(),
    )


CHANGES: dict[str, Callable[[], None]] = {
    "grad": lambda: torch.set_grad_enabled(False),
    "dtype": lambda: torch.set_default_dtype(
        torch.float64 if torch.get_default_dtype() == torch.float32 else torch.float32
    ),
    "anomaly": lambda: torch.set_anomaly_enabled(True),
    "deterministic": lambda: torch.use_deterministic_algorithms(True),
    "threads": lambda: torch.set_num_threads(torch.get_num_threads() + 1),
}
"""Global modes a hostile loss changes."""


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_sequence_loss_that_changes_a_torch_mode_leaves_it_as_it_was(change: str) -> None:
    before = _modes()

    def hostile(b: Any) -> Any:
        out = rloo(b)
        CHANGES[change]()
        return out

    check_sequence_loss(hostile, **TINY)
    assert _modes() == before
    after = check_sequence_loss(rloo, **TINY)
    assert after.verdict == "unbiased", after.message


def test_token_weights_and_trainer_losses_leave_grad_mode_on() -> None:
    def weights(rewards: Any, mask: Any, log_probs: Any) -> Any:
        torch.set_grad_enabled(False)
        return rewards[:, None] * mask / rewards.shape[0]

    check_token_weights(weights, **TINY)
    assert torch.is_grad_enabled()
    fn = get("trainer-reinforce").fn

    def trainer(model: Any, inputs: dict[str, Any]) -> Any:
        out = fn(model, inputs)
        torch.set_grad_enabled(False)
        return out

    check_trainer_loss(trainer, **TINY)
    assert torch.is_grad_enabled()
    assert check_trainer_loss(fn, **TINY).verdict == "unbiased"


def test_a_numpy_estimator_that_changes_a_torch_mode_leaves_it_as_it_was() -> None:
    before = _modes()

    def estimator(logits: Any, samples: Any, rewards: Any) -> Any:
        torch.set_grad_enabled(False)
        torch.set_default_dtype(torch.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return np.mean([r * (np.eye(len(p))[s] - p) for s, r in zip(samples, rewards, strict=True)], 0)

    assert check_estimator(estimator, group_sizes=(2,), max_examples=2).verdict == "unbiased"
    assert _modes() == before
