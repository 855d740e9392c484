"""impl.problem and impl.search: tie rule, B_k(q) closed form, samplers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from impl import (
    InvalidArgument,
    NoisyOverseer,
    Problem,
    best_of_k_distribution,
    best_of_k_mass_on_maximisers,
    best_of_k_sample,
    sample_groups,
    unbounded_search,
)
from properties.strategies import distributions, score_tables

EXACT_TOL = 1e-12


@st.composite
def search_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    n = draw(st.integers(2, 5))
    return draw(score_tables(n)), draw(distributions(n)), draw(st.integers(1, 4))


def brute_force_best_of_k(scores: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Enumerate every candidate tuple; pick the best by (score, lower index)."""
    n = scores.size
    out = np.zeros(n)
    for cand in itertools.product(range(n), repeat=k):
        prob = float(np.prod(q[list(cand)]))
        best = max(cand, key=lambda i: (scores[i], -i))
        out[best] += prob
    return out


@given(search_cases())
def test_best_of_k_closed_form_matches_enumeration(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    s, q, k = case
    np.testing.assert_allclose(best_of_k_distribution(s, q, k), brute_force_best_of_k(s, q, k), atol=EXACT_TOL)


@given(search_cases())
def test_best_of_k_mass_on_maximisers(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    s, q, k = case
    a_star = list(Problem(s).maximisers)
    b = best_of_k_distribution(s, q, k)
    expected = 1 - (1 - q[a_star].sum()) ** k
    assert b[a_star].sum() == pytest.approx(expected, abs=EXACT_TOL)
    assert best_of_k_mass_on_maximisers(s, q, k) == pytest.approx(expected, abs=EXACT_TOL)


def test_tie_rule_is_lowest_index() -> None:
    s = [0.3, 0.9, 0.1, 0.9]
    assert unbounded_search(s) == 1 and Problem(s).maximisers == (1, 3)
    # with both maximisers proposed, the lower index wins
    b = best_of_k_distribution(s, [0.0, 0.5, 0.0, 0.5], 2)
    np.testing.assert_allclose(b, [0.0, 0.75, 0.0, 0.25], atol=EXACT_TOL)


def test_best_of_k_sampler_matches_closed_form() -> None:
    """Chi-square goodness of fit at alpha = 1e-6 (fixed seed: a fact, not a flake)."""
    from scipy import stats

    s, q, k = np.array([0.0, 1.0, 1.0, 0.5]), np.array([0.4, 0.1, 0.2, 0.3]), 3
    draws = best_of_k_sample(s, q, k, 100_000, np.random.default_rng(7))
    counts = np.bincount(draws, minlength=4)
    expected = best_of_k_distribution(s, q, k) * draws.size
    assert stats.chisquare(counts, expected).pvalue > 1e-6


def test_problem_is_immutable_and_validated() -> None:
    pb = Problem([1.0, 2.0])
    with pytest.raises(ValueError, match="read-only"):
        pb.scores[0] = 5.0
    with pytest.raises(InvalidArgument, match="at least 2"):
        Problem([1.0])
    with pytest.raises(InvalidArgument, match="finite"):
        Problem([1.0, np.inf])


def test_noisy_overseer_is_zero_mean_and_seeded() -> None:
    ov = NoisyOverseer(Problem([0.0, 1.0]), noise_std=2.0)
    x = np.ones((200_000, 1), dtype=np.int64)
    r1 = ov.reward(x, np.random.default_rng(3))
    r2 = ov.reward(x, np.random.default_rng(3))
    np.testing.assert_array_equal(r1, r2)
    # mean of 2e5 N(1, 4) draws: standard error 0.0045, so 6 s.e. = 0.027
    assert abs(r1.mean() - 1.0) < 0.027
    with pytest.raises(InvalidArgument, match="Generator"):
        ov.reward(x, 3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="noise_std"):
        NoisyOverseer(Problem([0.0, 1.0]), noise_std=-1.0)


def test_sample_groups_never_draws_zero_mass_answers() -> None:
    x = sample_groups([0.0, -1e3, 0.0], 10_000, 3, np.random.default_rng(0))
    assert x.shape == (10_000, 3) and not np.any(x == 1)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: best_of_k_distribution([0.0, 1.0], [0.5, 0.6], 2), "summing to 1"),
        (lambda: best_of_k_distribution([0.0, 1.0], [0.5, 0.5, 0.0], 2), "over 2 answers"),
        (lambda: best_of_k_distribution([0.0, 1.0], [0.5, 0.5], 0), ">= 1"),
        (lambda: best_of_k_distribution([0.0, 1.0], [0.5, 0.5], True), "integer"),
        (lambda: best_of_k_sample([0.0, 1.0], [0.5, 0.5], 2, 3, None), "Generator"),
    ],
)
def test_search_bad_arguments(call: object, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        call()  # type: ignore[operator]


def test_all_proposal_mass_on_the_maximisers_is_exactly_one_without_warnings() -> None:
    """q(A*) = 1 takes the closed branch: 1.0, not -expm1(k log 0) with a divide-by-zero warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert best_of_k_mass_on_maximisers([0.0, 1.0, 1.0], [0.0, 0.5, 0.5], 3) == 1.0
        assert best_of_k_mass_on_maximisers([0.0, 1.0], [0.0, 1.0], 1) == 1.0


def test_best_of_k_sample_of_size_zero_is_empty() -> None:
    draws = best_of_k_sample([0.0, 1.0], [0.5, 0.5], 2, 0, np.random.default_rng(0))
    assert draws.shape == (0,) and draws.dtype == np.int64


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: best_of_k_distribution([0.0, 1.0], "q", 2), r"proposal='q' \(type=str\)"),
        (lambda: best_of_k_distribution([0.0, 1.0], [0.5, 0.5], 0), r"k=0 \(type=int\)"),
        (lambda: best_of_k_mass_on_maximisers([0.0, 1.0], "q", 2), r"proposal='q' \(type=str\)"),
        (lambda: best_of_k_mass_on_maximisers([0.0, 1.0], [0.5, 0.5, 0.0], 2),
         r"over 2 answers but got proposal=\[0\.5, 0\.5, 0\.0\]"),
        (lambda: best_of_k_mass_on_maximisers([0.0, 1.0], [0.5, 0.5], 0), r"k=0 \(type=int\)"),
        (lambda: best_of_k_sample([0.0, 1.0], "q", 2, 3, np.random.default_rng(0)), r"proposal='q' \(type=str\)"),
        (lambda: best_of_k_sample([0.0, 1.0], [0.5, 0.5, 0.0], 2, 3, np.random.default_rng(0)),
         r"over 2 answers but got proposal=\[0\.5, 0\.5, 0\.0\]"),
        (lambda: best_of_k_sample([0.0, 1.0], [0.5, 0.5], 0, 3, np.random.default_rng(0)), r"k=0 \(type=int\)"),
        (lambda: best_of_k_sample([0.0, 1.0], [0.5, 0.5], 2, -1, np.random.default_rng(0)),
         r">= 0 but got size=-1 \(type=int\)"),
        (lambda: best_of_k_sample([0.0, 1.0], [0.5, 0.5], 2, 3, 7), r"rng=7 \(type=int\)"),
    ],
)
def test_search_bad_arguments_name_themselves(call: object, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        call()  # type: ignore[operator]
