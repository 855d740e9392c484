r"""The exact variance of one-step estimators against closed forms, and ``compare_estimators``.

Notation: answers :math:`x \sim p = \mathrm{softmax}(\theta)`, score function
:math:`a(x) = e_x - p` (so :math:`E[a] = 0`, :math:`A = E|a|^2 = 1 - |p|^2`), rewards
:math:`s`, :math:`J = p \cdot s`, :math:`u = s - J`, :math:`\sigma^2 = E[u^2]`,
:math:`G = \nabla J = E[s\,a] = E[u\,a]`; groups of :math:`k` i.i.d. answers.

**REINFORCE with a constant baseline** :math:`\beta`: :math:`g = \frac1k\sum_j (s_j-\beta) a_j`
is a mean of :math:`k` i.i.d. terms of mean :math:`G` (:math:`E[\beta a] = 0`), so

.. math:: \operatorname{Var}[g] = \tfrac1k\big(E[(s-\beta)^2|a|^2] - |G|^2\big).

*Two answers*, :math:`q = p_1`: :math:`a(0) = q(1,-1)`, :math:`a(1) = -(1-q)(1,-1)`, so
:math:`E[(s-\beta)^2|a|^2] = 2q(1-q)\,[q(s_0-\beta)^2 + (1-q)(s_1-\beta)^2]` and
:math:`G = q(1-q)(s_1-s_0)(-1, 1)`, :math:`|G|^2 = 2q^2(1-q)^2(s_1-s_0)^2`.  The bracket
minus :math:`q(1-q)(s_1-s_0)^2` is a quadratic in :math:`\beta` with leading coefficient
:math:`q + (1-q) = 1` that vanishes at :math:`\beta^* = q s_0 + (1-q) s_1` (there both
answers give the same term :math:`q(1-q)(s_0-s_1)(1,-1)`), hence

.. math:: \operatorname{Var}[g] = \frac{2q(1-q)}{k}\,(\beta - \beta^*)^2,

and plain REINFORCE (:math:`\beta = 0`) has :math:`2q(1-q)(q s_0 + (1-q) s_1)^2/k`.

**Leave-one-out (RLOO)**: :math:`s_j - \frac1{k-1}\sum_{i\ne j}s_i = u_j - \frac1{k-1}\sum_{i\ne j}u_i`,
so :math:`g = T_1 - T_2` with :math:`T_1 = \frac1k\sum_j u_j a_j`,
:math:`T_2 = \frac1{k(k-1)}\sum_{i\ne j} u_i a_j`.  :math:`E|T_1|^2 = \frac1k E[u^2|a|^2] +
\frac{k-1}k|G|^2`; in :math:`E|T_2|^2` only the pairings :math:`(i',j') = (i,j)` (giving
:math:`\sigma^2 A`) and :math:`(i',j') = (j,i)` (giving :math:`|G|^2`) survive, since any
index left alone contributes :math:`E[u] = 0` or :math:`E[a] = 0`, so
:math:`E|T_2|^2 = (\sigma^2 A + |G|^2)/(k(k-1))`; :math:`E[T_1\cdot T_2] = 0` likewise.  So

.. math:: \operatorname{Var}[g_{RLOO}] = \tfrac1k\big(E[u^2|a|^2] - |G|^2\big)
          + \frac{\sigma^2 A + |G|^2}{k(k-1)}.

**Self-inclusive group mean**: :math:`s_j - \bar s = \frac{k-1}{k}(s_j - b_j)` with
:math:`b_j` the leave-one-out mean, so :math:`g_{GM} = \frac{k-1}k g_{RLOO}`: variance
:math:`(\frac{k-1}k)^2\operatorname{Var}[g_{RLOO}]`, bias :math:`-G/k`.

**Ranking** (what theory says): :math:`\operatorname{Var}[g_{GM}] < \operatorname{Var}[g_{RLOO}]`
always (when non-zero).  RLOO against REINFORCE: by the two formulas (with
:math:`s = u + J`, :math:`E[s^2|a|^2] = E[u^2|a|^2] + 2J E[u|a|^2] + J^2 A`), RLOO has the
lower variance iff :math:`(\sigma^2 A + |G|^2)/(k-1) < J^2 A + 2J\,E[u|a|^2]`: when the
rewards sit far from 0 compared with their spread (e.g. rewards in :math:`[10, 11]`),
REINFORCE is worst; when :math:`J = 0` (centred rewards) RLOO only adds the noise of
its baseline and REINFORCE beats it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from impl.errors import InvalidArgument
from impl.estimators import constant_baseline, group_mean_baseline, reinforce, rloo
from impl.policy import policy_gradient, softmax
from properties import Comparison, compare_estimators
from properties.onestep.compare import EstimatorProfile
from properties.onestep.variance import (
    Moments,
    comparison_problems,
    estimator_moments,
    geometric_mean_ratio,
)

RTOL = 1e-11
"""Enumeration against closed form: both are float64 sums of at most a few thousand terms."""

TWO_ANSWERS = [
    (np.array([0.0, 0.0]), np.array([0.0, 1.0])),
    (np.array([1.3, -0.4]), np.array([2.0, -1.5])),
    (np.array([-2.0, 0.5]), np.array([10.0, 11.0])),
]


def _single_moments(theta: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(p, |a(x)|^2 per answer, A)``."""
    p = softmax(theta)
    a2 = np.array([np.sum((np.eye(p.size)[x] - p) ** 2) for x in range(p.size)])
    return p, a2, float(p @ a2)


def reinforce_variance(theta: np.ndarray, s: np.ndarray, k: int, beta: float = 0.0) -> float:
    """(1/k)(E[(s-beta)^2 |a|^2] - |G|^2) (module docstring)."""
    p, a2, _ = _single_moments(theta, s)
    g = policy_gradient(theta, s)
    return float((p @ ((s - beta) ** 2 * a2) - g @ g) / k)


def rloo_variance(theta: np.ndarray, s: np.ndarray, k: int) -> float:
    """(1/k)(E[u^2|a|^2] - |G|^2) + (sigma^2 A + |G|^2)/(k(k-1)) (module docstring)."""
    p, a2, big_a = _single_moments(theta, s)
    u = s - p @ s
    g = policy_gradient(theta, s)
    sigma2 = float(p @ u**2)
    return float((p @ (u**2 * a2) - g @ g) / k + (sigma2 * big_a + g @ g) / (k * (k - 1)))


def _one(fn, theta, s, k, batched=True) -> Moments:  # type: ignore[no-untyped-def]
    from properties.onestep.variance import ComparisonProblem

    return estimator_moments(fn, [ComparisonProblem(theta, s)], (k,), batched=batched)[k][0]


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("problem", range(len(TWO_ANSWERS)))
def test_reinforce_variance_on_two_answers_matches_closed_form(problem: int, k: int) -> None:
    theta, s = TWO_ANSWERS[problem]
    q = float(softmax(theta)[1])
    best = q * s[0] + (1 - q) * s[1]
    for beta in (0.0, 0.7, -3.0, best):
        fn = reinforce if beta == 0.0 else constant_baseline(beta)
        m = _one(fn, theta, s, k)
        want = 2 * q * (1 - q) * (beta - best) ** 2 / k
        assert m.variance == pytest.approx(want, rel=RTOL, abs=1e-15 * m.second_moment)
        assert m.bias_squared < 1e-28 * max(m.second_moment, 1.0)
        assert m.mse == pytest.approx(m.variance + m.bias_squared, rel=1e-15)


def test_the_best_constant_baseline_on_two_answers_has_zero_variance() -> None:
    theta, s = TWO_ANSWERS[1]
    q = float(softmax(theta)[1])
    m = _one(constant_baseline(q * s[0] + (1 - q) * s[1]), theta, s, 3)
    assert m.variance < 1e-28 * m.second_moment
    assert _one(reinforce, theta, s, 3).variance > 0.05


@pytest.mark.parametrize("k", [1, 2, 4])
def test_reinforce_variance_matches_closed_form_on_larger_answer_sets(k: int) -> None:
    for problem in comparison_problems(6, seed=3):
        for beta in (0.0, 0.4):
            fn = reinforce if beta == 0.0 else constant_baseline(beta)
            m = _one(fn, problem.logits, problem.scores, k)
            want = reinforce_variance(problem.logits, problem.scores, k, beta)
            assert m.variance == pytest.approx(want, rel=RTOL)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_rloo_variance_matches_the_known_formula(k: int) -> None:
    problems = list(comparison_problems(6, seed=1)) + [
        type(comparison_problems(1)[0])(t, s) for t, s in TWO_ANSWERS
    ]
    for problem in problems:
        m = _one(rloo, problem.logits, problem.scores, k)
        assert m.variance == pytest.approx(rloo_variance(problem.logits, problem.scores, k), rel=RTOL)
        assert m.bias_squared < 1e-28 * m.second_moment


@pytest.mark.parametrize("k", [2, 3, 4])
def test_group_mean_is_rloo_scaled_by_k_minus_1_over_k(k: int) -> None:
    for problem in comparison_problems(4, seed=2):
        gm = _one(group_mean_baseline, problem.logits, problem.scores, k)
        want = ((k - 1) / k) ** 2 * rloo_variance(problem.logits, problem.scores, k)
        assert gm.variance == pytest.approx(want, rel=RTOL)
        assert gm.bias_squared == pytest.approx(gm.gradient_squared / k**2, rel=RTOL)


def test_per_group_and_batched_estimators_give_the_same_moments() -> None:
    def per_group(logits, samples, rewards):  # type: ignore[no-untyped-def]
        return rloo(logits, samples[None, :], rewards[None, :])[0]

    theta, s = TWO_ANSWERS[1]
    assert _one(per_group, theta, s, 3, batched=False) == _one(rloo, theta, s, 3)


def _shifted(shift: float) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(p.logits, p.scores + shift) for p in comparison_problems(6, seed=5)]


def _centred() -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for p in comparison_problems(6, seed=5):
        out.append((p.logits, p.scores - softmax(p.logits) @ p.scores))
    return out


def test_compare_ranks_reinforce_rloo_and_group_mean_as_theory_says() -> None:
    """Rewards in [10, 11]: group mean < RLOO < REINFORCE; centred rewards (J = 0):
    REINFORCE < RLOO, and group mean < RLOO (module docstring)."""
    ks = (2, 3, 4)
    far = _shifted(10.0)
    for theta, s in far:  # the theory's condition for RLOO < REINFORCE holds on every problem
        for k in ks:
            assert rloo_variance(theta, s, k) < reinforce_variance(theta, s, k)
    result = compare_estimators(
        [reinforce, rloo, group_mean_baseline], batched=True, group_sizes=ks, max_examples=0,
        problems=far,
    )
    for k in ks:
        assert result.ranking(k) == ["group_mean_baseline", "rloo", "reinforce"]
    centred = compare_estimators(
        [reinforce, rloo, group_mean_baseline], batched=True, group_sizes=ks, max_examples=0,
        problems=_centred(),
    )
    for k in ks:
        order = centred.ranking(k)
        assert order.index("reinforce") < order.index("rloo")
        assert order.index("group_mean_baseline") < order.index("rloo")
        gm, lo = centred.rows[2].variance_ratio[k], centred.rows[1].variance_ratio[k]
        assert gm is not None and lo is not None
        assert gm / lo == pytest.approx(((k - 1) / k) ** 2, rel=1e-10)
        # rescaled by c_k = (k-1)/k the group mean is RLOO exactly
        assert centred.rows[2].rescaled_variance_ratio[k] == pytest.approx(lo, rel=1e-10)
        assert centred.rows[1].rescaled_variance_ratio[k] == pytest.approx(lo, rel=1e-12)


def test_compare_reports_verdict_constant_and_mse_of_a_scaled_estimator() -> None:
    result = compare_estimators(
        [reinforce, group_mean_baseline], batched=True, group_sizes=(2, 4), max_examples=0,
        names=["plain", "gm"],
    )
    plain, gm = result.rows
    assert (plain.verdict, gm.verdict) == ("unbiased", "scaled")
    assert gm.scale is not None and gm.scale[2] == pytest.approx(0.5)
    assert plain.variance_ratio == {2: pytest.approx(1.0), 4: pytest.approx(1.0)}
    for k in (2, 4):
        v, e = gm.variance_ratio[k], gm.mse_ratio[k]
        assert v is not None and e is not None and e > v  # the bias adds to the MSE
    text = str(result)
    assert "geometric mean" in text and "8 seeded problems" in text and "var/c_k^2" in text
    assert "gm" in text and "scaled" in text and "0.5" in text
    data = json.loads(result.to_json())
    assert data["rows"][1]["verdict"] == "scaled" and data["aggregate"] == "geometric mean"
    assert result.complete


def test_problems_with_zero_reference_variance_are_left_out_and_counted() -> None:
    # two answers at theta = 0 with s = (1, -1): beta* = 0, REINFORCE has zero variance
    problems = [([0.0, 0.0], [1.0, -1.0]), ([0.3, 0.0], [0.0, 1.0])]
    result = compare_estimators([rloo], batched=True, group_sizes=(2,), max_examples=0,
                                problems=problems)
    assert (result.problems_used[2], result.problems_skipped[2]) == (1, 1)
    assert "1 left out: zero REINFORCE variance" in str(result)


def test_geometric_mean_of_ratios() -> None:
    ref = [Moments(2.0, 0.0, 3.0, 1.0), Moments(8.0, 0.0, 9.0, 1.0)]
    assert geometric_mean_ratio([1.0, 16.0], ref).value == pytest.approx(1.0)
    assert geometric_mean_ratio([0.0, 16.0], ref).value == 0.0
    assert geometric_mean_ratio([3.0, 9.0], ref, of="mse").value == pytest.approx(
        np.sqrt(1.5 * 9 / 8)
    )


def test_an_estimator_that_errs_gets_no_variance_and_the_comparison_says_so() -> None:
    def broken(logits, samples, rewards):  # type: ignore[no-untyped-def]
        raise RuntimeError("nope")

    result = compare_estimators([reinforce, broken], batched=True, group_sizes=(2,),
                                max_examples=0)
    row = result.rows[1]
    assert row.verdict == "error" and row.variance_ratio == {2: None}
    assert "no variance" in row.note and "no variance" in str(result)
    assert not result.complete
    assert result.ranking(2) == ["reinforce"]


def test_profile_round_trips_through_json() -> None:
    from properties.onestep.compare import profile_estimator

    profile = profile_estimator(rloo, batched=True, group_sizes=(2,), max_examples=0,
                                num_problems=2)
    again = EstimatorProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again == profile
    with pytest.raises(ValueError):
        EstimatorProfile.from_dict({"verdict": "fine"})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"group_sizes": ()},
        {"group_sizes": (0,)},
        {"group_sizes": (2.5,)},
        {"group_sizes": (True, 2)},
        {"group_sizes": "23"},
        {"num_problems": 0},
        {"problem_seed": -1},
        {"problems": [([0.0], [1.0])]},
        {"problems": []},
        {"batched": [True, False, True]},
        {"names": ["a"]},
    ],
)
def test_bad_arguments_raise_invalid_argument(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        compare_estimators([reinforce, rloo], max_examples=0, **kwargs)  # type: ignore[arg-type]


def test_not_callables_raise_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        compare_estimators([])
    with pytest.raises(InvalidArgument):
        compare_estimators([reinforce, 3])  # type: ignore[list-item]


def test_comparison_type_is_exported() -> None:
    result = compare_estimators([reinforce], batched=True, group_sizes=(2,), max_examples=0,
                                num_problems=1)
    assert isinstance(result, Comparison)


def _fails_off_the_battery(logits, samples, rewards):  # type: ignore[no-untyped-def]
    """REINFORCE that raises on five answers with rewards strictly inside (0, 1): never in
    the battery, always in the fourth comparison problem."""
    if logits.size == 5 and np.all((rewards > 0) & (rewards < 1)):
        raise RuntimeError("not here")
    return reinforce(logits, samples, rewards)


def _noisy_off_the_battery(logits, samples, rewards):  # type: ignore[no-untyped-def]
    """REINFORCE plus fresh noise on five answers with rewards inside (0, 1)."""
    g = reinforce(logits, samples, rewards)
    if logits.size == 5 and np.all((rewards > 0) & (rewards < 1)):
        g = g + np.random.default_rng().normal(size=g.shape) * 1e-3
    return g


@pytest.mark.parametrize("fn", [_fails_off_the_battery, _noisy_off_the_battery])
def test_an_estimator_that_misbehaves_only_on_the_comparison_problems_gets_no_variance(fn) -> None:  # type: ignore[no-untyped-def]
    result = compare_estimators([fn], batched=True, group_sizes=(2,), max_examples=0)
    row = result.rows[0]
    assert row.verdict == "unbiased"  # the battery never sees it
    assert row.variance_ratio == {2: None} and row.mse_ratio == {2: None}
    assert "no variance: on a comparison problem (logits [" in row.note
    assert ("(raised): raised RuntimeError: not here" in row.note) or (
        "(nondeterministic): returned" in row.note
    )
    assert not result.complete


def test_a_hostile_iterable_of_estimators_is_invalid_argument() -> None:
    class Hostile:
        def __iter__(self):  # type: ignore[no-untyped-def]
            raise SystemExit("gotcha")

    with pytest.raises(InvalidArgument):
        compare_estimators(Hostile())  # type: ignore[arg-type]
