r"""The derivations of the "proved" claims, one function per claim, every step checked by SymPy.

Each ``prove_*`` function rebuilds its derivation from scratch on every call (nothing is
cached) and takes keyword-only *candidate* arguments: the piece of the statement being
proved (the softmax score, the baseline factor, the amplification map, ...).  The
defaults are the statements of ``CLAIMS.md``; passing a wrong candidate must make the
proof report ``ok=False``, which is how the tests show the proofs can fail.

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
    IndexedBase,
    KroneckerDelta,
    Piecewise,
    Product,
    Sum,
    Symbol,
    diff,
    exp,
    log,
    oo,
    sign,
)

from spec._core import (
    Expr,
    Proof,
    Step,
    check_cases,
    check_factorisation,
    check_identity,
    check_limit,
    check_predicate,
    check_sign,
    check_solve,
    make_proof,
)
from spec.claims._lemmas import B as _b
from spec.claims._lemmas import astar_mass as _default_astar_mass
from spec.claims._lemmas import best_of_k_steps as _best_of_k_steps
from spec.claims._lemmas import imitation_optimum_steps as _imitation_optimum_steps
from spec.symbols import (
    N_COORD,
    PARTITION,
    general_p,
    i,
    j,
    k,
    m,
    n,
    q,
    s,
    softmax_J,
    softmax_p,
    theta,
    vartheta,
)

# --------------------------------------------------------------------------- shared steps

_a = Symbol("a", positive=True)
"""a_t = p_t(A*)."""

_k2 = Symbol("kappa", integer=True, nonnegative=True)
"""k = kappa + 2 encodes k >= 2."""

ScoreCandidate = Callable[[Expr, Expr], Expr]
"""``score(i, m)``: a candidate for the softmax score d log p_i / d theta_m."""


def _default_score(x: Expr, coord: Expr) -> Expr:
    return KroneckerDelta(x, coord) - softmax_p(coord)


def _score_function_steps() -> list[Step]:
    """E_p[s grad log p] = grad J for any parameterisation p(i, vartheta), general n."""
    pi = general_p(i)
    return [
        check_identity(
            "score-function identity, one answer: p_i * d/dvartheta log p_i = d/dvartheta p_i",
            pi * diff(log(pi), vartheta),
            diff(pi, vartheta),
        ),
        check_identity(
            "summed over the n answers (linearity of the finite sum)",
            Sum(pi * s[i] * diff(log(pi), vartheta), (i, 0, n - 1)),
            Sum(s[i] * diff(pi, vartheta), (i, 0, n - 1)),
        ),
        check_identity(
            "a finite sum is differentiated termwise: sum_i s_i dp_i/dvartheta = dJ/dvartheta",
            Sum(s[i] * diff(pi, vartheta), (i, 0, n - 1)),
            Derivative(Sum(pi * s[i], (i, 0, n - 1)), vartheta),
            doit=True,
        ),
    ]


def _mean_score_zero_steps() -> list[Step]:
    """E_p[grad log p] = 0 for any normalised parameterisation, general n."""
    pi = general_p(i)
    total = Sum(pi, (i, 0, n - 1))
    return [
        check_identity(
            "E[d/dvartheta log p(x)] = sum_i dp_i/dvartheta = d/dvartheta sum_i p_i",
            Sum(pi * diff(log(pi), vartheta), (i, 0, n - 1)),
            Derivative(total, vartheta),
            doit=True,
        ),
        check_identity(
            "normalisation: sum_i p(i, vartheta) = 1 for every vartheta, so its derivative is 0",
            diff(total.subs(total, 1), vartheta),
            0,
            kind="assumption",
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


def _best_of_k_enumeration(max_n: int, max_k: int) -> Step:
    """Direct enumeration: the best-of-k output law equals F_j^k - F_{j-1}^k (bounded)."""

    def cases() -> list[tuple[str, Expr, Expr]]:
        out: list[tuple[str, Expr, Expr]] = []
        for size in range(2, max_n + 1):
            qs = sympy.symbols(f"q0:{size}", nonnegative=True)
            cdf = [sum(qs[:t], sympy.Integer(0)) for t in range(size + 1)]
            for kk in range(1, max_k + 1):
                law = [sympy.Integer(0)] * size
                # answers listed in search order (rank 0 = worst): the winner is the max rank,
                # which is how the tie rule (lower index wins at equal score) is applied
                for group in itertools.product(range(size), repeat=kk):
                    weight = sympy.Mul(*[qs[g] for g in group])
                    law[max(group)] += weight
                for rank in range(size):
                    formula = cdf[rank + 1] ** kk - cdf[rank] ** kk
                    out.append((f"n={size}, k={kk}, rank={rank}", law[rank], formula))
        return out

    return check_cases(
        "direct enumeration of all n^k candidate groups: P(winner = x_(j)) = F_j^k - F_{j-1}^k",
        cases,
        bound=f"n <= {max_n}, k <= {max_k}",
        role="cross-check",
    )


# --------------------------------------------------------------------------- the claims


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
        steps += _mean_score_zero_steps()
        e_b = Sum(prob[c] * bval[c], (c, 0, big_r - 1))
        e_score = Symbol("E_score")
        grad = Symbol("gradJ")
        steps.append(
            check_identity(
                "E[(s(x_j) - b) score(x_j)] = grad J - E[b] * E[score] = grad J (E[score] = 0)",
                (grad - e_b * e_score).subs(e_score, 0),
                grad,
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
    g_sym, mu, e_score = sympy.symbols("G mu E_score")
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
        steps += _mean_score_zero_steps()
        steps += _score_function_steps()[1:]
        steps.append(
            check_identity(
                "E[(s_j - mean) score_j] = ((k-1)/k) G - (1/k)(k-1) mu E[score], E[score] = 0, "
                "G = E[s score] = grad J: the candidate factor times grad J",
                ((k - 1) / k * g_sym - (k - 1) * mu * e_score / k).subs(e_score, 0),
                factor * g_sym,
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
    pm = Symbol("p_m", positive=True)
    dev = Symbol("d", real=True)

    def p_positive() -> tuple[bool, str]:
        term = exp(theta[j]).is_positive
        ratio = (exp(theta[m]) / zsym).is_positive
        return term is True and ratio is True, f"exp(theta_j) > 0: {term}; e^theta_m / Z > 0: {ratio}"

    def build() -> list[Step]:
        return [
            check_identity(
                "E[g]_m = sum_i p_i s_i (delta_im - p_m) is the candidate expected update",
                Sum(softmax_p(i) * s[i] * (KroneckerDelta(i, m) - softmax_p(m)), (i, 0, N_COORD - 1)),
                cand,
                doit=True,
            ),
            check_identity(
                "the candidate equals p_m (s_m - J)",
                cand,
                softmax_p(m) * (s[m] - softmax_J()),
            ),
            check_predicate(
                "p_m > 0: each e^theta_j > 0 and Z = sum of n >= 1 of them > 0",
                "e^theta_m / Z > 0",
                p_positive,
            ),
            check_identity(
                "sign(p_m (s_m - J)) = sign(s_m - J) for p_m > 0",
                sign(pm * dev),
                sign(dev),
            ),
        ]

    return make_proof(
        "reinforce-raises-above-average",
        "for softmax, E[g]_m > 0 iff s_m > J (and < 0 iff s_m < J)",
        build,
    )


def prove_rl_optimum_is_xstar(*, sup: Expr | None = None) -> Proof:
    r"""``rl-optimum-is-xstar``: :math:`\sup_\theta J = \max s =: M`, maximisers supported on :math:`A^*`.

    General ``n``: :math:`J - M = \sum_i p_i (s_i - M)`, every term :math:`\le 0`; a term with
    :math:`s_i < M` vanishes iff :math:`p_i = 0`; softmax has every :math:`p_i > 0` so
    :math:`J < M` unless :math:`A^* = D`; and :math:`\theta = t 1_{A^*}` gives
    :math:`J \to M` (candidate ``sup``) as :math:`t \to \infty`.
    """
    big_m = Symbol("M", real=True)
    target = big_m if sup is None else sympy.sympify(sup)
    pn = IndexedBase("p", nonnegative=True)
    p0 = Symbol("p_i", nonnegative=True)
    ppos = Symbol("p_i", positive=True)
    dle = Symbol("d_i", nonpositive=True)
    dlt = Symbol("d_i", negative=True)
    t = Symbol("t", real=True)
    a_cnt = Symbol("a", positive=True)  # |A*|
    rest = Symbol("b", nonnegative=True)  # n - |A*|
    s_rest = Symbol("S", real=True)  # sum of the scores outside A*
    total = Sum(pn[i], (i, 0, n - 1))

    def build() -> list[Step]:
        return [
            check_identity(
                "J - M = sum_i p_i (s_i - M) when sum_i p_i = 1",
                Sum(pn[i] * s[i], (i, 0, n - 1)) - big_m,
                Sum(pn[i] * (s[i] - big_m), (i, 0, n - 1)),
                assume={total: 1},
            ),
            check_sign(
                "each term p_i (s_i - M) <= 0 (p_i >= 0, s_i <= M), so J <= M",
                p0 * dle,
                "nonpositive",
            ),
            check_solve(
                "for s_i < M the term p_i (s_i - M) is 0 only if p_i = 0: "
                "J = M iff p is supported on A*",
                p0 * dlt,
                p0,
                [0],
            ),
            check_identity(
                "conversely any p supported on A* has J = sum_{A*} p_i M = M",
                (Sum(pn[i] * big_m, (i, 0, n - 1))).doit(),
                big_m * total,
            ),
            check_limit(
                "theta = t 1_{A*}: J(t) = (a e^t M + S)/(a e^t + b) -> candidate sup as t -> oo",
                (a_cnt * exp(t) * big_m + s_rest) / (a_cnt * exp(t) + rest),
                t,
                oo,
                target,
            ),
            check_sign(
                "softmax has p_i > 0, so a term with s_i < M is < 0 and J < M at every finite "
                "theta unless every answer is a maximiser",
                ppos * dlt,
                "negative",
            ),
        ]

    return make_proof(
        "rl-optimum-is-xstar",
        "sup_theta J = max s; maximisers on the simplex = distributions on A*; "
        "not attained at finite theta unless all scores are equal",
        build,
    )


def prove_imitation_optimum_is_demonstrator(
    *, optimum: Callable[[Expr], Expr] = lambda qm: qm
) -> Proof:
    r"""``imitation-optimum-is-demonstrator``: :math:`\arg\max_p \sum_i q_i \log p_i = q`.

    General ``n``: the Lagrangian's stationary point is :math:`p = q` (candidate
    ``optimum(q_m)``), and Gibbs' inequality (:math:`\log x \le x - 1`) shows it is the
    global maximum.  For softmax the gradient is :math:`q - p`.
    """

    def build() -> list[Step]:
        steps = _imitation_optimum_steps(optimum)
        steps.append(
            check_identity(
                "softmax: d/dtheta_m sum_i q_i log p_i = q_m - p_m sum_i q_i = q_m - p_m",
                Derivative(Sum(q[i] * log(softmax_p(i)), (i, 0, N_COORD - 1)), theta[m]),
                q[m] - softmax_p(m) * Sum(q[i], (i, 0, N_COORD - 1)),
                doit=True,
                assume=PARTITION,
            )
        )
        return steps

    return make_proof(
        "imitation-optimum-is-demonstrator",
        "argmax over the simplex of sum_i q_i log p_i is p = q",
        build,
    )


def prove_indicator_reward_is_imitation(*, multiple: Expr | None = None) -> Proof:
    r"""``indicator-reward-is-imitation``: :math:`E[1[x=x^*]\nabla\log p(x)] = p(x^*)\nabla\log p(x^*)`.

    Any parameterisation, general ``n`` (:math:`x^* = m`):
    :math:`\sum_i p_i \delta_{i x^*}\partial\log p_i = p_{x^*}\partial\log p_{x^*} = \partial p_{x^*}`,
    a positive multiple (candidate ``multiple``, default :math:`p(x^*)`) of the imitation
    gradient; for softmax, :math:`p_{x^*}(e_{x^*} - p)`.
    """
    px = general_p(m)
    cand = px if multiple is None else sympy.sympify(multiple)
    pos = Symbol("P", positive=True)
    dv = Symbol("D", real=True)
    gfun = sympy.Function("g_c")

    def build() -> list[Step]:
        lhs = Sum(general_p(i) * KroneckerDelta(i, m) * diff(log(general_p(i)), vartheta),
                  (i, 0, N_COORD - 1))
        return [
            check_identity(
                "E[1[x = x*] d log p(x)] = p(x*) d log p(x*) (the Kronecker delta picks x* = m)",
                lhs,
                cand * diff(log(px), vartheta),
                doit=True,
            ),
            check_identity(
                "= d p(x*)/dvartheta",
                lhs,
                diff(px, vartheta),
                doit=True,
            ),
            check_identity(
                "softmax: sum_i p_i delta_{i x*} g_c(i) = p_{x*} g_c(x*) for any score vector g_c, "
                "in particular g_c(i) = delta_ic - p_c: p_{x*} times the imitation gradient "
                "(e_{x*} - p)_c",
                Sum(softmax_p(i) * KroneckerDelta(i, m) * gfun(i), (i, 0, N_COORD - 1)),
                cand.subs(px, softmax_p(m)) * gfun(m),
                doit=True,
            ),
            check_sign(
                "the multiple is positive (softmax: p(x*) = e^theta_x* / Z > 0)",
                cand.subs(px, pos),
                "positive",
            ),
            check_solve(
                "same fixed points: P * D = 0 with P > 0 only when D = 0",
                pos * dv,
                dv,
                [0],
            ),
        ]

    return make_proof(
        "indicator-reward-is-imitation",
        "E[1[x = X*] grad log p(x)] = grad p(X*) = p(X*) grad log p(X*)",
        build,
    )


def prove_limited_search_imitation(
    *,
    astar_mass: Callable[[Expr, Expr], Expr] = _default_astar_mass,
    max_n: int = 4,
    max_k: int = 3,
) -> Proof:
    r"""``limited-search-imitation``: imitating best-of-k reaches :math:`B_k(q)`, whose
    :math:`A^*` mass is :math:`1-(1-q(A^*))^k < 1` for :math:`0 < q(A^*) < 1`.

    General ``n`` and ``k``: :math:`P(\text{best} \preceq x_{(j)}) = F_j^k`, the masses
    :math:`F_j^k - F_{j-1}^k` telescope to 1 and over the top :math:`|A^*|` ranks to
    :math:`1 - (1-q(A^*))^k` (candidate ``astar_mass(Q, k)``); the imitation optimum is the
    demonstrator (Lagrangian) so it is :math:`B_k(q)`.  A direct enumeration of every
    candidate group for ``n <= max_n``, ``k <= max_k`` cross-checks the rank formula.
    Convergence of the imitation *dynamics* is the "holds" claim
    ``imitation-converges-to-xstar``'s business; here the optimum is proved.
    """

    def build() -> list[Step]:
        steps = _best_of_k_steps(astar_mass)
        steps.append(
            check_sign(
                "for 0 < q(A*) < 1 (b = 1 - q(A*) > 0): candidate A* mass - 1 = -b^k < 0",
                astar_mass(1 - _b, k) - 1,
                "negative",
            )
        )
        steps += _imitation_optimum_steps(lambda qm: qm)[:4]
        steps.append(_best_of_k_enumeration(max_n, max_k))
        return steps

    return make_proof(
        "limited-search-imitation",
        "imitating best-of-k search with proposal q converges to B_k(q), "
        "with A* mass 1-(1-q(A*))^k < 1 when 0 < q(A*) < 1",
        build,
    )


def prove_unbounded_search_limit(*, limit_value: Expr = 1, max_n: int = 6) -> Proof:
    r"""``unbounded-search-limit``: :math:`B_k(q)(A^*) \to 1` as :math:`k\to\infty` if :math:`q(A^*)>0`.

    General: :math:`1 - (1-Q)^k` with :math:`1-Q = 1/(1+c)`, :math:`c > 0`, tends to 1
    (candidate ``limit_value``), and to 1 at once when :math:`Q = 1`; it is non-decreasing in
    ``k``.  Exhaustive search puts mass 1 on :math:`X^*` (the top rank under the tie rule):
    :math:`G_j = \prod_{x=1}^{n} 1[x \le j]` is 0 for :math:`j < n` (the top factor vanishes)
    and 1 for :math:`j = n`, general ``n``; cross-checked by expanding the products for
    every ``n <= max_n``.
    """
    limit_value = sympy.sympify(limit_value)
    xs = Symbol("x", integer=True, positive=True)
    ys = Symbol("y", integer=True, nonnegative=True)
    below = n - 1 - Symbol("r", integer=True, nonnegative=True)

    def indicator(x: Expr, jv: Expr) -> Expr:
        return Piecewise((1, x <= jv), (0, True))

    c = Symbol("c", positive=True)
    kr = Symbol("k", positive=True)

    def exhaustive_cases() -> list[tuple[str, Expr, Expr]]:
        out: list[tuple[str, Expr, Expr]] = []
        jsym = Symbol("jj", integer=True)
        for size in range(1, max_n + 1):
            # G_j = P(best is among the j lowest ranks) = prod_{x in D} 1[rank(x) <= j]
            def cdf(jv: int, size: int = size) -> Expr:
                ind = [Piecewise((1, x <= jsym), (0, True)) for x in range(1, size + 1)]
                return sympy.Mul(*ind).subs(jsym, jv)

            for jv in range(1, size + 1):
                out.append(
                    (f"n={size}, rank {jv}", cdf(jv) - cdf(jv - 1), 1 if jv == size else 0)
                )
        return out

    def build() -> list[Step]:
        steps = _best_of_k_steps(_default_astar_mass)[4:]
        steps += [
            check_limit(
                "0 < q(A*) < 1, 1 - q(A*) = 1/(1+c): 1 - (1 - q(A*))^k -> candidate limit",
                1 - (1 / (1 + c)) ** kr,
                kr,
                oo,
                limit_value,
            ),
            check_identity(
                "q(A*) = 1: 1 - 0^k = 1 already for every k >= 1 (equals the candidate limit)",
                _default_astar_mass(sympy.Integer(1), k),
                limit_value,
            ),
            check_identity(
                "B_{k+1}(A*) - B_k(A*) = b^k (1 - b) with b = 1 - q(A*)",
                _default_astar_mass(1 - _b, k + 1) - _default_astar_mass(1 - _b, k),
                _b**k * (1 - _b),
            ),
            check_limit(
                "unique X*: the mass outside X*, (1 - q(X*))^k, tends to 0 so B_k(q) -> e_{X*}",
                (1 / (1 + c)) ** kr,
                kr,
                oo,
                1 - limit_value,
            ),
            check_identity(
                "exhaustive search, rank j < n (j = n-1-r): G_j = prod_{x<n} 1[x <= j] * 1[n <= j] "
                "= 0, since the factor of the top rank X* vanishes",
                Product(indicator(xs, below), (xs, 1, n - 1)) * indicator(n, below),
                0,
                doit=True,
            ),
            check_identity(
                "rank n: G_n = prod_{y=0}^{n-1} 1[n - y <= n] = 1 (every answer is ranked <= n)",
                Product(indicator(n - ys, n), (ys, 0, n - 1)),
                1,
                doit=True,
            ),
            check_identity(
                "so exhaustive search puts mass G_n - G_{n-1} = 1 on X* (the lowest-index "
                "maximiser, top of the search order) and G_j - G_{j-1} = 0 elsewhere",
                Product(indicator(n - ys, n), (ys, 0, n - 1))
                - Product(indicator(xs, n - 1), (xs, 1, n - 1)) * indicator(n, n - 1),
                1,
                doit=True,
            ),
            check_cases(
                "cross-check: G_j = prod_x 1[rank x <= j], mass G_j - G_{j-1} = 1 "
                "exactly at the top rank",
                exhaustive_cases,
                bound=f"n <= {max_n}",
                role="cross-check",
            ),
        ]
        return steps

    return make_proof(
        "unbounded-search-limit",
        "B_k(q)(A*) -> 1 as k -> oo when q(A*) > 0; exhaustive search gives X* exactly",
        build,
    )


def prove_iterated_amplification_converges(
    *, amplify: Callable[[Expr, Expr], Expr] = _default_astar_mass, max_k: int = 8
) -> Proof:
    r"""``iterated-amplification-converges``: :math:`a_{t+1} = f(a_t) = 1-(1-a_t)^k \uparrow 1`.

    General ``k >= 2`` (written :math:`k = \kappa + 2`): distillation reaches
    :math:`p_{t+1} = B_k(p_t)` (imitation optimum), so :math:`a_{t+1} = f(a_t)` (candidate
    ``amplify(a, k)``); :math:`f' > 0` on (0,1); :math:`f(a) - a = b(1 - b^{k-1}) > 0` with
    :math:`b = 1 - a \in (0,1)`; :math:`f(a) < 1`; :math:`f(1) = 1`; and
    :math:`1 - a_t = b_0^{k^t} \to 0`.  The real fixed points of ``f`` on ``[0, 1]`` are
    listed for ``k <= max_k`` as a bounded cross-check.
    """
    kk = _k2 + 2
    a = _a
    f = amplify(a, kk)
    fb = f.subs(a, 1 - _b)
    t = Symbol("t", integer=True, nonnegative=True)
    tr = Symbol("t", positive=True)
    b0 = Symbol("b_0", positive=True)
    c = Symbol("c", positive=True)
    big_l = Symbol("L", positive=True)

    def fixed_points() -> tuple[bool, str]:
        x = Symbol("x", real=True)
        for kv in range(2, max_k + 1):
            poly = sympy.Poly(sympy.expand(amplify(x, sympy.Integer(kv)) - x), x)
            if poly.is_zero:
                return False, f"k={kv}: f(a) = a identically"
            roots = sorted({rt for rt in sympy.real_roots(poly) if 0 <= rt <= 1})
            if roots != [0, 1]:
                return False, f"k={kv}: real fixed points in [0, 1] are {roots}, expected [0, 1]"
        return True, f"k = 2..{max_k}: real fixed points in [0, 1] are exactly 0 and 1"

    def log_k_positive() -> tuple[bool, str]:
        value = log(kk).is_positive
        return value is True, f"log(kappa + 2) > 0: {value}"

    def build() -> list[Step]:
        steps = _imitation_optimum_steps(lambda qm: qm)[:4]
        steps += _best_of_k_steps(_default_astar_mass)[4:]
        steps += [
            check_identity(
                "a_{t+1} = B_k(p_t)(A*) = 1 - (1 - a_t)^k is the candidate map",
                _default_astar_mass(a, kk),
                f,
            ),
            check_sign(
                "f is strictly increasing on (0, 1): f'(a) > 0 (b = 1 - a > 0, k >= 2)",
                diff(f, a).subs(a, 1 - _b),
                "positive",
            ),
            check_identity(
                "h(b) = (f(a) - a)/b at a = 1 - b satisfies h(1) = 0",
                ((fb - (1 - _b)) / _b).subs(_b, 1),
                0,
            ),
            check_sign(
                "h'(b) < 0 for b > 0, so h(b) > h(1) = 0 for 0 < b < 1: f(a) > a on (0, 1)",
                diff(sympy.simplify((fb - (1 - _b)) / _b), _b),
                "negative",
            ),
            check_sign(
                "f maps (0, 1) into (0, 1): 1 - f(a) > 0 (and f(a) > a > 0)",
                1 - fb,
                "positive",
            ),
            check_identity("1 is a fixed point: f(1) = 1", f.subs(a, 1), 1),
            check_identity(
                "recursion: 1 - a_t = b_0^(k^t) solves 1 - a_{t+1} = (1 - a_t)^k",
                1 - amplify(1 - b0 ** (kk**t), kk),
                b0 ** (kk ** (t + 1)),
                kind="recursion",
            ),
            check_predicate(
                "k >= 2: L = log k > 0, so k^t = e^(L t) -> oo",
                "log(k) > 0",
                log_k_positive,
            ),
            check_limit(
                "0 < a_0 < 1, b_0 = 1/(1+c): 1 - a_t = b_0^(e^(L t)) -> 0, so a_t increases to 1",
                (1 / (1 + c)) ** exp(big_l * tr),
                tr,
                oo,
                0,
            ),
            check_predicate(
                "bounded cross-check: the only real fixed points of f on [0, 1] are 0 and 1",
                "real_roots(f(a) - a) in [0, 1] = [0, 1]",
                fixed_points,
                kind="solve",
                scope="bounded",
                bound=f"2 <= k <= {max_k}",
                role="cross-check",
            ),
        ]
        return steps

    return make_proof(
        "iterated-amplification-converges",
        "p_{t+1} = B_k(p_t), a_{t+1} = 1-(1-a_t)^k strictly increases to 1 (k >= 2, 0 < a_0 < 1)",
        build,
    )


__all__ = [
    "BaselineCandidate",
    "ScoreCandidate",
    "group_mean",
    "leave_one_out",
    "prove_baseline_invariant",
    "prove_imitation_optimum_is_demonstrator",
    "prove_indicator_reward_is_imitation",
    "prove_iterated_amplification_converges",
    "prove_limited_search_imitation",
    "prove_reinforce_raises_above_average",
    "prove_reinforce_unbiased",
    "prove_rl_optimum_is_xstar",
    "prove_self_inclusive_baseline_scales",
    "prove_unbounded_search_limit",
]
