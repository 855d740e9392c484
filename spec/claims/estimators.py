r"""The estimator family: what REINFORCE's update is on average, with and without baselines.

Claims (statements and checked SymPy derivations):

* ``reinforce-unbiased``: :math:`E_{x\sim p}[s(x)\nabla\log p(x)] = \nabla J`, for every
  ``n`` and every differentiable parameterisation;
* ``baseline-invariant``: a baseline that does not depend on the sample it multiplies
  leaves that expectation unchanged;
* ``self-inclusive-baseline-scales``: the group mean *including* the sample scales it by
  :math:`(k-1)/k`;
* ``reinforce-raises-above-average``: for softmax, the expected update raises exactly the
  logits of the answers scoring above :math:`J(\theta)`.

Their numeric properties are in :mod:`properties.claims.estimators`; the estimators
themselves in :mod:`impl.estimators` and the exact expectation in :mod:`impl.exact`.

>>> prove_self_inclusive_baseline_scales().ok
True
>>> prove_self_inclusive_baseline_scales(factor=1).ok
False
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import sympy
from sympy import (
    Derivative,
    Eq,
    Equivalent,
    IndexedBase,
    KroneckerDelta,
    Sum,
    Symbol,
    diff,
    exp,
    log,
    sign,
)

from spec._core import (
    Expr,
    Proof,
    Step,
    chain,
    check_cases,
    check_factorisation,
    check_identity,
    check_predicate,
    make_proof,
)
from spec.claims._claim import Claim
from spec.symbols import (
    N_COORD,
    PARTITION,
    general_p,
    i,
    j,
    k,
    m,
    n,
    s,
    softmax_J,
    softmax_p,
    theta,
    vartheta,
)

# --------------------------------------------------------------------------- lemmas

ScoreCandidate = Callable[[Expr, Expr], Expr]
"""``score(i, m)``: a candidate for the softmax score d log p_i / d theta_m."""


def _default_score(x: Expr, coord: Expr) -> Expr:
    return KroneckerDelta(x, coord) - softmax_p(coord)


def _score_function_steps() -> list[Step]:
    """E_p[s grad log p] = grad J for any parameterisation p(i, vartheta), general n.

    Steps 2 and 3 are one chain: E[s score] = sum_i s_i dp_i = dJ.
    """
    pi = general_p(i)
    return [
        check_identity(
            "score-function identity, one answer: p_i * d/dvartheta log p_i = d/dvartheta p_i",
            pi * Derivative(log(pi), vartheta),
            diff(pi, vartheta),
            doit=True,
        ),
        *chain(
            [
                check_identity(
                    "summed over the n answers (linearity of the finite sum)",
                    Sum(pi * s[i] * Derivative(log(pi), vartheta), (i, 0, n - 1)),
                    Sum(s[i] * diff(pi, vartheta), (i, 0, n - 1)),
                    doit=True,
                ),
                check_identity(
                    "a finite sum is differentiated termwise: sum_i s_i dp_i/dvartheta = dJ/dvartheta",
                    Sum(s[i] * diff(pi, vartheta), (i, 0, n - 1)),
                    Derivative(Sum(pi * s[i], (i, 0, n - 1)), vartheta),
                    doit=True,
                ),
            ]
        ),
    ]


E_SCORE = Sum(general_p(i) * diff(log(general_p(i)), vartheta), (i, 0, n - 1))
r""":math:`E[\partial\log p(x)] = \sum_i p_i\,\partial\log p_i`, the mean score."""


def _mean_score_zero_steps() -> list[Step]:
    """E_p[grad log p] = 0 for any normalised parameterisation, general n.

    Steps 1 and 2 are one chain, ending at 0: the value later steps use for E[score].
    """
    pi = general_p(i)
    total = Sum(pi, (i, 0, n - 1))
    return [
        *chain(
            [
                check_identity(
                    "E[d/dvartheta log p(x)] = sum_i dp_i/dvartheta = d/dvartheta sum_i p_i",
                    E_SCORE,
                    Derivative(total, vartheta),
                    doit=True,
                ),
                check_identity(
                    "normalisation: sum_i p(i, vartheta) = 1 for every vartheta (the hypothesis), so its "
                    "derivative is 0",
                    Derivative(total, vartheta),
                    0,
                    assume={total: 1},
                ),
            ]
        ),
        check_identity(
            "the same for softmax, coordinate m: sum_i p_i (delta_im - p_m) = 0",
            Sum(softmax_p(i) * (KroneckerDelta(i, m) - softmax_p(m)), (i, 0, N_COORD - 1)),
            0,
            doit=True,
            assume=PARTITION,
        ),
    ]


def _softmax_gradient_steps(score: ScoreCandidate) -> list[Step]:
    """The softmax score and dJ/dtheta_m = p_m (s_m - J), general n."""
    grad = softmax_p(m) * (s[m] - softmax_J())
    return [
        check_identity(
            "softmax score: d/dtheta_m log p_i = delta_im - p_m (every n, every coordinate m < n)",
            Derivative(log(softmax_p(i)), theta[m]),
            score(i, m),
            doit=True,
        ),
        check_identity(
            "E[s(x) score_m(x)] = sum_i p_i s_i (delta_im - p_m) = p_m (s_m - J)",
            Sum(softmax_p(i) * s[i] * score(i, m), (i, 0, N_COORD - 1)),
            grad,
            doit=True,
        ),
        check_identity(
            "direct differentiation of J agrees: dJ/dtheta_m = p_m (s_m - J)",
            Derivative(softmax_J(), theta[m]),
            grad,
            doit=True,
            assume=PARTITION,
        ),
    ]


# --------------------------------------------------------------------------- the proofs


def prove_reinforce_unbiased(*, score: ScoreCandidate = _default_score) -> Proof:
    r"""``reinforce-unbiased``: :math:`E_{x\sim p}[s(x)\nabla\log p(x)] = \nabla J`.

    For every ``n`` and any differentiable parameterisation :math:`p(i, \vartheta)`:
    :math:`\sum_i p_i s_i \partial\log p_i = \sum_i s_i \partial p_i = \partial \sum_i p_i s_i`;
    then, for tabular softmax, the score is :math:`\delta_{im} - p_m` and
    :math:`\partial J/\partial\theta_m = p_m (s_m - J)`.  ``score(i, m)`` is the candidate
    softmax score (default :math:`\delta_{im} - p_m`).

    >>> prove_reinforce_unbiased().scope
    'general'
    """
    return make_proof(
        "reinforce-unbiased",
        "E_{x~p}[s(x) grad log p(x)] = grad J, every n, every differentiable p",
        lambda: _score_function_steps() + _softmax_gradient_steps(score),
    )


BaselineCandidate = Callable[[Expr, Expr, Expr], Expr]
"""``baseline(s_x, j, k)``: a candidate baseline for sample ``j`` of a group of ``k``.

``s_x`` is an ``IndexedBase``: ``s_x[1], ..., s_x[k]`` are the group's rewards.  ``j`` and
``k`` are symbols (general step) or integers (bounded cross-check).
"""


_ci = Symbol("c_i", integer=True, positive=True)


def leave_one_out(s_x: Expr, jj: Expr, kk: Expr) -> Expr:
    r"""The leave-one-out mean :math:`\frac{1}{k-1}\sum_{i\ne j} s(x_i)`."""
    return (Sum(s_x[_ci], (_ci, 1, kk)) - s_x[jj]) / (kk - 1)


def group_mean(s_x: Expr, jj: Expr, kk: Expr) -> Expr:
    r"""The self-inclusive group mean :math:`\frac1k\sum_{i} s(x_i)` (depends on :math:`x_j`)."""
    return Sum(s_x[_ci], (_ci, 1, kk)) / kk


def prove_baseline_invariant(
    *, baseline: BaselineCandidate = leave_one_out, max_k: int = 6
) -> Proof:
    r"""``baseline-invariant``: a baseline :math:`b_j` free of :math:`x_j` leaves :math:`E[g] = \nabla J`.

    General argument (every ``n``, any parameterisation, any baseline that is a function of
    the other samples): :math:`E[b_j \nabla\log p(x_j)] = E[b_j]\,E[\nabla\log p(x_j)]` by
    independence, and :math:`E[\nabla\log p] = \partial\sum_i p_i = 0`.  That the
    candidate ``baseline`` (default: the leave-one-out mean) does not depend on
    :math:`s(x_j)` is checked for symbolic ``k`` and ``j`` (``k = j + r``, so
    :math:`1 \le j \le k`), and cross-checked for every ``2 <= k <= max_k`` and every ``j``.

    >>> prove_baseline_invariant(max_k=3).ok
    True
    """
    c = Symbol("c", integer=True)  # a configuration of the other k-1 samples
    big_r = Symbol("R", integer=True, positive=True)  # how many configurations
    prob = IndexedBase("P", nonnegative=True)  # their probabilities
    bval = IndexedBase("b", real=True)  # the baseline on each configuration
    pi = general_p(i)
    score = diff(log(pi), vartheta)

    def build() -> list[Step]:
        steps = _score_function_steps()[1:]
        grad_j = steps[-1].rhs  # dJ/dvartheta, where the score-function chain ended
        steps.append(
            check_factorisation(
                "independence of x_j and the other samples: E[b(x_-j) score(x_j)] = "
                "E[b] E[score] (sum over the configurations c of x_-j and the answers i of x_j)",
                prob[c] * bval[c] * pi * score,
                prob[c] * bval[c],
                pi * score,
                c,
                i,
            )
        )
        mean_zero = _mean_score_zero_steps()
        steps += mean_zero
        e_b = Sum(prob[c] * bval[c], (c, 0, big_r - 1))
        steps.append(
            check_identity(
                "E[(s(x_j) - b) score(x_j)] = E[s score] - E[b] E[score] (independence) "
                "= grad J, with E[score] = 0 from step "
                f"{len(steps) - len(mean_zero) + 2}",
                Sum(pi * s[i] * score, (i, 0, n - 1)) - e_b * E_SCORE,
                grad_j,
                doit=True,
                given={E_SCORE: mean_zero[1].rhs},
            )
        )

        sx = IndexedBase("s_x", real=True)
        jsym = Symbol("j", integer=True, positive=True)
        rsym = Symbol("r", integer=True, positive=True)  # k = j + r >= 2 and j <= k
        steps.append(
            check_identity(
                "the candidate baseline does not depend on s(x_j): d b_j / d s(x_j) = 0 "
                "(symbolic k >= 2, every 1 <= j <= k)",
                Derivative(baseline(sx, jsym, jsym + rsym), sx[jsym]),
                0,
                doit=True,
            )
        )

        def cases() -> list[tuple[str, Expr, Expr]]:
            out: list[tuple[str, Expr, Expr]] = []
            for kk in range(2, max_k + 1):
                for jj in range(1, kk + 1):
                    expr = sympy.sympify(baseline(sx, jj, kk)).doit()
                    out.append((f"k={kk}, j={jj}", diff(expr, sx[jj]), 0))
            return out

        steps.append(
            check_cases(
                "cross-check for concrete k: d b_j / d s(x_j) = 0",
                cases,
                bound=f"2 <= k <= {max_k}, every j",
                role="cross-check",
            )
        )
        return steps

    return make_proof(
        "baseline-invariant",
        "a baseline independent of x_j (constant, or a function of the other samples) "
        "leaves E[g] = grad J",
        build,
        notes=("the constant baseline is the case R = 1 of the general step",),
    )


def prove_self_inclusive_baseline_scales(
    *, factor: Expr = (k - 1) / k, max_n: int = 3, max_k: int = 3
) -> Proof:
    r"""``self-inclusive-baseline-scales``: :math:`E[g] = \frac{k-1}{k}\nabla J` (general ``k``, ``n``).

    By linearity, :math:`s_j - \frac1k\sum_i s_i = \frac{k-1}{k}s_j - \frac1k\sum_{i\ne j}s_i`;
    for :math:`i \ne j`, :math:`E[s_i \nabla\log p(x_j)] = E[s_i]E[\nabla\log p(x_j)] = 0`.
    ``factor`` is the candidate scale.  A direct enumeration over all :math:`n^k` groups for
    ``n <= max_n``, ``k <= max_k`` cross-checks the general derivation (bounded).
    """
    factor = sympy.sympify(factor)
    sv = IndexedBase("s_x", real=True)  # s(x_1), ..., s(x_k)
    jj = Symbol("j", integer=True, positive=True)
    others = Sum(sv[i], (i, 1, k)) - sv[jj]
    g_sym, mu, e_score, o_sym = sympy.symbols("G mu E_score O")
    a_idx, b_idx = sympy.symbols("a b", integer=True)
    pa, pb = general_p(a_idx), general_p(b_idx)

    def enumeration() -> Step:
        def cases() -> list[tuple[str, Expr, Expr]]:
            out: list[tuple[str, Expr, Expr]] = []
            for size in range(2, max_n + 1):
                ps = list(sympy.symbols(f"p0:{size - 1}", positive=True))
                ps.append(1 - sum(ps, sympy.Integer(0)))
                ss = sympy.symbols(f"s0:{size}", real=True)
                jval = sum((ps[t] * ss[t] for t in range(size)), sympy.Integer(0))
                for kk in range(2, max_k + 1):
                    expect = [sympy.Integer(0)] * size
                    for group in itertools.product(range(size), repeat=kk):
                        weight = sympy.Mul(*[ps[g] for g in group])
                        mean = sum((ss[g] for g in group), sympy.Integer(0)) / kk
                        for x in group:
                            for coord in range(size):
                                sc = (1 if x == coord else 0) - ps[coord]
                                expect[coord] += weight * (ss[x] - mean) * sc / kk
                    for coord in range(size):
                        want = factor.subs(k, kk) * ps[coord] * (ss[coord] - jval)
                        out.append((f"n={size}, k={kk}, coordinate {coord}", expect[coord], want))
            return out

        return check_cases(
            "direct enumeration (softmax score e_x - p) of all n^k groups: "
            "E[g] = factor * p_m (s_m - J)",
            cases,
            bound=f"n <= {max_n}, k <= {max_k}",
            role="cross-check",
        )

    def build() -> list[Step]:
        steps = [
            check_identity(
                "s_j - (1/k) sum_i s_i = ((k-1)/k) s_j - (1/k) sum_{i != j} s_i (symbolic k)",
                sv[jj] - Sum(sv[i], (i, 1, k)) / k,
                (k - 1) / k * sv[jj] - others / k,
            ),
            check_factorisation(
                "i != j are independent: E[s(x_i) score(x_j)] = E[s(x_i)] E[score(x_j)]",
                pa * s[a_idx] * pb * diff(log(pb), vartheta),
                pa * s[a_idx],
                pb * diff(log(pb), vartheta),
                a_idx,
                b_idx,
            ),
            check_identity(
                "k - 1 such terms: E[sum_{i != j} s_i score_j] = (k - 1) mu E[score]",
                Sum(mu * e_score, (i, 1, k - 1)),
                (k - 1) * mu * e_score,
                doit=True,
            ),
        ]
        others_term = steps[-1].rhs  # E[sum_{i != j} s_i score_j], derived in step 3
        mean_zero = _mean_score_zero_steps()
        steps += mean_zero
        steps += _score_function_steps()[1:]
        # the group mean is s_j - (1/k) (s_j + O), O = sum_{i != j} s_i; take E[. score_j]
        # term by term: s_j -> G = E[s score] = grad J, O -> step 3's (k - 1) mu E[score]
        centred = sv[jj] - (sv[jj] + o_sym) / k
        expected = centred.subs({sv[jj]: g_sym, o_sym: others_term})
        steps.append(
            check_identity(
                "E[(s_j - (1/k)(s_j + O)) score_j] with E[s_j score_j] = G = grad J and step 3's "
                "E[O score_j], E[score] = 0 (step 5): the candidate factor times grad J",
                expected,
                factor * g_sym,
                given={e_score: mean_zero[1].rhs},
            )
        )
        steps.append(enumeration())
        return steps

    return make_proof(
        "self-inclusive-baseline-scales",
        "baseline = group mean including x_j: E[g] = ((k-1)/k) grad J",
        build,
        notes=("averaging the k identically distributed terms (1/k) sum_j keeps the factor",),
    )


def prove_reinforce_raises_above_average(*, gradient: Expr | None = None) -> Proof:
    r"""``reinforce-raises-above-average``: :math:`E[g]_m = p_m(s_m - J)` has the sign of :math:`s_m - J`.

    For softmax, general ``n``: the expected REINFORCE update of logit ``m`` is
    :math:`\partial J/\partial\theta_m = p_m (s_m - J)` (candidate ``gradient``) and
    :math:`p_m > 0`, so it is positive exactly when :math:`s_m > J`, zero when
    :math:`s_m = J`, negative when :math:`s_m < J`.
    """
    cand = softmax_p(m) * (s[m] - softmax_J()) if gradient is None else sympy.sympify(gradient)
    zsym = Symbol("Z", positive=True)

    def p_positive() -> tuple[bool, str]:
        term = exp(theta[j]).is_positive
        ratio = (exp(theta[m]) / zsym).is_positive
        return (
            term is True and ratio is True,
            f"exp(theta_j) > 0: {term}; e^theta_m / Z > 0: {ratio}",
        )

    def build() -> list[Step]:
        steps = chain(
            [
                check_identity(
                    "E[g]_m = sum_i p_i s_i (delta_im - p_m) is the candidate expected update",
                    Sum(
                        softmax_p(i) * s[i] * (KroneckerDelta(i, m) - softmax_p(m)),
                        (i, 0, N_COORD - 1),
                    ),
                    cand,
                    doit=True,
                ),
                check_identity(
                    "the candidate is dJ/dtheta_m (direct differentiation of J = sum_i p_i s_i)",
                    cand,
                    Derivative(softmax_J(), theta[m]),
                    doit=True,
                    assume=PARTITION,
                ),
                check_identity(
                    "dJ/dtheta_m = p_m (s_m - J) (direct differentiation)",
                    Derivative(softmax_J(), theta[m]),
                    softmax_p(m) * (s[m] - softmax_J()),
                    doit=True,
                    assume=PARTITION,
                ),
            ]
        )
        steps.append(
            check_predicate(
                "p_m > 0: each e^theta_j > 0 and Z = sum of n >= 1 of them > 0",
                "e^theta_m / Z > 0",
                p_positive,
            )
        )
        steps.append(
            check_identity(
                "sign(E[g]_m) = sign(p_m (s_m - J)) = sign(s_m - J), p_m > 0 (step 4)",
                sign(steps[2].rhs, evaluate=False),
                sign(s[m] - softmax_J()),
            )
        )
        return steps

    return make_proof(
        "reinforce-raises-above-average",
        "for softmax, E[g]_m > 0 iff s_m > J (and < 0 iff s_m < J)",
        build,
    )


# --------------------------------------------------------------------------- the claims

_J = Sum(general_p(i) * s[i], (i, 0, n - 1))
_score = Derivative(log(general_p(i)), vartheta)
_c = Symbol("c", integer=True)
_P = IndexedBase("P", nonnegative=True)
_b = IndexedBase("b", real=True)
_R = Symbol("R", integer=True, positive=True)
_Eg = Symbol("E[g_groupmean]")

_ANY_SCORES = "any real scores; ties play no role"

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "reinforce-unbiased",
        "E_{x~p}[s(x) grad log p(x)] = grad J, for every n and every differentiable "
        "parameterisation",
        "proved",
        Eq(Sum(general_p(i) * s[i] * _score, (i, 0, n - 1)), Derivative(_J, vartheta)),
        ("finite answer set of n >= 1 answers", "p(i, vartheta) > 0 differentiable"),
        prover=prove_reinforce_unbiased,
        parameterisation="any differentiable p(i, vartheta) > 0 (the proof); tabular softmax, "
        "linear-softmax and squared parameterisations in the properties",
        ties=_ANY_SCORES,
        meaning="RL's sampled update, M2(x) grad log p(x), points on average along the exact "
        "gradient of the expected score: REINFORCE optimises J, nothing else.",
    ),
    Claim(
        "baseline-invariant",
        "a baseline independent of x_j (a constant, or any function of the other samples, "
        "e.g. the leave-one-out mean) leaves the expectation equal to grad J",
        "proved",
        Eq(
            Sum(_P[_c] * general_p(i) * (s[i] - _b[_c]) * _score, (i, 0, n - 1), (_c, 0, _R - 1)),
            Derivative(_J, vartheta),
        ),
        (
            "x_j independent of the other samples",
            "sum_i p(i, vartheta) = 1 for every vartheta",
            "sum_c P_c = 1 over the R configurations of the other samples",
        ),
        prover=prove_baseline_invariant,
        parameterisation="any differentiable p(i, vartheta) (the proof); tabular softmax in "
        "the properties; groups of k >= 1 iid samples",
        ties=_ANY_SCORES,
        meaning="variance-reduction baselines (constant, leave-one-out, any function of the "
        "other samples) change the noise of the update, not where it points.",
    ),
    Claim(
        "self-inclusive-baseline-scales",
        "baseline = group mean including x_j: expectation = ((k-1)/k) grad J",
        "proved",
        Eq(_Eg, (k - 1) / k * Derivative(_J, vartheta)),
        ("k >= 1 iid samples from p", "sum_i p(i, vartheta) = 1"),
        prover=prove_self_inclusive_baseline_scales,
        parameterisation="any differentiable p(i, vartheta) (the proof); tabular softmax in "
        "the enumeration cross-check and the properties",
        ties=_ANY_SCORES,
        meaning="a group mean that includes the sample itself shrinks the update by (k-1)/k "
        "(to zero for k = 1): same direction, smaller step.",
    ),
    Claim(
        "reinforce-raises-above-average",
        "for softmax, the expected update raises exactly the logits of answers scoring above "
        "J(theta)",
        "proved",
        Equivalent(Derivative(softmax_J(), theta[m]) > 0, s[m] > softmax_J()),
        ("tabular softmax, 0 <= m < n",),
        prover=prove_reinforce_raises_above_average,
        parameterisation="tabular softmax p = softmax(theta)",
        ties="any real scores; an answer scoring exactly J(theta) keeps its logit (expected "
        "update 0)",
        meaning="RL moves probability from the answers the overseer rates below the current "
        "average to those it rates above it.",
    ),
)
"""The claims of the estimator family, in ledger order."""


__all__ = [
    "CLAIMS",
    "BaselineCandidate",
    "ScoreCandidate",
    "group_mean",
    "leave_one_out",
    "prove_baseline_invariant",
    "prove_reinforce_raises_above_average",
    "prove_reinforce_unbiased",
    "prove_self_inclusive_baseline_scales",
]
