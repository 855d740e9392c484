r"""Calibrated statistical tests for the sampling tier (scipy supplies the distributions).

Every test states its false-alarm rate :math:`\alpha` (the probability of rejecting
when the claim is true) and, through the ``power_*`` helpers, its power against a
stated alternative.  Families of tests are Bonferroni-corrected: ``m`` tests at
level :math:`\alpha/m` each have a family-wise false-alarm rate of at most :math:`\alpha`.

``scipy.stats`` is imported inside the functions: it costs about 0.6 s, which every
``ida-verify`` command would otherwise pay at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from impl.errors import InvalidArgument, describe


@dataclass(frozen=True)
class TestResult:
    """One hypothesis test: its p-value, the level it was run at, and whether it rejected."""

    __test__ = False  # not a pytest class

    name: str
    pvalue: float
    alpha: float

    @property
    def rejected(self) -> bool:
        """True when ``pvalue < alpha``: the data contradict the null hypothesis."""
        return self.pvalue < self.alpha


def bonferroni(alpha: float, tests: int) -> float:
    """Per-test level for a family of ``tests`` tests with family-wise rate ``alpha``.

    >>> bonferroni(0.01, 100)
    0.0001
    """
    if not (0 < alpha < 1):
        raise InvalidArgument(f"Expected 0 < alpha < 1 but got {describe('alpha', alpha)}")
    if tests < 1:
        raise InvalidArgument(f"Expected tests >= 1 but got {describe('tests', tests)}")
    return alpha / tests


def binomial_test(
    successes: int, trials: int, p0: float, *, alpha: float, name: str = "binomial"
) -> TestResult:
    r"""Exact two-sided binomial test of :math:`H_0: \text{success probability} = p_0`.

    >>> binomial_test(50, 100, 0.5, alpha=0.01).rejected
    False
    >>> binomial_test(90, 100, 0.5, alpha=0.01).rejected
    True
    """
    from scipy import stats

    if p0 <= 0.0 or p0 >= 1.0:
        # degenerate null: any observation off the support is a certain rejection
        impossible = (p0 <= 0.0 and successes > 0) or (p0 >= 1.0 and successes < trials)
        return TestResult(name, 0.0 if impossible else 1.0, alpha)
    p = float(stats.binomtest(int(successes), int(trials), float(p0)).pvalue)
    return TestResult(name, p, alpha)


def binomial_lower_test(
    successes: int, trials: int, p0: float, *, alpha: float, name: str = "binomial-lower"
) -> TestResult:
    r"""One-sided exact test of :math:`H_0: \text{rate} \ge p_0` against :math:`\text{rate} < p_0`.

    >>> binomial_lower_test(99, 100, 0.9, alpha=0.001).rejected
    False
    >>> binomial_lower_test(60, 100, 0.9, alpha=0.001).rejected
    True
    """
    from scipy import stats

    p = float(stats.binom.cdf(int(successes), int(trials), float(p0)))
    return TestResult(name, p, alpha)


def power_binomial_lower(trials: int, p0: float, p1: float, *, alpha: float) -> float:
    r"""Power of :func:`binomial_lower_test` at level ``alpha`` when the true rate is ``p1 < p0``.

    >>> round(power_binomial_lower(100, 0.9, 0.6, alpha=0.001), 4)
    1.0
    """
    from scipy import stats

    # reject when successes <= c, with c the largest count whose null cdf is < alpha
    c = int(stats.binom.ppf(alpha, trials, p0))
    while c >= 0 and stats.binom.cdf(c, trials, p0) >= alpha:
        c -= 1
    return 0.0 if c < 0 else float(stats.binom.cdf(c, trials, p1))


def chisquare_test(
    counts: Any, probs: Any, *, alpha: float, name: str = "chi-square"
) -> TestResult:
    r"""Pearson goodness of fit of ``counts`` to the distribution ``probs``.

    Cells of zero probability are handled exactly: any count there is an impossible
    observation (p-value 0); they are dropped from the statistic otherwise.

    >>> chisquare_test([48, 52], [0.5, 0.5], alpha=0.01).rejected
    False
    >>> chisquare_test([1, 99], [0.0, 1.0], alpha=0.01).rejected
    True
    """
    from scipy import stats

    c = np.asarray(counts, dtype=np.float64)
    q = np.asarray(probs, dtype=np.float64)
    if c.shape != q.shape or c.ndim != 1:
        raise InvalidArgument(
            f"Expected counts and probs of one 1-D shape but got {describe('counts', counts)}"
        )
    support = q > 0
    if np.any(c[~support] > 0):
        return TestResult(name, 0.0, alpha)
    c, q = c[support], q[support]
    if c.size < 2:
        return TestResult(name, 1.0, alpha)
    expected = q / q.sum() * c.sum()
    p = float(stats.chisquare(c, expected).pvalue)
    return TestResult(name, p, alpha)


def power_binomial_two_sided(trials: int, p0: float, p1: float, *, alpha: float) -> float:
    r"""Power of :func:`binomial_test` (level ``alpha``) when the true rate is ``p1``.

    Computed exactly by summing the alternative's mass over the rejection region.

    >>> power_binomial_two_sided(2000, 0.5, 0.56, alpha=1e-4) > 0.9
    True
    """
    from scipy import stats

    k = np.arange(trials + 1)
    pvals = (
        np.array([stats.binomtest(int(x), trials, p0).pvalue for x in k]) if trials <= 400 else None
    )
    if pvals is None:
        # normal approximation of the rejection region for large trials (accurate to ~1e-3 here)
        sd = np.sqrt(trials * p0 * (1 - p0))
        z = stats.norm.isf(alpha / 2)
        reject = np.abs(k - trials * p0) > z * sd
    else:
        reject = pvals < alpha
    return float(stats.binom.pmf(k[reject], trials, p1).sum())


__all__ = [
    "TestResult",
    "binomial_lower_test",
    "binomial_test",
    "bonferroni",
    "chisquare_test",
    "power_binomial_lower",
    "power_binomial_two_sided",
]
