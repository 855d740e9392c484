"""The statistical tier's tests are calibrated: measured false-alarm rate <= stated alpha.

Each meta-test simulates many data sets under the null hypothesis (seeded
Generators) and counts rejections at level ALPHA.  The count is Binomial(N, a)
with a <= ALPHA when the test is calibrated; the meta-test fails only if the count
exceeds the 1 - 1e-6 quantile of Binomial(N, ALPHA), so its own false-alarm rate
is below 1e-6, and it has power > 0.99 against a test whose real rate is 2 ALPHA.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from impl import best_of_k_distribution, best_of_k_sample
from properties import claims as C
from properties import stats
from properties.claims import amplification, estimators

ALPHA = 0.05
SIMULATIONS = 2000
META_ALPHA = 1e-6


def _limit() -> int:
    return int(sps.binom.ppf(1 - META_ALPHA, SIMULATIONS, ALPHA))


def test_meta_test_has_power_against_double_rate() -> None:
    assert sps.binom.sf(_limit(), SIMULATIONS, 2 * ALPHA) > 0.99


@pytest.mark.statistical
def test_binomial_test_false_alarm_rate() -> None:
    rng = np.random.default_rng(2024)
    counts = rng.binomial(400, 0.3, size=SIMULATIONS)
    rejections = sum(stats.binomial_test(int(c), 400, 0.3, alpha=ALPHA).rejected for c in counts)
    assert rejections <= _limit(), rejections


@pytest.mark.statistical
def test_binomial_lower_test_false_alarm_rate() -> None:
    rng = np.random.default_rng(7)
    counts = rng.binomial(40, 0.9, size=SIMULATIONS)
    rejections = sum(
        stats.binomial_lower_test(int(c), 40, 0.9, alpha=ALPHA).rejected for c in counts
    )
    assert rejections <= _limit(), rejections


@pytest.mark.statistical
def test_chisquare_on_sampled_search_false_alarm_rate() -> None:
    """The chi-square fit of sampled best-of-k demos (the limited-search tier) at level ALPHA."""
    s, q, k = np.array([0.2, 0.9, 0.5, 0.9]), np.array([0.4, 0.1, 0.3, 0.2]), 3
    b = best_of_k_distribution(s, q, k)
    rng = np.random.default_rng(11)
    draws = best_of_k_sample(s, q, k, SIMULATIONS * 500, rng).reshape(SIMULATIONS, 500)
    counts = (draws[..., None] == np.arange(4)).sum(axis=1)
    rejections = sum(stats.chisquare_test(c, b, alpha=ALPHA).rejected for c in counts)
    assert rejections <= _limit(), rejections


def test_chisquare_rejects_the_unbounded_search_alternative() -> None:
    """Power: demos of limited search are never mistaken for the point mass on X*."""
    s, q = np.array([0.0, 1.0]), np.array([0.5, 0.5])
    demos = best_of_k_sample(s, q, 2, 2000, np.random.default_rng(0))
    counts = np.bincount(demos, minlength=2)
    assert stats.chisquare_test(counts, [0.0, 1.0], alpha=1e-6).rejected
    assert not stats.chisquare_test(counts, best_of_k_distribution(s, q, 2), alpha=1e-6).rejected


@pytest.mark.statistical
@pytest.mark.parametrize("seed", range(5))
def test_statistical_properties_do_not_reject_over_seeds(seed: int) -> None:
    for spec_ in C.CLAIM_CHECKS:
        for sp in spec_.statistical:
            out = sp.run(seed)
            assert out.rejections == 0, (sp.name, seed, out)


def test_a_broken_recursion_is_rejected() -> None:
    """Power in practice: amplification demos drawn with k - 1 instead of k are caught."""
    s, p0 = np.array([0.0, 1.0]), np.array([0.8, 0.2])
    x = best_of_k_sample(s, p0, 2, amplification.AMPLIFICATION_DEMOS, np.random.default_rng(0))
    count = int((x == 1).sum())
    claimed_k3 = 1 - (1 - 0.2) ** 3
    assert stats.binomial_test(count, amplification.AMPLIFICATION_DEMOS, claimed_k3, alpha=1e-4).rejected


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: stats.bonferroni(0.0, 3), "alpha"),
        (lambda: stats.bonferroni(0.1, 0), "tests"),
        (lambda: stats.chisquare_test([1, 2], [1.0], alpha=0.1), "1-D shape"),
    ],
)
def test_stats_bad_arguments(call: object, match: str) -> None:
    from impl import InvalidArgument

    with pytest.raises(InvalidArgument, match=match):
        call()  # type: ignore[operator]


def test_noisy_reinforce_z_test_catches_a_scaled_estimator() -> None:
    """Power in practice: the self-inclusive group mean ((k-1)/k grad J) is rejected."""
    from impl import group_mean_baseline

    assert estimators._sampled_noisy_reinforce(0).rejections == 0
    assert estimators._sampled_noisy_reinforce(0, group_mean_baseline).rejections > 0
