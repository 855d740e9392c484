"""The trainer checker: the tabular causal LM, the catalogue's verdicts, the accumulation, hostile losses."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from impl.errors import InvalidArgument  # noqa: E402
from impl.sequence import response_space  # noqa: E402
from impl.trainer_catalogue import TRAINER_CATALOGUE, TrainerEntry, get  # noqa: E402
from properties import (  # noqa: E402
    EstimatorCheckFailure,
    assert_trainer_scaled,
    assert_trainer_unbiased,
    check_trainer_loss,
)
from properties.trainer import trainer_expectation  # noqa: E402
from properties.trainer.model import (  # noqa: E402
    PROMPT_LOGIT,
    PromptLayout,
    TabularCausalLM,
    prompt_length,
)

pytestmark = pytest.mark.torch

FEW = 2
"""Hypothesis examples after the battery in these tests (the battery decides the catalogue)."""


def _ids(layout: PromptLayout, p: int) -> tuple[Any, Any, Any]:
    space = response_space(layout.vocab_size, layout.max_len)
    group = np.full(space.num_responses, p)
    ids = np.concatenate([layout.prompt_ids(group), space.tokens], 1)
    mask = np.concatenate([layout.prompt_mask(group), space.mask.astype(np.int64)], 1)
    return torch.from_numpy(ids), torch.from_numpy(mask), space


@pytest.mark.parametrize(("v", "t", "p"), [(2, 1, 1), (3, 3, 2), (2, 3, 3), (4, 2, 2), (6, 5, 1)])
def test_each_completion_position_reads_the_node_of_its_prefix(v: int, t: int, p: int) -> None:
    layout = PromptLayout(v, t, p)
    space = response_space(v, t)
    model = TabularCausalLM(torch.zeros(space.theta_shape(p), dtype=torch.float64), layout)
    for q in range(p):
        ids, mask, _ = _ids(layout, q)
        w = layout.prompt_width
        got = model.nodes(ids, mask).numpy()
        # position w - 1 + t scores completion token t, from the prefix before it
        np.testing.assert_array_equal(got[:, w - 1 : w - 1 + t], q * space.num_rows + space.nodes)
        # every position inside the prompt (and its padding) reads the after-the-end node
        assert (got[:, : w - 1] == q * space.num_rows + space.end_node).all()


def test_the_logits_are_the_table_times_the_temperature_and_prompt_ids_are_impossible() -> None:
    layout = PromptLayout(3, 2, 2)
    space = response_space(3, 2)
    theta = torch.from_numpy(np.random.default_rng(0).normal(size=space.theta_shape(2)))
    model = TabularCausalLM(theta, layout, temperature=0.5)
    ids, mask, _ = _ids(layout, 1)
    out = model(input_ids=ids, attention_mask=mask)
    w = layout.prompt_width
    assert out.logits.shape == (space.num_responses, w + 2, 3 + 2)
    torch.testing.assert_close(out.logits[:, w - 1, :3], 0.5 * theta[1, 0].expand(space.num_responses, 3))
    assert (out["logits"][..., 3:] == PROMPT_LOGIT).all()
    assert float(out.logits.detach().log_softmax(-1)[..., 3:].exp().max()) == 0.0
    kept = model(input_ids=ids, attention_mask=mask, logits_to_keep=3).logits
    torch.testing.assert_close(kept, out.logits[:, -3:])


def test_the_model_is_a_module_whose_table_is_its_parameter() -> None:
    layout = PromptLayout(2, 2, 1)
    model = TabularCausalLM(torch.zeros(1, 3, 2, dtype=torch.float64), layout)
    assert [n for n, _ in model.named_parameters()] == ["table"]
    ids, mask, _ = _ids(layout, 0)
    model(input_ids=ids, attention_mask=mask).logits[:, 1, 1].sum().backward()
    assert model.table.grad is not None and float(model.table.grad[0, 0, 1]) == ids.shape[0]
    assert prompt_length(0) != prompt_length(1)


def test_bad_model_calls_raise_a_clear_value_error() -> None:
    model = TabularCausalLM(torch.zeros(1, 3, 2, dtype=torch.float64), PromptLayout(2, 2, 1))
    with pytest.raises(ValueError, match="integer"):
        model(input_ids=torch.zeros(1, 3))
    with pytest.raises(ValueError, match="attention_mask"):
        model(input_ids=torch.zeros(1, 3, dtype=torch.long), attention_mask=torch.ones(1, 2))
    with pytest.raises(ValueError, match="expected"):
        TabularCausalLM(torch.zeros(1, 4, 2), PromptLayout(2, 2, 1))


# --------------------------------------------------------------------------- the catalogue


def _check(entry: TrainerEntry, **extra: Any) -> Any:
    return check_trainer_loss(entry.fn, max_examples=FEW, **{**entry.settings.checker_kwargs(), **extra})


@pytest.mark.parametrize("entry", TRAINER_CATALOGUE, ids=lambda e: e.name)
def test_catalogue_verdicts(entry: TrainerEntry) -> None:
    report = _check(entry)
    assert report.verdict == entry.expected, report.message
    assert report.protocol == "trainer-loss"
    # pooled prompts at k = 4, T = 3 exceed the batch budget: such a check is partial, and
    # says so; a full check must not be
    two_prompts_at_k4 = 2 in report.settings.get("num_prompts", (1,)) and 4 in report.group_sizes
    assert report.partial == (two_prompts_at_k4 and report.verdict in ("unbiased", "scaled")), report.message
    if entry.expected == "scaled":
        assert entry.scale is not None
        assert_trainer_scaled(report, entry.scale, allow_partial=True)
    if entry.expected == "unbiased":
        assert_trainer_unbiased(report, allow_partial=True)
    if entry.expected == "error":
        assert report.error is not None and "Traceback" not in report.message


PLUMBING = [e.name for e in TRAINER_CATALOGUE if e.category == "plumbing" and e.expected == "biased"]


@pytest.mark.parametrize("name", PLUMBING)
def test_each_plumbing_bug_has_a_counterexample_that_reproduces(name: str) -> None:
    entry = get(name)
    report = _check(entry)
    cex = report.counterexample
    assert report.verdict == "biased" and cex is not None
    s = report.settings
    mean, grad = trainer_expectation(
        entry.fn,
        theta=cex.theta,
        rewards=cex.rewards,
        k=cex.shape.k,
        ref_theta=cex.ref_theta,
        micro_batches=s["micro_batches"],
        temperature=s["temperature"],
    )
    np.testing.assert_allclose(mean.ravel(), cex.expectation, rtol=1e-12, atol=1e-15)
    # off the reference problem's multiple by far more than the tolerance somewhere
    discrepancy = (mean - cex.reference_multiple * grad).ravel()
    assert (np.abs(discrepancy) > 10.0 * cex.tolerance).any()
    assert "trainer_expectation" in report.message and "check_trainer_loss(fn" in report.message


@pytest.mark.parametrize("name", ["prompt-tokens-in-mask", "left-padding-offset", "no-attention-mask"])
def test_masking_bugs_send_gradient_to_the_after_the_end_node(name: str) -> None:
    cex = _check(get(name)).counterexample
    assert cex is not None
    space = cex.shape.space
    moved = np.abs(cex.discrepancy.reshape(cex.theta.shape))[:, space.end_node].max()
    assert moved > 1e3 * np.abs(cex.tolerance).max()


def test_the_correct_loss_is_certified_with_its_right_and_wrong_temperature() -> None:
    right = get("trl-dr-grpo-temperature")
    assert _check(right).verdict == "scaled"
    # the same loss, sampling at temperature 1 while it divides by inputs["temperature"] = 1: still fine;
    # sampling at 0.7 while it reads a hard-coded 1.0 is the bug
    assert _check(get("temperature-missing-in-loss")).verdict == "biased"
    assert _check(get("trainer-reinforce"), temperature=0.7).verdict == "unbiased"


# --------------------------------------------------------------------------- accumulation


def test_the_accumulation_bug_is_caught_with_two_micro_batches_and_one_call_needs_a_split() -> None:
    bug = get("ga-token-mean-per-micro-batch")
    caught = _check(bug)
    assert caught.verdict == "biased" and caught.counterexample is not None
    assert "against='one-call'" in caught.message and "written 'grad J' below" in caught.message
    # one micro-batch against one call compares the call with itself: refused, not certified
    with pytest.raises(InvalidArgument, match="nothing would be checked"):
        _check(bug, micro_batches=1, group_sizes=(2, 3))
    with pytest.raises(InvalidArgument, match="nothing would be checked"):
        assert_trainer_unbiased(bug.fn, against="one-call", max_len=2, max_examples=FEW)
    with pytest.raises(InvalidArgument, match="nothing would be checked"):
        trainer_expectation(bug.fn, theta=np.zeros((1, 3, 2)), rewards=np.zeros((1, 3)), k=2,
                            against="one-call")


def test_the_global_token_count_fix_is_certified_and_still_a_token_mean() -> None:
    fix = get("ga-token-mean-global-count")
    assert _check(fix).verdict == "unbiased"
    assert _check(fix, dp_size=2, micro_batches=1).verdict == "unbiased"
    # against grad J it stays what a token mean is: biased
    assert _check(fix, against="objective").verdict == "biased"


def test_forgetting_the_rank_count_scales_the_step_by_one_over_d() -> None:
    def per_step_mean(model: Any, inputs: dict[str, Any]) -> Any:
        # normalises by the step's rows on each rank: DDP's mean then divides by dp_size again
        entry = get("trainer-reinforce")
        return entry.fn(model, inputs) / inputs["dp_size"]

    report = check_trainer_loss(per_step_mean, group_sizes=(4,), dp_size=2, max_examples=FEW)
    assert report.verdict == "scaled"
    assert_trainer_scaled(report, lambda k, t, p: 0.5, allow_partial=True)  # P = 2 at k = 4, T = 3: over budget
    assert check_trainer_loss(per_step_mean, group_sizes=(4,), max_examples=FEW).verdict == "unbiased"


def test_every_micro_batch_sees_its_rows_and_the_global_counts() -> None:
    seen: list[tuple[int, float, int, int]] = []

    def spy(model: Any, inputs: dict[str, Any]) -> Any:
        seen.append(
            (
                int(inputs["completion_ids"].shape[0]),
                float(inputs["num_items_in_batch"]),
                int(inputs["global_batch_size"]),
                int(inputs["current_gradient_accumulation_steps"]),
            )
        )
        return get("trainer-reinforce").fn(model, inputs)

    theta = np.zeros((2, 2, 2))  # V = 2, T = 1, P = 2: every response has one token
    mean, grad = trainer_expectation(
        spy, theta=theta, rewards=[[0.0, 1.0], [1.0, 2.0]], k=2, micro_batches=2, dp_size=2
    )
    np.testing.assert_allclose(mean, grad, atol=1e-15)
    assert {s for s in seen if s[0] == 1} == {(1, 4.0, 4, 2)}


# --------------------------------------------------------------------------- hostile losses


def _reinforce(model: Any, inputs: dict[str, Any]) -> Any:
    return get("trainer-reinforce").fn(model, inputs)


def _prints(model: Any, inputs: dict[str, Any]) -> Any:
    print("step")
    return _reinforce(model, inputs)


def _python_float(model: Any, inputs: dict[str, Any]) -> Any:
    return float(_reinforce(model, inputs))


def _random(model: Any, inputs: dict[str, Any]) -> Any:
    return _reinforce(model, inputs) * (1.0 + torch.rand(()))


def _detached(model: Any, inputs: dict[str, Any]) -> Any:
    return _reinforce(model, inputs).detach()


def _nan(model: Any, inputs: dict[str, Any]) -> Any:
    return _reinforce(model, inputs) * float("nan")


def _bad_call(model: Any, inputs: dict[str, Any]) -> Any:
    return model(inputs["completion_ids"][0]).logits.sum()


@pytest.mark.parametrize(
    ("fn", "kind"),
    [
        (_prints, "printed"),
        (_python_float, "bad-type"),
        (_random, "nondeterministic"),
        (_detached, "no-grad"),
        (_nan, "non-finite"),
        (_bad_call, "raised"),
    ],
)
@pytest.mark.parametrize("micro_batches", [1, 2])
def test_hostile_losses_are_error_verdicts(fn: Any, kind: str, micro_batches: int) -> None:
    report = check_trainer_loss(
        fn, group_sizes=(2,), max_len=2, micro_batches=micro_batches, max_examples=FEW
    )
    assert report.verdict == "error", report.message
    assert report.error is not None
    assert report.error.kind == kind, report.message
    assert "Traceback" not in report.message


def test_an_advantage_function_of_the_wrong_shape_is_an_error() -> None:
    report = check_trainer_loss(
        get("trl-dr-grpo").fn,
        advantages=lambda inputs: inputs["rewards"][:1],
        group_sizes=(2,),
        max_len=2,
        max_examples=FEW,
    )
    assert report.verdict == "error" and report.error is not None
    assert report.error.kind == "wrong-shape" and "advantage function" in report.error.detail


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"micro_batches": 0}, "micro_batches"),
        ({"dp_size": True}, "dp_size"),
        ({"micro_batches": 2, "group_sizes": (3,), "num_prompts": (1,)}, "cannot be split"),
        ({"micro_batches": 5}, "no default group size"),
        ({"temperature": 0.0}, "temperature"),
        ({"against": "grad J"}, "against"),
        ({"advantages": 3}, "advantages"),
        ({"max_len": 0}, "max_len"),
    ],
)
def test_bad_arguments_raise_invalid_argument(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        check_trainer_loss(_reinforce, **kwargs)


def test_assert_forms_raise_on_the_wrong_verdict() -> None:
    with pytest.raises(EstimatorCheckFailure):
        assert_trainer_unbiased(get("double-shift").fn, max_len=2, max_examples=FEW)
    with pytest.raises(EstimatorCheckFailure):
        assert_trainer_scaled(_reinforce, lambda k, t, p: 2.0, max_len=2, max_examples=FEW)


def test_the_backbone_and_head_give_the_same_logits_as_the_forward() -> None:
    """Code that patches the LM head (TRL's add_fused_lm_head) computes hidden @ weight.T."""
    layout = PromptLayout(3, 2, 2)
    space = response_space(3, 2)
    theta = torch.from_numpy(np.random.default_rng(1).normal(size=space.theta_shape(2)))
    model = TabularCausalLM(theta, layout, temperature=0.7)
    ids, mask, _ = _ids(layout, 1)
    hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    head = model.get_output_embeddings()
    assert head.bias is None and model.config.get_text_config().logit_scale is None
    torch.testing.assert_close(hidden @ head.weight.T, model(input_ids=ids, attention_mask=mask).logits)
