r"""One executable property per claim of CLAIMS.md, and the code that decides its verdict.

Each claim has *properties*: a Hypothesis strategy of cases and a check that
returns a :class:`~properties._search.Violation` (or ``None``).  Exact checks come
first (the exact expectation engine, closed forms, rational arithmetic); dynamics
claims are checked on trajectories; sampled versions are checked with calibrated
tests (:mod:`properties.stats`).

Verdicts (never hard-coded; each comes from what the checks found):

* expected ``proved``: ``proved`` iff the SymPy derivation in :mod:`spec` checks
  **and** no numeric property finds a violation; otherwise ``failed``.
* expected ``holds``: ``holds`` iff no property finds a violation; otherwise ``failed``.
* expected ``refuted``: ``refuted`` iff Hypothesis finds a counterexample to the
  claimed equivalence, shrinks it, and :mod:`spec` confirms it exactly in
  rationals; otherwise ``holds`` (which differs from the expectation).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from impl import (
    Problem,
    amplification_trajectory,
    best_of_k_distribution,
    best_of_k_sample,
    imitation_trajectory,
    rl_trajectory,
    sampled_amplification_trajectory,
    smooth_step_size,
)
from impl.types import FloatArray
from properties import stats
from properties._search import SearchOutcome, Violation, search
from properties.claims import estimators, imitation, indicator, rl
from properties.claims._common import (
    FAMILY_ALPHA,
    MONOTONE_SLACK,
    ClaimResult,
    ClaimSpec,
    Property,
    RunConfig,
    StatOutcome,
    StatProperty,
    Verdict,
    _rational,
)
from properties.strategies import search_problems

# ---------------------------------------------------------------------------------------------
# small helpers


# ---------------------------------------------------------------------------------------------
# estimators used by the baseline claims (vectorised; baselines computed from the *other* samples)


# ---------------------------------------------------------------------------------------------
# parameterisations for "any differentiable parameterisation" (complex-step gradients of J)


# ---------------------------------------------------------------------------------------------
# problem strategies for the claims


# ---------------------------------------------------------------------------------------------
# checks


def _check_limited_search(case: tuple[FloatArray, FloatArray, int]) -> Violation | None:
    s, q, k = case
    b = best_of_k_distribution(s, q, k)
    import spec

    exact = spec.best_of_k_enumerated(
        [_rational(x, snap=False) for x in s], [_rational(x, snap=True) for x in q], int(k), normalise=True
    )
    err = max(abs(float(bx) - float(ex)) for bx, ex in zip(b, exact, strict=True))
    if err > 1e-12:
        return Violation(
            f"B_k(q) closed form differs from exact enumeration by {err:.3g}",
            {"scores": s, "q": q, "k": k, "closed form": b, "enumerated": [str(x) for x in exact]},
        )
    a_star = list(Problem(s).maximisers)
    qa = float(q[a_star].sum())
    mass = float(b[a_star].sum())
    if abs(mass - (1 - (1 - qa) ** k)) > 1e-12 or (qa < 1 and not mass < 1):
        return Violation(
            "B_k(q)(A*) != 1 - (1 - q(A*))^k < 1", {"scores": s, "q": q, "k": k, "mass": mass}
        )
    tr = imitation_trajectory(np.log(q), b, step_size=2.0, steps=SEARCH_IMITATION_STEPS)
    kl = np.sum(b * (np.log(b) - np.log(tr.probs)), axis=1)
    if np.any(np.diff(kl) > MONOTONE_SLACK * (1 + kl[0])):
        return Violation(
            "KL(B_k(q) || p_t) increased along imitation", {"scores": s, "q": q, "k": k}
        )
    tv = 0.5 * float(np.abs(tr.probs[-1] - b).sum())
    mass_err = abs(float(tr.probs[-1, a_star].sum()) - mass)
    if (
        tv > SEARCH_IMITATION_TV
        or mass_err > SEARCH_IMITATION_MASS_TOL
        or kl[-1] > 0.1 * kl[0] + 1e-12
    ):
        return Violation(
            f"imitation of the search ended at TV {tv:.3g} from B_k(q)",
            {"scores": s, "q": q, "k": k, "p_T": tr.probs[-1], "B_k(q)": b},
        )
    return None


SEARCH_IMITATION_STEPS = 1000
SEARCH_IMITATION_TV = 1e-2
SEARCH_IMITATION_MASS_TOL = 1e-3
"""Imitation ascent (eta = 2, within 2/L for the 1/2-smooth log-likelihood) is checked as a
Lyapunov descent: KL(B_k(q) || p_t) never increases, falls at least 10-fold, and after 1000
steps p_T is within TV 1e-2 of B_k(q) with its A* mass within 1e-3 (so p_T(A*) < 1 whenever
the search leaves more than 1e-3 off A*).  Exact convergence is
asymptotic: a coordinate of target mass b approaches it in about 1/(eta b) steps, so a
fixed horizon cannot demand more than this of answers of tiny mass."""


def _counterexample_rl_vs_limited_imitation(
    case: tuple[FloatArray, FloatArray, int],
) -> Violation | None:
    s, q, k = case
    a_star = list(Problem(s).maximisers)
    qa = float(q[a_star].sum())
    if not 0 < qa < 1:
        return None
    b = best_of_k_distribution(s, q, k)
    imitation_mass = float(b[a_star].sum())
    tr = rl_trajectory(np.log(q), s, step_size=smooth_step_size(s), steps=3000)
    rl_mass = float(tr.mass(a_star)[-1])
    if rl_mass - imitation_mass < 0.01:
        return None
    return Violation(
        "RL on the score puts its mass on A*; imitation of best-of-k search keeps 1-(1-q(A*))^k",
        {
            "scores": s,
            "proposal q": q,
            "k": k,
            "RL p_T(A*) after 3000 exact steps": rl_mass,
            "imitation limit B_k(q)": b,
            "imitation p(A*)": imitation_mass,
        },
    )


def _check_unbounded_limit(case: tuple[FloatArray, FloatArray, int]) -> Violation | None:
    s, q, _ = case
    pb = Problem(s)
    a_star = list(pb.maximisers)
    qa = float(q[a_star].sum())
    masses = [float(best_of_k_distribution(s, q, k)[a_star].sum()) for k in range(1, 9)]
    if np.any(np.diff(masses) < -MONOTONE_SLACK):
        return Violation("B_k(q)(A*) decreased in k", {"scores": s, "q": q, "masses": masses})
    eps = 1e-9
    k_big = max(1, math.ceil(math.log(eps) / math.log1p(-qa))) if qa < 1 else 1
    winner = min(i for i in a_star if q[i] > 0)  # tie rule: lowest index among proposed maximisers
    b = best_of_k_distribution(s, q, k_big)
    expected_winner_mass = 1 - (1 - float(q[winner])) ** k_big
    if float(b[a_star].sum()) < 1 - 2 * eps or abs(float(b[winner]) - expected_winner_mass) > 1e-9:
        return Violation(
            f"B_k(q) is not concentrated on A* at k = {k_big}",
            {"scores": s, "q": q, "k": k_big, "B_k(q)": b},
        )
    exhaustive = best_of_k_distribution(s, np.full(s.size, 1.0 / s.size), 4000)
    if float(exhaustive[pb.best]) < 1 - 1e-9 * s.size and len(a_star) == 1:
        return Violation("best-of-k with k large does not return X*", {"scores": s})
    return None


def _check_amplification(case: tuple[FloatArray, FloatArray, int]) -> Violation | None:
    s, p0, k = case
    k = max(k, 2)
    a_star = list(Problem(s).maximisers)
    traj = amplification_trajectory(p0, s, k, steps=40)
    a = traj[:, a_star].sum(axis=1)
    rec = a[0]
    for t in range(1, a.size):
        rec = 1 - (1 - rec) ** k
        if abs(a[t] - rec) > 1e-9:
            return Violation(
                f"a_t does not follow a -> 1-(1-a)^k at t = {t}",
                {"scores": s, "p0": p0, "k": k, "a_t": a[t], "recursion": rec},
            )
    moving = a[:-1] < 1 - 1e-15
    if np.any((np.diff(a) <= 0) & moving):
        return Violation("a_t not strictly increasing", {"scores": s, "p0": p0, "k": k, "a": a})
    if a[-1] < 1 - 1e-9:
        return Violation("a_t did not reach 1", {"scores": s, "p0": p0, "k": k, "a_T": a[-1]})
    return None


# ---------------------------------------------------------------------------------------------
# statistical properties (sampling): stated false-alarm rate and power


AMPLIFICATION_DEMOS = 2000
AMPLIFICATION_STEPS = 6
SAMPLED_AMPLIFICATION_CASES: tuple[tuple[tuple[float, ...], tuple[float, ...], int], ...] = (
    ((0.0, 1.0), (0.8, 0.2), 2),
    ((0.3, 0.9, 0.1, 0.9), (0.4, 0.05, 0.5, 0.05), 3),
    ((1.0, 0.0, 0.5), (0.1, 0.6, 0.3), 2),
)


def _sampled_amplification(seed: int) -> StatOutcome:
    """Each step's count of A* among the demos is Binomial(demos, 1-(1-a_t)^k) given a_t."""
    tests = len(SAMPLED_AMPLIFICATION_CASES) * AMPLIFICATION_STEPS
    alpha = stats.bonferroni(FAMILY_ALPHA, tests)
    rejections = 0
    ce: dict[str, Any] | None = None
    finals = []
    for i, (s_t, p_t, k) in enumerate(SAMPLED_AMPLIFICATION_CASES):
        s, p0 = np.array(s_t), np.array(p_t)
        a_star = list(Problem(s).maximisers)
        traj = sampled_amplification_trajectory(
            p0,
            s,
            k,
            steps=AMPLIFICATION_STEPS,
            demos=AMPLIFICATION_DEMOS,
            rng=np.random.default_rng([seed, i]),
        )
        a = traj[:, a_star].sum(axis=1)
        for t in range(AMPLIFICATION_STEPS):
            expected = 1 - (1 - a[t]) ** k
            count = round(a[t + 1] * AMPLIFICATION_DEMOS)
            test = stats.binomial_test(count, AMPLIFICATION_DEMOS, expected, alpha=alpha)
            if test.rejected:
                rejections += 1
                ce = {
                    "scores": s,
                    "p0": p0,
                    "k": k,
                    "step": t,
                    "a_t": a[t],
                    "count": count,
                    "expected rate": expected,
                    "p-value": test.pvalue,
                }
        finals.append(round(float(a[-1]), 4))
    power = stats.power_binomial_two_sided(AMPLIFICATION_DEMOS, 0.5, 0.56, alpha=alpha)
    return StatOutcome(
        tests,
        rejections,
        FAMILY_ALPHA,
        f"{power:.3f} per step against a shift of the A* rate from 0.5 to 0.56",
        f"final a_T of the sampled runs: {finals}",
        ce,
    )


SEARCH_DEMOS = 2000
SEARCH_CASES: tuple[tuple[tuple[float, ...], tuple[float, ...], int], ...] = (
    ((0.0, 1.0), (0.5, 0.5), 1),
    ((0.2, 0.9, 0.5, 0.9), (0.4, 0.1, 0.3, 0.2), 3),
    ((3.0, -1.0, 0.0, 2.0, 1.0), (0.1, 0.3, 0.2, 0.2, 0.2), 2),
)


def _sampled_limited_search(seed: int) -> StatOutcome:
    """Imitation of sampled search demos (tabular MLE = empirical frequencies) fits B_k(q), not X*.

    Each answer's demo count is exactly Binomial(demos, B_k(q)(x)); one exact two-sided
    binomial test per answer, Bonferroni over all answers of all cases.  (A Pearson
    chi-square fit was measured at 8 family alarms in 5000 seeds, above its stated 1e-3:
    its asymptotic tail is too light this far out, so the exact per-cell tests replace it.)
    """
    cells = sum(len(s_t) for s_t, _, _ in SEARCH_CASES)
    alpha = stats.bonferroni(FAMILY_ALPHA, cells)
    rejections, parts = 0, []
    ce: dict[str, Any] | None = None
    for i, (s_t, q_t, k) in enumerate(SEARCH_CASES):
        s, q = np.array(s_t), np.array(q_t)
        demos = best_of_k_sample(s, q, k, SEARCH_DEMOS, np.random.default_rng([seed, i]))
        counts = np.bincount(demos, minlength=s.size)
        b = best_of_k_distribution(s, q, k)
        a_star = list(Problem(s).maximisers)
        parts.append(
            f"fit p(A*)={counts[a_star].sum() / SEARCH_DEMOS:.3f} vs B_k(A*)={b[a_star].sum():.3f}"
        )
        for x in range(s.size):
            test = stats.binomial_test(int(counts[x]), SEARCH_DEMOS, float(b[x]), alpha=alpha)
            if test.rejected:
                rejections += 1
                ce = {
                    "scores": s,
                    "q": q,
                    "k": k,
                    "answer": x,
                    "counts": counts,
                    "B_k(q)": b,
                    "p-value": test.pvalue,
                }
    power = stats.power_binomial_two_sided(SEARCH_DEMOS, 0.5, 0.56, alpha=alpha)
    return StatOutcome(
        cells,
        rejections,
        FAMILY_ALPHA,
        f"{power:.3f} per answer against a shift of its mass from 0.5 to 0.56",
        "; ".join(parts),
        ce,
    )


# ---------------------------------------------------------------------------------------------
# the registry


def _confirm_limited_search(case: Any) -> tuple[bool, dict[str, Any]]:
    """Confirm scores, proposal and ``k`` exactly in rationals with :mod:`spec`."""
    import spec

    s, q, k = case
    lim = spec.confirm_limited_search_counterexample(
        [_rational(x, snap=False) for x in s],
        [_rational(x, snap=True) for x in q],
        int(k),
        normalise=True,
    )
    confirmed = lim.refutes and lim.consistent
    return confirmed, {"kind": "sympy rationals", "refutes": confirmed, "report": lim.report()}


_LOCAL_CHECKS: tuple[ClaimSpec, ...] = (
    ClaimSpec(
        "limited-search-imitation",
        "proved",
        (
            Property(
                "B_k(q) closed form = exact enumeration; B_k(A*) = 1-(1-q(A*))^k < 1; imitation -> B_k(q)",
                search_problems(),
                _check_limited_search,
            ),
        ),
        (
            StatProperty(
                "sampled search demos fit B_k(q) (exact binomial per answer)",
                _sampled_limited_search,
            ),
        ),
    ),
    ClaimSpec(
        "rl-equals-imitation-under-limited-search",
        "refuted",
        counterexample=Property(
            "scores, proposal and k where RL and imitation of best-of-k differ",
            search_problems(),
            _counterexample_rl_vs_limited_imitation,
            0.5,
        ),
        confirm=_confirm_limited_search,
    ),
    ClaimSpec(
        "unbounded-search-limit",
        "proved",
        (
            Property(
                "B_k(q)(A*) increases to 1 in k; large k returns the tie-rule winner",
                search_problems(),
                _check_unbounded_limit,
            ),
        ),
    ),
    ClaimSpec(
        "iterated-amplification-converges",
        "proved",
        (
            Property(
                "p_{t+1} = B_k(p_t): a_t follows 1-(1-a)^k, strictly increasing to 1",
                search_problems(),
                _check_amplification,
            ),
        ),
        (
            StatProperty(
                "sampled amplification follows the recursion (binomial test per step)",
                _sampled_amplification,
            ),
        ),
    ),
)

_FAMILIES: tuple[ModuleType, ...] = (estimators, rl, imitation, indicator)

CLAIM_CHECKS: tuple[ClaimSpec, ...] = (
    *(c for module in _FAMILIES for c in module.CHECKS),
    *_LOCAL_CHECKS,
)

CLAIM_IDS: tuple[str, ...] = tuple(c.id for c in CLAIM_CHECKS)


def _spec_proof(claim_id: str) -> tuple[bool, dict[str, Any], Any]:
    """Run the SymPy proof of a claim (spec/), returning (ok, evidence, spec claim)."""
    import spec

    claim = spec.get_claim(claim_id)
    proof = claim.prove()
    info = {
        "kind": "sympy derivation",
        "ok": proof.ok,
        "scope": proof.scope,
        "bounds": list(proof.bounds),
        "steps": len(proof.steps),
        "seconds": round(proof.seconds, 3),
    }
    if not proof.ok:
        info["failed_steps"] = [s.description for s in proof.failed]
    return bool(proof.ok), info, claim


def _statement(claim_id: str) -> str:
    import spec

    return str(spec.get_claim(claim_id).text)


def run_claim(claim_id: str, config: RunConfig | None = None) -> ClaimResult:
    """Check one claim and return its ledger row.

    >>> run_claim("self-inclusive-baseline-scales", RunConfig(max_examples=5)).verdict
    'proved'
    """
    config = config or RunConfig()
    spec_claim = {c.id: c for c in CLAIM_CHECKS}.get(claim_id)
    if spec_claim is None:
        raise KeyError(f"unknown claim {claim_id!r}; known: {', '.join(CLAIM_IDS)}")
    start = time.perf_counter()
    evidence: dict[str, Any] = {}
    counterexample: dict[str, Any] | None = None
    failed = False

    if spec_claim.expected == "proved":
        ok, info, _ = _spec_proof(claim_id)
        evidence["proof"] = info
        failed |= not ok

    outcomes: list[SearchOutcome[Any]] = []
    for prop in spec_claim.properties:
        n = max(1, round(config.max_examples * prop.examples_factor))
        out = search(prop.name, prop.strategy, prop.check, max_examples=n, seed=config.seed)
        outcomes.append(out)
        if out.found and counterexample is None:
            assert out.violation is not None
            counterexample = {
                "property": prop.name,
                "violation": out.violation.message,
                **out.violation.details,
            }
            failed = True
    evidence["properties"] = [
        {
            "name": o.name,
            "examples": o.examples,
            "seconds": round(o.seconds, 3),
            "violated": o.found,
        }
        for o in outcomes
    ]
    stat_rows = []
    for sp in spec_claim.statistical:
        t0 = time.perf_counter()
        so = sp.run(config.seed)
        stat_rows.append(
            {
                "name": sp.name,
                "tests": so.tests,
                "rejections": so.rejections,
                "family_alpha": so.alpha,
                "power": so.power,
                "detail": so.detail,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        if so.rejections and counterexample is None:
            counterexample = {
                "property": sp.name,
                **(so.counterexample or {}),
                "note": (
                    f"a calibrated sampling test: when the claim is true it rejects in at most "
                    f"{so.alpha:g} of seeds, so rerun with other --seed values before treating "
                    f"this as a real failure (this run: --seed {config.seed})"
                ),
            }
            failed = True
    if stat_rows:
        evidence["statistical"] = stat_rows

    verdict: Verdict
    if spec_claim.counterexample is not None:
        prop = spec_claim.counterexample
        out = search(
            prop.name,
            prop.strategy,
            prop.check,
            max_examples=max(1, round(config.max_examples * prop.examples_factor)),
            seed=config.seed,
        )
        evidence["counterexample_search"] = {
            "name": prop.name,
            "examples": out.examples,
            "seconds": round(out.seconds, 3),
        }
        if out.found and out.violation is not None:
            assert spec_claim.confirm is not None  # ClaimSpec requires it with a counterexample
            confirmed, exact = spec_claim.confirm(out.case)
            evidence["exact_confirmation"] = exact
            counterexample = {"search": out.violation.message, **out.violation.details}
            verdict = "refuted" if confirmed and not failed else "failed"
        else:
            verdict = "failed" if failed else "holds"
    else:
        verdict = "failed" if failed else spec_claim.expected
    evidence["seconds"] = round(time.perf_counter() - start, 3)
    return ClaimResult(
        claim_id, _statement(claim_id), spec_claim.expected, verdict, evidence, counterexample
    )


def run_claims(
    ids: Sequence[str] | None = None,
    config: RunConfig | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[ClaimResult]:
    """Check the claims ``ids`` (default: all, in CLAIMS.md order)."""
    chosen = list(ids) if ids else list(CLAIM_IDS)
    results = []
    for i, cid in enumerate(chosen):
        if progress is not None:
            progress(i, len(chosen), cid)
        results.append(run_claim(cid, config))
    if progress is not None:
        progress(len(chosen), len(chosen), "")
    return results


__all__ = [
    "CLAIM_CHECKS",
    "CLAIM_IDS",
    "ClaimResult",
    "ClaimSpec",
    "RunConfig",
    "run_claim",
    "run_claims",
]
