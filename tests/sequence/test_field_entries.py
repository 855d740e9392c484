"""The fields libraries pass on the trainer protocol and as token weights (issue 16, item 3).

:mod:`impl.field_entries`' verdicts are confirmed twice: by the checkers
(``check_trainer_loss``, ``check_token_weights``) and by the brute-force oracles
(``trainer_oracle`` for the trainer protocol, ``sequence_oracle`` for token weights), which
share no code with the checkers; the two trainer expectations are compared number by number on
one problem per field.  The rest checks what the trainer's inputs hold with each option.

Budget: ~60 s of CPU on an idle core (most of it the trainer oracle, one Python model call per
part of every batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sequence_oracle import (  # noqa: E402
    OracleResult,
    judge,
    problem_set,
    random_problem,
    weights_expectation,
)
from test_engine_vs_oracle import _translate  # noqa: E402
from trainer_oracle import trainer_expectation as oracle_trainer_expectation  # noqa: E402

from impl.errors import InvalidArgument  # noqa: E402
from impl.field_entries import FIELD_TRAINER_ENTRIES, FIELD_WEIGHT_ENTRIES  # noqa: E402
from impl.sequence_catalogue import SequenceEntry  # noqa: E402
from impl.trainer_catalogue import TrainerEntry  # noqa: E402
from properties import check_token_weights, check_trainer_loss  # noqa: E402
from properties.trainer import trainer_expectation  # noqa: E402

pytestmark = pytest.mark.torch

FEW = 2
"""Hypothesis examples after the battery (the battery decides these entries)."""

ORACLE_SHAPES: dict[tuple[int, int], tuple[tuple[int, int], ...]] = {
    (2, 1): ((2, 1), (3, 1), (2, 2), (3, 2), (2, 3)),
    (3, 1): ((2, 1), (2, 2), (2, 3)),
    (2, 2): ((2, 1), (3, 1), (2, 2)),
}
"""The trainer oracle's ``(V, T)`` per ``(k, P)``: fewer than the sequence oracle's (each batch
costs a Python model call per part), every ``T`` up to 3 and both ``P``."""


def _settings_fields(settings: Any) -> dict[str, Any]:
    return {
        "tool_tokens": settings.tool_tokens,
        "sampling_mismatch": settings.sampling_mismatch,
        "values": settings.values or "",
    }


def _trainer_oracle(entry: TrainerEntry) -> list[OracleResult]:
    st = entry.settings
    problems = problem_set(
        group_sizes=[k for k in (st.group_sizes or (2, 3)) if k <= 3],
        num_prompts=st.num_prompts,
        vocab_size=st.vocab_size,
        max_len=st.max_len,
        kl_coef=st.kl_coef,
        shapes=ORACLE_SHAPES,
        **_settings_fields(st),
    )
    assert problems
    return [
        oracle_trainer_expectation(
            entry.fn, p, micro_batches=st.micro_batches, dp_size=st.dp_size,
            temperature=st.temperature, advantages=st.advantages,
        )
        for p in problems
    ]


@pytest.mark.parametrize("entry", FIELD_TRAINER_ENTRIES, ids=lambda e: e.name)
def test_the_trainer_oracle_confirms_the_expected_verdict(entry: TrainerEntry) -> None:
    judgement = judge(_trainer_oracle(entry))
    assert judgement.verdict == entry.expected, judgement.evidence


@pytest.mark.parametrize("entry", FIELD_TRAINER_ENTRIES, ids=lambda e: e.name)
def test_the_trainer_checker_reaches_the_expected_verdict(entry: TrainerEntry) -> None:
    report = check_trainer_loss(entry.fn, max_examples=FEW, **entry.settings.checker_kwargs())
    assert report.verdict == entry.expected, report.message
    assert not report.partial, report.message  # FIELD_GROUP_SIZES fit the budget
    for name, value in _settings_fields(entry.settings).items():
        assert report.settings.get(name, "" if name == "values" else False) == value


@pytest.mark.parametrize("entry", FIELD_WEIGHT_ENTRIES, ids=lambda e: e.name)
def test_token_weights_with_the_fields_oracle_and_checker_agree(entry: SequenceEntry) -> None:
    st = entry.settings
    problems = problem_set(
        group_sizes=[k for k in st.group_sizes if k <= 3], vocab_size=st.vocab_size,
        max_len=st.max_len, **_settings_fields(st),
    )
    judgement = judge([weights_expectation(entry.fn, p, batched=st.batched) for p in problems])
    assert judgement.verdict == entry.expected, judgement.evidence
    report = check_token_weights(entry.fn, max_examples=FEW, **st.checker_kwargs("weights"))
    assert report.verdict == entry.expected, report.message


@pytest.mark.parametrize(("vocab_size", "num_prompts"), [(3, 1), (2, 2)])
@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("trl-vllm-is-token-truncate", {"sampling_mismatch": True}),
        ("trainer-tool-mask-as-attention", {"tool_tokens": True}),
        ("trainer-gae-lambda-0.95-random-values", {"values": "random"}),
        ("trainer-gae-lambda-0.95-exact-values", {"values": "exact"}),
    ],
)
def test_the_two_trainer_expectations_agree_number_by_number(
    name: str, fields: dict[str, Any], vocab_size: int, num_prompts: int
) -> None:
    entry = next(e for e in FIELD_TRAINER_ENTRIES if e.name == name)
    problem = random_problem(
        np.random.default_rng(3), vocab_size=vocab_size, max_len=3, group_size=2,
        num_prompts=num_prompts, tool_tokens=bool(fields.get("tool_tokens")),
        sampling_mismatch=bool(fields.get("sampling_mismatch")), values=fields.get("values", ""),
    )
    oracle = oracle_trainer_expectation(entry.fn, problem)
    assert oracle.mean is not None, oracle.error
    args, rows = _translate(problem)  # the engine orders the nodes differently
    mean, grad = trainer_expectation(entry.fn, tool_tokens=problem.tool_tokens, **args)
    np.testing.assert_allclose(mean, oracle.mean[:, rows], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(grad, oracle.gradient[:, rows], rtol=1e-10, atol=1e-13)


# --------------------------------------------------------------------------- the inputs


def _seen(**kwargs: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def spy(model: Any, inputs: dict[str, Any]) -> Any:
        try:
            seen.append({k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})
        except RuntimeError:  # a vmapped view: the values are behind batched tensors
            pass
        return FIELD_TRAINER_ENTRIES[0].fn(model, inputs)

    check_trainer_loss(spy, group_sizes=(2,), num_prompts=(1,), max_len=2, max_examples=0, **kwargs)
    assert seen
    return seen


def test_without_the_options_the_inputs_are_as_before() -> None:
    for inputs in _seen():
        assert "tool_mask" not in inputs
        assert inputs["sampling_per_token_logps"] == inputs["old_per_token_logps"]
        assert np.all(np.asarray(inputs["values"]) == 0.0)


def test_tool_tokens_give_trl_s_tool_mask_and_an_attention_mask_without_holes() -> None:
    for inputs in _seen(tool_tokens=True):
        ids = np.asarray(inputs["completion_ids"])
        attention = np.asarray(inputs["completion_mask"])
        tool = np.asarray(inputs["tool_mask"])
        ended = np.cumsum(ids == 0, -1) - (ids == 0)
        np.testing.assert_array_equal(attention, (ended == 0).astype(float))
        np.testing.assert_array_equal(tool[:, 1::2], 1.0 - attention[:, 1::2])
        assert (tool[:, 0::2] == 1.0).all()
        assert float(inputs["num_items_in_batch"]) == float((attention * tool).sum())


def test_a_mismatch_and_values_reach_the_inputs() -> None:
    assert any(i["sampling_per_token_logps"] != i["old_per_token_logps"] for i in _seen(sampling_mismatch=True))
    assert any(np.any(np.asarray(i["values"]) != 0.0) for i in _seen(values="random"))


def test_a_trainer_counterexample_reproduces_with_its_fields() -> None:
    entry = next(e for e in FIELD_TRAINER_ENTRIES if e.name == "trainer-gae-lambda-0.95-random-values")
    report = check_trainer_loss(entry.fn, max_examples=FEW, **entry.settings.checker_kwargs())
    cex = report.counterexample
    assert cex is not None and "value_table=np.array(" in report.message
    assert "values='random'" in report.message
    mean, _ = trainer_expectation(
        entry.fn, theta=cex.theta, rewards=cex.rewards, k=cex.shape.k, ref_theta=cex.ref_theta,
        value_table=cex.value_table,
    )
    np.testing.assert_allclose(mean.ravel(), cex.expectation, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": "critic"}, "values=None, 'random' or 'exact'"),
        ({"tool_tokens": 1}, "tool_tokens=True or False"),
        ({"values": "exact", "diagnose": True}, "diagnose=True does not model values"),
    ],
)
def test_token_weights_validate_the_options(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        check_token_weights(FIELD_WEIGHT_ENTRIES[0].fn, **kwargs)


def test_the_trainer_validates_the_options() -> None:
    with pytest.raises(InvalidArgument, match="sampling_mismatch=True or False"):
        check_trainer_loss(FIELD_TRAINER_ENTRIES[0].fn, sampling_mismatch="yes")


@pytest.mark.parametrize("field", ["sampling_per_token_logps", "values"])
def test_a_write_into_a_field_is_an_error_naming_it(field: str) -> None:
    def writes(model: Any, inputs: dict[str, Any]) -> Any:
        inputs[field].mul_(1.0)  # in place, even keeping the values
        return FIELD_TRAINER_ENTRIES[0].fn(model, inputs)

    report = check_trainer_loss(writes, group_sizes=(2,), num_prompts=(1,), max_len=2, max_examples=0)
    assert report.verdict == "error" and report.error is not None
    assert report.error.kind == "mutated-input" and f'inputs["{field}"]' in report.error.detail, report.message
