"""Default shapes: a default trainer check is not partial, and a one-prompt check says what
pooling across prompts it cannot show (issue 15, F3 and F6)."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from properties import (  # noqa: E402
    assert_trainer_unbiased,
    check_sequence_loss,
    check_trainer_loss,
)
from properties.sequence.region import ONE_PROMPT_BLIND_SPOT  # noqa: E402

pytestmark = pytest.mark.torch


def compute_loss(model: Any, inputs: dict[str, Any]) -> Any:
    """README's trainer example (REINFORCE as a trainer writes it): unbiased."""
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"].long()], dim=1)
    t = inputs["completion_ids"].size(1)
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=t + 1).logits[:, :-1]
    logps = (logits / inputs["temperature"]).log_softmax(-1)
    logps = logps.gather(-1, inputs["completion_ids"][..., None])[..., 0]
    per_seq = (logps * inputs["completion_mask"]).sum(-1)
    return -(inputs["rewards"] * per_seq).sum() / inputs["global_batch_size"] * inputs["dp_size"]


def test_the_readme_trainer_example_passes_with_the_default_shapes() -> None:
    report = check_trainer_loss(compute_loss, max_examples=1)
    assert report.verdict == "unbiased" and not report.partial, report.message
    assert_trainer_unbiased(report)
    # the P = 2 shapes over the budget are still named, as not evaluated
    assert "k=4, P=2: T=2 at V=3, T=3 at V=2..3" in report.message.split("not evaluated (over")[1]
    assert report.settings["num_prompts"] == (1, 2)


def test_num_prompts_given_explicitly_asks_for_every_shape() -> None:
    report = check_trainer_loss(
        compute_loss, group_sizes=(4,), num_prompts=(1, 2), max_len=3, vocab_size=2, max_examples=1
    )
    assert report.verdict == "unbiased" and report.partial, report.message
    assert report.run is not None and report.run.unchecked == ((4, 3, 2),)


def dapo_filter(b: Any) -> Any:
    """RLOO over the groups whose rewards differ, divided by the rows kept in the whole batch:
    unbiased at P = 1 (E[g]/grad J = 1 exactly), biased at P = 2 (the count pools prompts)."""
    r = b.rewards.view(b.num_prompts, b.group_size)
    adv = (r - (r.sum(-1, keepdim=True) - r) / (b.group_size - 1)).reshape(-1)
    keep = (r.max(-1).values != r.min(-1).values).to(r.dtype)[:, None].expand_as(r).reshape(-1)
    return -(keep * adv * (b.log_probs * b.mask).sum(-1)).sum() / keep.sum().clamp(min=1)


def test_a_one_prompt_check_says_that_pooling_across_prompts_cannot_show() -> None:
    small: dict[str, Any] = {"group_sizes": (2, 3), "max_len": 2, "max_examples": 2}
    report = check_sequence_loss(dapo_filter, **small)
    assert report.verdict == "unbiased", report.message
    assert report.run is not None and ONE_PROMPT_BLIND_SPOT in report.run.blind_spots
    assert ONE_PROMPT_BLIND_SPOT in report.message
    assert "pooling statistics across prompts" in ONE_PROMPT_BLIND_SPOT
    pooled = check_sequence_loss(dapo_filter, num_prompts=(1, 2), **small)
    assert pooled.verdict == "biased", pooled.message
    assert pooled.run is not None and ONE_PROMPT_BLIND_SPOT not in pooled.run.blind_spots
