"""The public strategies reach the places where bugs hide, and validate their bounds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from impl import InvalidArgument, softmax
from properties import strategies as S

REACH = settings(max_examples=2000, database=None, deadline=None)


def _ties_at_max(s: np.ndarray) -> bool:
    return int((s == s.max()).sum()) >= 2


@pytest.mark.parametrize(
    ("strategy", "condition"),
    [
        (S.policy_problems(), lambda pb: pb.n == 2),
        (S.policy_problems(), lambda pb: pb.n >= 3 and np.unique(pb.scores).size >= 3),
        (S.policy_problems(), lambda pb: _ties_at_max(pb.scores) and pb.n >= 3),
        (S.policy_problems(), lambda pb: pb.scores.min() < 0),
        (S.policy_problems(), lambda pb: np.abs(pb.scores).max() >= 1e3),
        (S.policy_problems(), lambda pb: bool(np.any(pb.scores == 0)) and pb.scores.max() > 0),
        (S.policy_problems(), lambda pb: softmax(pb.logits).min() < 1e-11),
        (S.policy_problems(), lambda pb: bool(np.all(pb.logits == 0)) and pb.k >= 2),
        (S.policy_problems(), lambda pb: pb.k == 1),
        (S.policy_problems(), lambda pb: pb.k == 4),
        (S.score_tables(4, binary=True), lambda s: set(s.tolist()) == {0.0, 1.0}),
        (S.demonstrators(3), lambda q: q.max() == 1.0),
        (S.demonstrators(3), lambda q: 0 < q.max() < 1.0),
        (S.distributions(4), lambda q: bool(np.any(q == 0))),
    ],
)
def test_strategies_reach_the_hard_places(
    strategy: st.SearchStrategy[Any], condition: Callable[[Any], bool]
) -> None:
    find(strategy, condition, settings=REACH)


@given(S.policy_problems(min_n=3, max_n=4, min_k=2, max_k=3))
def test_policy_problems_respect_their_bounds(pb: S.PolicyProblem) -> None:
    assert 3 <= pb.n <= 4 and 2 <= pb.k <= 3
    assert pb.logits.shape == pb.scores.shape == (pb.n,)
    assert np.all(np.isfinite(pb.logits)) and np.all(np.isfinite(pb.scores))


@given(
    st.integers(2, 6).flatmap(
        lambda n: st.tuples(st.just(n), S.score_tables(n, min_distinct=min(3, n)))
    )
)
def test_min_distinct_is_honoured(case: tuple[int, np.ndarray]) -> None:
    n, s = case
    assert s.shape == (n,) and np.unique(s).size >= min(3, n)


@given(S.distributions(5, full_support=True))
def test_full_support_distributions(q: np.ndarray) -> None:
    assert np.all(q > 0) and abs(q.sum() - 1) < 1e-12


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: S.answer_set_sizes(min_n=1), "min_n"),
        (lambda: S.answer_set_sizes(min_n=4, max_n=3), "min_n <= max_n"),
        (lambda: S.answer_set_sizes(max_n=S.MAX_N + 1), "max_n"),
        (lambda: S.group_sizes(min_k=0), "min_k"),
        (lambda: S.group_sizes(min_k=3, max_k=2), "min_k <= max_k"),
        (lambda: S.score_tables(1), "n"),
        (lambda: S.score_tables(3, min_distinct=4), "min_distinct"),
        (lambda: S.score_tables(3, min_distinct=3, max_distinct=2), "min_distinct <= max_distinct"),
        (lambda: S.score_tables(3, max_magnitude=0.5), "max_magnitude"),
        (lambda: S.logits(3, max_abs=0.0), "max_abs"),
        (lambda: S.logits(3, max_abs=float("nan")), "max_abs"),
        (lambda: S.distributions(3, min_support=4), "min_support"),
        (lambda: S.demonstrators(1), "n"),
        (lambda: S.policy_problems(min_n=2.5), "min_n"),  # type: ignore[arg-type]
        (lambda: S.policy_problems(min_k=True), "min_k"),  # type: ignore[arg-type]
    ],
)
def test_invalid_bounds_fail_when_the_strategy_is_built(
    build: Callable[[], object], match: str
) -> None:
    with pytest.raises(InvalidArgument, match=match):
        build()
