"""The fields libraries pass beyond our first batch (issue 16, item 3): tool-token holes in the
mask, the inference engine's log-probs and a critic's values.

The verdicts of their catalogue entries are confirmed by the oracle in
``test_oracle_catalogue.py`` and cross-checked number by number in ``test_engine_vs_oracle.py``;
this file checks the options themselves: their validation, what the batch holds, and that a
check without them keeps its settings and its batch as they were.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from impl.errors import InvalidArgument  # noqa: E402
from impl.sequence import node_values, response_space  # noqa: E402
from properties.sequence.checker import check_sequence_loss  # noqa: E402

pytestmark = pytest.mark.torch

SMALL = {"group_sizes": (2,), "vocab_size": 2, "max_len": 2, "max_examples": 0}
"""A check small enough to run in a fraction of a second."""


def _reinforce(batch: Any) -> Any:
    return -(batch.rewards[:, None] * batch.log_probs * batch.mask).sum(-1).mean()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tool_tokens": "yes"}, "tool_tokens=True or False"),
        ({"sampling_mismatch": 1}, "sampling_mismatch=True or False"),
        ({"values": "critic"}, "values=None, 'random' or 'exact'"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        check_sequence_loss(_reinforce, **SMALL, **kwargs)


def test_a_check_without_the_options_keeps_its_settings() -> None:
    report = check_sequence_loss(_reinforce, **SMALL)
    assert not {"tool_tokens", "sampling_mismatch", "values"} & set(report.settings)
    assert "tool_tokens" not in report.message and "sampling_mismatch" not in report.message


def _seen(**kwargs: Any) -> list[Any]:
    batches: list[Any] = []

    def spy(batch: Any) -> Any:
        if not isinstance(batch.mask, torch.Tensor) or batch.mask.dim() != 2:
            return _reinforce(batch)
        batches.append(batch)
        return _reinforce(batch)

    check_sequence_loss(spy, **SMALL, **kwargs)
    return batches


def _plain_batches(**kwargs: Any) -> list[Any]:
    """Batches seen in plain calls (vmap hides the values behind batched tensors)."""
    out: list[Any] = []
    for b in _seen(**kwargs):
        try:
            out.append((b.tokens.tolist(), b.mask.tolist(), b.old_log_probs.tolist(),
                        b.sampling_log_probs.tolist(), b.values.tolist()))
        except RuntimeError:  # a vmapped view
            continue
    assert out
    return out


def test_tool_tokens_make_holes_at_the_odd_positions() -> None:
    for _, mask, *_ in _plain_batches(tool_tokens=True):
        for row_mask in mask:
            assert row_mask[1::2] == [0.0] * len(row_mask[1::2])
            assert row_mask[0] == 1.0
    report = check_sequence_loss(_reinforce, **SMALL, tool_tokens=True)
    assert report.settings["tool_tokens"] is True and "tool_tokens=True" in report.message


def test_without_a_mismatch_the_sampler_is_the_behaviour_policy() -> None:
    for _, _, old, sampling, values in _plain_batches():
        assert old == sampling
        assert np.all(np.asarray(values) == 0.0)


def test_with_a_mismatch_the_sampler_differs() -> None:
    assert any(old != sampling for _, _, old, sampling, _ in _plain_batches(sampling_mismatch=True))


def test_exact_values_are_the_conditional_expected_rewards() -> None:
    space = response_space(3, 2)
    rng = np.random.default_rng(5)
    theta = rng.normal(size=space.theta_shape(1))
    rewards = rng.normal(size=(1, space.num_responses))
    values = node_values(space, theta, rewards)
    probs = np.exp(theta[0] - np.log(np.exp(theta[0]).sum(-1, keepdims=True)))
    # the root: E[R]; by brute force over the responses
    total = 0.0
    for r in range(space.num_responses):
        p = 1.0
        for t in range(int(space.lengths[r])):
            p *= probs[space.nodes[r, t], space.tokens[r, t]]
        total += p * rewards[0, r]
    assert values[0, 0] == pytest.approx(total, abs=1e-12)
    assert values[0, -1] == 0.0


def test_random_values_fill_the_live_positions_and_leave_padding_at_zero() -> None:
    batches = _plain_batches(values="random")
    assert any(np.any(np.asarray(values) != 0.0) for *_, values in batches)
    for _, mask, _, _, values in batches:
        assert np.all(np.asarray(values)[np.asarray(mask) == 0.0] == 0.0)


def test_a_counterexample_carries_the_options_to_its_rerun_repro_and_json() -> None:
    from impl.sequence_catalogue import get

    entry = get("gae-lambda-0.95-random-values")
    report = check_sequence_loss(entry.fn, max_examples=0, **entry.settings.checker_kwargs("loss"))
    assert report.verdict == "biased"
    assert "values='random')" in report.message and "value_table=np.array(" in report.message
    cex = report.to_dict()["counterexample"]
    assert cex["shape"]["values"] == "random" and "value_table" in cex


def test_diagnose_with_an_option_it_does_not_model_is_refused_before_the_check() -> None:
    calls: list[int] = []

    def loss(batch: Any) -> Any:
        calls.append(1)
        return -(batch.rewards * (batch.log_probs * batch.mask).sum(-1)).mean()

    with pytest.raises(InvalidArgument, match="diagnose=True does not model tool_tokens"):
        check_sequence_loss(loss, tool_tokens=True, diagnose=True, max_examples=0)
    assert not calls
