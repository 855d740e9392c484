"""``compare_sequence_losses``: the sequence protocols' comparison against REINFORCE of an aggregation.

What must hold whatever the problems: plain REINFORCE against itself is 1; the group mean
is ``(k-1)/k`` times RLOO batch by batch, so rescaled by ``c_k`` its variance ratio is
RLOO's; a loss and its token weights give the same figures; REINFORCE with a per-response
token mean against the ``"token-mean"`` reference is 1 in variance and MSE.
"""

from __future__ import annotations

import numpy as np
import pytest

from impl.errors import InvalidArgument
from properties.sequence.compare import REFERENCES, compare_sequence_losses, sequence_problems

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

FAST = {"group_sizes": (2, 3), "max_examples": 0, "num_problems": 3}


def reinforce(b):  # type: ignore[no-untyped-def]
    return -(b.rewards[:, None] * b.log_probs * b.mask).sum() / b.rewards.shape[0]


def rloo(b):  # type: ignore[no-untyped-def]
    k = b.rewards.shape[0]
    loo = (b.rewards.sum() - b.rewards) / (k - 1)
    return -((b.rewards - loo)[:, None] * b.log_probs * b.mask).sum() / k


def group_mean(b):  # type: ignore[no-untyped-def]
    return -((b.rewards - b.rewards.mean())[:, None] * b.log_probs * b.mask).sum() / b.rewards.shape[0]


def token_mean_reinforce(b):  # type: ignore[no-untyped-def]
    return -((b.rewards[:, None] * b.log_probs * b.mask).sum(1) / b.mask.sum(1)).mean()


def rloo_weights(rewards, mask, log_probs):  # type: ignore[no-untyped-def]
    k = rewards.shape[0]
    return (rewards - (rewards.sum() - rewards) / (k - 1))[:, None] * mask / k


def test_reinforce_rloo_and_the_group_mean_as_theory_says() -> None:
    result = compare_sequence_losses([reinforce, rloo, group_mean], **FAST)
    plain, lo, gm = result.rows
    assert (plain.verdict, lo.verdict, gm.verdict) == ("unbiased", "unbiased", "scaled")
    for k in (2, 3):
        assert plain.variance_ratio[k] == pytest.approx(1.0, rel=1e-10)
        v_lo, v_gm = lo.variance_ratio[k], gm.variance_ratio[k]
        assert v_lo is not None and v_gm is not None
        assert v_gm == pytest.approx(((k - 1) / k) ** 2 * v_lo, rel=1e-10)
        assert gm.rescaled_variance_ratio[k] == pytest.approx(v_lo, rel=1e-10)
        assert result.ranking(k)[0] == "group_mean"
    assert result.complete and "aggregation 'sum'" in str(result)


def test_a_loss_and_its_token_weights_give_the_same_figures() -> None:
    from_loss = compare_sequence_losses([rloo], **FAST)
    from_weights = compare_sequence_losses([rloo_weights], protocol="token-weights", **FAST)
    for k in (2, 3):
        assert from_loss.rows[0].variance_ratio[k] == pytest.approx(
            from_weights.rows[0].variance_ratio[k], rel=1e-10
        )


def test_the_reference_of_the_same_aggregation_is_one() -> None:
    result = compare_sequence_losses([token_mean_reinforce], reference="token-mean", **FAST)
    row = result.rows[0]
    assert row.verdict == "biased"  # a weight of 1/|y|
    for k in (2, 3):
        assert row.variance_ratio[k] == pytest.approx(1.0, rel=1e-10)
        assert row.mse_ratio[k] == pytest.approx(1.0, rel=1e-10)


def test_a_failing_loss_gets_no_variance() -> None:
    def broken(b):  # type: ignore[no-untyped-def]
        raise RuntimeError("no")

    result = compare_sequence_losses([reinforce, broken], **FAST)
    assert result.rows[1].verdict == "error" and result.rows[1].variance_ratio == {2: None, 3: None}
    assert "no variance" in result.rows[1].note and not result.complete


@pytest.mark.parametrize(
    "kwargs",
    [
        {"protocol": "nope"},
        {"reference": "mean"},
        {"group_sizes": (1,)},
        {"group_sizes": "23"},
        {"vocab_size": 1},
        {"max_len": 0},
        {"num_problems": 0},
        {"vocab_size": 4, "max_len": 3, "group_sizes": (4,)},
        {"names": ["a", "b"]},
    ],
)
def test_bad_arguments_raise_invalid_argument(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        compare_sequence_losses([reinforce], **kwargs)  # type: ignore[arg-type]


def test_the_problems_are_seeded_and_the_references_named() -> None:
    a, b = sequence_problems(3, 2, 2, seed=4), sequence_problems(3, 2, 2, seed=4)
    assert all(np.array_equal(x.theta, y.theta) for x, y in zip(a, b, strict=True))
    assert sorted(REFERENCES) == ["max-len", "sum", "token-mean"]


def test_a_hostile_iterable_of_losses_is_invalid_argument() -> None:
    class Hostile:
        def __iter__(self):  # type: ignore[no-untyped-def]
            raise SystemExit("gotcha")

    with pytest.raises(InvalidArgument):
        compare_sequence_losses(Hostile())  # type: ignore[arg-type]
