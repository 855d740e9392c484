"""Exact confirmation of counterexamples to the two refuted claims."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

from spec import (
    SpecError,
    best_of_k_exact,
    confirm_indicator_counterexample,
    confirm_limited_search_counterexample,
)
from spec.counterexamples import MAX_ENUMERATION


def test_indicator_known_counterexample_two_thirds() -> None:
    r = confirm_indicator_counterexample([Fraction(1, 3), Fraction(2, 3)])
    assert r.refutes
    assert r.rl_optimum == (0, 1)
    assert r.imitation_optimum == (sympy.Rational(1, 3), sympy.Rational(2, 3))
    assert r.rl_value_sup == sympy.Rational(2, 3)
    assert r.rl_value_at_imitation_optimum == sympy.Rational(5, 9)
    # at p = q the RL expected gradient p_m (q_m - q.p) is not zero, imitation's is
    assert r.rl_gradient_at_imitation_optimum == (-sympy.Rational(2, 27), sympy.Rational(2, 27))
    assert r.imitation_gradient_at_imitation_optimum == (0, 0)
    assert not r.imitation_optimum_is_rl_optimal
    assert "refutes=True" in r.report()


def test_indicator_point_mass_is_not_a_counterexample() -> None:
    r = confirm_indicator_counterexample([0, 1, 0])
    assert not r.refutes
    assert r.rl_optimum == r.imitation_optimum
    assert all(g == 0 for g in r.rl_gradient_at_imitation_optimum)


def test_indicator_uniform_on_support_is_not_a_refutation() -> None:
    """q uniform on its support is one of RL's optima (RL's gradient vanishes at p = q):
    no counterexample, although RL's optimal set is larger than {q} (issue 15)."""
    r = confirm_indicator_counterexample(["1/2", "1/2", 0])
    assert not r.refutes
    assert all(g == 0 for g in r.rl_gradient_at_imitation_optimum)
    assert not confirm_indicator_counterexample(["1/3", "1/3", "1/3"]).refutes
    assert r.rl_optimal_support == (0, 1)
    assert r.imitation_optimum_is_rl_optimal
    assert r.rl_optimum == (1, 0, 0)


_exact_q = st.lists(st.integers(0, 6), min_size=2, max_size=5).filter(lambda w: sum(w) > 0).map(
    lambda w: [Fraction(x, sum(w)) for x in w]
)


@given(_exact_q)
def test_indicator_refutes_exactly_when_q_is_not_uniform_on_its_support(q: list[Fraction]) -> None:
    r = confirm_indicator_counterexample(q)
    # Sum q^2 <= max q, equality iff q is uniform on its support (a point mass included)
    assert r.rl_value_at_imitation_optimum <= r.rl_value_sup
    support = [x for x in q if x > 0]
    uniform = len(set(support)) == 1
    assert r.imitation_optimum_is_rl_optimal == uniform
    assert r.refutes == (not uniform)
    assert r.refutes == any(g != 0 for g in r.rl_gradient_at_imitation_optimum)


def test_limited_search_known_counterexample() -> None:
    r = confirm_limited_search_counterexample([0, 1], [Fraction(1, 2), Fraction(1, 2)], 2)
    assert r.refutes and r.consistent
    assert r.rl_astar_mass == 1
    assert r.imitation_astar_mass == sympy.Rational(3, 4)
    assert r.imitation_optimum == (sympy.Rational(1, 4), sympy.Rational(3, 4))
    assert r.rl_optimum == (0, 1)


def test_limited_search_ties_use_the_lowest_index_rule() -> None:
    r = confirm_limited_search_counterexample([2, 0, 2], ["1/3", "1/3", "1/3"], 2)
    assert r.maximisers == (0, 2)
    # ranks: 1 (worst), 2, 0 (best: lowest-index maximiser)
    assert r.imitation_optimum == (sympy.Rational(5, 9), sympy.Rational(1, 9), sympy.Rational(3, 9))
    assert r.imitation_astar_mass == sympy.Rational(8, 9) == r.closed_form_astar_mass
    assert r.rl_optimum == (1, 0, 0)
    assert r.consistent


def test_limited_search_not_refuted_when_proposal_is_on_astar() -> None:
    r = confirm_limited_search_counterexample([0, 1, 1], [0, "1/4", "3/4"], 3)
    assert not r.refutes and r.imitation_astar_mass == 1


@st.composite
def _search_cases(draw: st.DrawFn) -> tuple[list[int], list[Fraction], int]:
    n = draw(st.integers(2, 5))
    scores = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    weights = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n).filter(lambda w: sum(w) > 0))
    k = draw(st.integers(1, 4))
    return scores, [Fraction(w, sum(weights)) for w in weights], k


@given(_search_cases())
def test_limited_search_closed_form_and_enumeration_agree(
    case: tuple[list[int], list[Fraction], int],
) -> None:
    scores, q, k = case
    r = confirm_limited_search_counterexample(scores, q, k)
    assert len(scores) ** k <= MAX_ENUMERATION and r.enumerated is not None
    assert r.consistent, r.report()
    assert sum(r.imitation_optimum) == 1
    q_astar = sum(q[x] for x in r.maximisers)
    assert r.refutes == (q_astar != 1)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0.5, 0.6],), "summing exactly to 1"),
        (([1.5, -0.5],), "non-negative"),
        (([1],), "at least 2"),
        (("ab",), "sequence"),
        (([True, 0],), "bool"),
        (([float("nan"), 1.0],), "exact number"),
        ((["x", 1],), "exact number"),
    ],
)
def test_indicator_rejects_bad_q(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        confirm_indicator_counterexample(*args)


def test_normalise_divides_by_the_sum() -> None:
    r = confirm_indicator_counterexample([2, 1], normalise=True)
    assert r.q == (sympy.Rational(2, 3), sympy.Rational(1, 3))


@pytest.mark.parametrize(
    ("scores", "q", "k", "match"),
    [
        ([0, 1], [1, 0], 0, "k >= 1"),
        ([0, 1], [1, 0], True, "k >= 1"),
        ([0, 1, 2], [1, 0], 2, "same length"),
    ],
)
def test_limited_search_rejects_bad_arguments(scores: Any, q: Any, k: Any, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        confirm_limited_search_counterexample(scores, q, k)


def test_best_of_k_exact_floats_are_converted_exactly() -> None:
    assert best_of_k_exact([0.5, 0.25], [0.5, 0.5], 1) == (sympy.Rational(1, 2),) * 2


def test_limited_search_normalise_divides_by_the_sum() -> None:
    r = confirm_limited_search_counterexample([0, 1], [1, 3], 1, normalise=True)
    assert r.q == (sympy.Rational(1, 4), sympy.Rational(3, 4))
    assert r.imitation_astar_mass == sympy.Rational(3, 4)
