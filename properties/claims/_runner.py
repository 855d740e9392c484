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

import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from impl import Problem, amplification_trajectory, sampled_amplification_trajectory
from impl.types import FloatArray
from properties import stats
from properties._search import SearchOutcome, Violation, search
from properties.claims import estimators, imitation, indicator, rl
from properties.claims import search as search_family
from properties.claims._common import (
    FAMILY_ALPHA,
    ClaimResult,
    ClaimSpec,
    Property,
    RunConfig,
    StatOutcome,
    StatProperty,
    Verdict,
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


# ---------------------------------------------------------------------------------------------
# the registry


_LOCAL_CHECKS: tuple[ClaimSpec, ...] = (
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

_FAMILIES: tuple[ModuleType, ...] = (estimators, rl, imitation, indicator, search_family)

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
