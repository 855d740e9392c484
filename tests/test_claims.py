"""The claims ledger: every claim gets its expected verdict, and planted errors are caught.

These tests call the very functions ``ida-verify claims`` runs, with the active
Hypothesis profile's ``max_examples`` (``fast`` by default, ``thorough`` with
``IDA_VERIFY_PROFILE=thorough``), so pytest and the command cannot disagree.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import settings

from impl import group_mean_baseline, policy_gradient, reinforce, rl_trajectory, smooth_step_size
from impl.types import Gradient, Logits, Rewards, Samples
from properties import claims as C
from properties.claims import _runner as C_RUNNER
from properties.claims import indicator, rl
from properties.claims import search as search_family
from properties.claims._common import StatOutcome, _exact_mismatch
from properties.claims._violations import Violation, search
from properties.cli import main
from properties.strategies import PolicyProblem, policy_problems


def _config() -> C.RunConfig:
    return C.RunConfig(max_examples=settings().max_examples, seed=0)


def test_registry_covers_claims_md_in_order() -> None:
    import spec

    assert list(C.CLAIM_IDS) == list(spec.CLAIMS)
    assert len(C.CLAIM_IDS) == 14
    for c in C.CLAIM_CHECKS:
        assert c.expected == spec.get_claim(c.id).expected


def test_each_claim_is_checked_in_the_module_of_its_family() -> None:
    """One hop: the family of a claim id names its spec module and its properties module."""
    from spec.claims import FAMILIES

    checked_in = {c.id: m.__name__ for m in C_RUNNER.FAMILIES for c in m.CHECKS}
    assert checked_in == {cid: f"properties.claims.{family}" for cid, family in FAMILIES.items()}
    assert list(checked_in) == list(FAMILIES)


def test_every_claim_names_the_impl_functions_it_exercises() -> None:
    for c in C.CLAIM_CHECKS:
        assert c.implementation, c.id
        for fn in c.implementation:
            assert fn.__module__.startswith("impl."), (c.id, fn)


def test_a_counterexample_search_needs_its_exact_confirmation() -> None:
    search_spec = next(c for c in C.CLAIM_CHECKS if c.counterexample is not None)
    with pytest.raises(ValueError, match="come together"):
        C.ClaimSpec(search_spec.id, "refuted", counterexample=search_spec.counterexample)
    with pytest.raises(ValueError, match="come together"):
        C.ClaimSpec(search_spec.id, "refuted", confirm=search_spec.confirm)


@pytest.mark.parametrize("claim_id", C.CLAIM_IDS)
def test_claim_gets_its_expected_verdict(claim_id: str) -> None:
    result = C.run_claim(claim_id, _config())
    assert result.verdict == result.expected, json.dumps(result.to_dict(), indent=2)
    if result.expected == "refuted":
        assert result.counterexample is not None
        assert result.evidence["exact_confirmation"]["refutes"] is True
    else:
        assert result.counterexample is None
        assert all(p["examples"] > 0 for p in result.evidence["properties"])


def test_refuted_counterexamples_are_shrunk_to_two_answers() -> None:
    for cid in (
        "indicator-reward-stochastic-demonstrator",
        "rl-equals-imitation-under-limited-search",
    ):
        ce = C.run_claim(cid, _config()).counterexample
        assert ce is not None
        first_vector = next(v for k, v in ce.items() if k in ("demonstrator q", "scores"))
        assert len(first_vector) == 2, ce


# --- tests that must fail: planted errors in a claim are found and shrunk --------------------


def test_dropping_the_k_minus_1_over_k_factor_is_caught() -> None:
    def wrong(pb: PolicyProblem) -> Violation | None:
        return _exact_mismatch(
            group_mean_baseline, pb, policy_gradient(pb.logits, pb.scores), "no factor"
        )

    out = search("planted", policy_problems(max_n=5, max_k=4), wrong, max_examples=200, seed=0)
    assert out.found and out.case is not None
    # shrunk to the smallest case: k = 1 (where the group mean cancels the reward), n = 2
    assert out.case.k == 1 and out.case.n == 2


def test_self_inclusive_baseline_is_caught_by_the_baseline_property() -> None:
    """The registered baseline property, its leave-one-out mean swapped for the self-inclusive
    group mean, finds the bias in a Hypothesis search (not only on its planted case)."""
    from properties.claims import estimators
    from properties.claims._planted import rebound

    prop = next(c for c in C.CLAIM_CHECKS if c.id == "baseline-invariant").properties[0]
    assert prop.check is estimators._check_baselines
    with rebound(prop.check.__module__, {"rloo": group_mean_baseline}):
        out = search("planted", prop.strategy, prop.check, max_examples=100, seed=3)
    assert out.found and out.violation is not None
    assert out.violation.message.startswith("leave-one-out mean")


def test_missing_minus_p_term_is_caught() -> None:
    def no_minus_p(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
        onehot = (samples[..., None] == np.arange(logits.size)).astype(np.float64)
        out: Gradient = (rewards[..., None] * onehot).mean(axis=1)
        return out

    def check(pb: PolicyProblem) -> Violation | None:
        return _exact_mismatch(no_minus_p, pb, policy_gradient(pb.logits, pb.scores), "no -p")

    out = search("planted", policy_problems(), check, max_examples=100, seed=0)
    assert out.found and out.violation is not None and "coordinate" in out.violation.message


def test_reinforce_with_a_one_in_a_billion_bias_is_caught() -> None:
    def tiny_bias(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
        return reinforce(logits, samples, rewards * (1 + 1e-9) + 1e-9)

    def check(pb: PolicyProblem) -> Violation | None:
        return _exact_mismatch(tiny_bias, pb, policy_gradient(pb.logits, pb.scores), "tiny")

    assert search("planted", policy_problems(), check, max_examples=200, seed=0).found


def test_point_mass_and_uniform_demonstrators_are_not_counterexamples() -> None:
    assert indicator._counterexample_indicator_stochastic(np.array([0.0, 1.0, 0.0])) is None
    assert indicator._counterexample_indicator_stochastic(np.array([0.5, 0.5])) is None
    assert indicator._counterexample_indicator_stochastic(np.array([0.25, 0.75])) is not None


def test_unbounded_search_proposal_is_not_a_counterexample() -> None:
    """With q(A*) = 1 the imitation limit is on A* too: the equivalence holds there."""
    case = (np.array([0.0, 1.0]), np.array([0.0, 1.0]), 2)
    assert search_family._counterexample_rl_vs_limited_imitation(case) is None


def test_a_wrong_rate_constant_would_be_caught() -> None:
    """The O(1/t) check is tight enough to fail with a bound 50 times too small."""
    theta0, s = np.zeros(3), np.array([0.0, 0.5, 1.0])
    assert rl._check_rl_converges((theta0, s)) is None
    original = rl.RL_STEPS
    tr = rl_trajectory(theta0, s, step_size=smooth_step_size(s), steps=original)
    delta = 1.0 - tr.objective(s)[1:]
    c = np.minimum.accumulate(tr.probs[:, 2])
    t = np.arange(1, original + 1)
    assert np.any(delta > 5.0 / 50 / (c[:-1] ** 2 * t))


# --- the command --------------------------------------------------------------------------------


def test_claims_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "claims",
            "--json",
            "--max-examples",
            "5",
            "self-inclusive-baseline-scales",
            "rl-equals-imitation-under-limited-search",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert status == 0
    assert [c["id"] for c in out["claims"]] == [
        "self-inclusive-baseline-scales",
        "rl-equals-imitation-under-limited-search",
    ]
    for c in out["claims"]:
        assert set(c) == {"id", "statement", "verdict", "expected", "evidence", "counterexample"}
    assert out["claims"][1]["counterexample"]["k"] == 1


def test_claims_command_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["claims", "--max-examples", "3", "indicator-reward-stochastic-demonstrator"]) == 0
    out = capsys.readouterr().out
    assert "refuted" in out and "Counterexamples" in out and "1/1 claims" in out


@pytest.mark.parametrize(
    "argv",
    [["claims", "no-such-claim"], ["claims", "--max-examples", "0"], ["claims", "--seed", "-1"]],
)
def test_claims_bad_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ida-verify")


# --- issue 15: a finite check is not a proof; the documented counterexamples agree -------------


def _bounded_only_limited_search(**_: object) -> object:
    """A cut-down copy of the limited-search proof: only its bounded cross-check is left."""
    import dataclasses

    from spec.proofs import prove_limited_search_imitation

    full = prove_limited_search_imitation()
    return dataclasses.replace(full, steps=tuple(s for s in full.steps if s.role == "cross-check"))


def test_a_bounded_only_proof_is_not_proved_in_the_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses
    import types

    import spec
    from properties.claims.ledger import render_table

    claim = spec.get_claim("limited-search-imitation")
    registry = dict(spec.CLAIMS)
    registry[claim.id] = dataclasses.replace(claim, prover=_bounded_only_limited_search)
    monkeypatch.setattr(spec.claims._registry, "CLAIMS", types.MappingProxyType(registry))
    result = C.run_claim(claim.id, C.RunConfig(max_examples=2))
    assert result.verdict == "failed" and not result.as_expected
    proof = result.evidence["proof"]
    assert proof["ok"] is True and proof["proved"] is False and proof["scope"] == "bounded"
    line = render_table([result], seconds=0.0)
    assert "general n" not in line
    assert "sympy checked only for n <= 4, k <= 3 (1 steps, bounded: NOT a proof)" in line


@pytest.mark.parametrize(
    "claim_id",
    ["indicator-reward-stochastic-demonstrator", "rl-equals-imitation-under-limited-search"],
)
def test_the_documented_counterexample_is_the_one_the_ledger_finds(claim_id: str) -> None:
    """`prove` (the registry's documented counterexample) and `claims` (Hypothesis, shrunk)
    show the same case, as the README does."""
    import spec

    documented = spec.get_claim(claim_id).refute()
    assert documented.refutes
    found = C.run_claim(claim_id, _config()).evidence["exact_confirmation"]["report"]
    assert found == documented.report()


# --- issue 15: every registered property catches a planted violation, through its own code ----


_PROPERTIES = [
    (c.id, p) for c in C.CLAIM_CHECKS for p in (*c.properties, *c.statistical)
]


def test_every_registered_property_has_a_planted_violation() -> None:
    assert len(_PROPERTIES) == 22
    missing = [(cid, p.name) for cid, p in _PROPERTIES if p.planted is None]
    assert not missing


@pytest.mark.parametrize("claim_id", C.CLAIM_IDS)
def test_every_planted_violation_is_caught_by_the_registered_check(claim_id: str) -> None:
    """The very rows the ledger computes: each property's registered check (or run) is called
    on its planted violation and must report it, and passes the unperturbed case."""
    from properties.claims._planted import planted_rows

    spec = next(c for c in C.CLAIM_CHECKS if c.id == claim_id)
    rows = planted_rows(spec, seed=0)
    expected = len(spec.properties) + len(spec.statistical) + (spec.counterexample is not None)
    assert len(rows) == expected
    assert all(r["caught"] and r["problem"] is None for r in rows), rows


def test_a_property_that_returns_none_is_an_error_in_the_ledger(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The copy of issue 15: `_check_self_inclusive` returning None made the claim "proved"."""
    from properties.claims import estimators

    monkeypatch.setattr(estimators._check_self_inclusive, "__code__", (lambda pb: None).__code__)
    result = C.run_claim("self-inclusive-baseline-scales", C.RunConfig(max_examples=3))
    assert result.verdict == "error" and not result.as_expected
    assert result.counterexample is not None
    assert result.counterexample["vacuous property"].startswith("group mean including x_j")
    assert "missed its planted violation" in result.counterexample["problem"]
    assert main(["claims", "--max-examples", "3", "self-inclusive-baseline-scales"]) == 1
    out = capsys.readouterr().out
    assert "error" in out and "0/1 planted violations caught (VACUOUS: group mean" in out


def test_a_statistical_property_that_never_rejects_is_vacuous(monkeypatch: pytest.MonkeyPatch) -> None:
    from properties.claims._planted import planted_rows

    never = lambda seed: StatOutcome(3, 0, 1e-3, "none", "never rejects")  # noqa: E731
    monkeypatch.setattr(search_family._sampled_limited_search, "__code__", never.__code__)
    spec = next(c for c in C.CLAIM_CHECKS if c.id == "limited-search-imitation")
    rows = planted_rows(spec, seed=0)
    assert [r["caught"] for r in rows] == [True, False]


def test_a_property_without_a_planted_violation_is_an_error() -> None:
    import dataclasses

    from properties.claims._planted import NO_PLANTED, planted_rows

    spec = next(c for c in C.CLAIM_CHECKS if c.id == "reinforce-raises-above-average")
    bare = dataclasses.replace(spec.properties[0], planted=None)
    rows = planted_rows(dataclasses.replace(spec, properties=(bare,)), seed=0)
    assert rows[0]["problem"] == NO_PLANTED and not rows[0]["caught"]


def test_a_counterexample_search_that_accepts_everything_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The search and the exact confirmation must both pass over a case where the claim holds."""
    from properties.claims._planted import planted_rows

    spec = next(c for c in C.CLAIM_CHECKS if c.id == "indicator-reward-stochastic-demonstrator")
    assert spec.counterexample is not None
    always = lambda q: Violation("anything goes")  # noqa: E731
    monkeypatch.setattr(spec.counterexample.check, "__code__", always.__code__)
    assert planted_rows(spec, seed=0)[-1]["caught"] is False


# --- issue 15: the sequence proofs run in the ledger ---------------------------------------------


def test_the_ledger_names_every_sequence_proof() -> None:
    from spec.sequence import SEQUENCE_PROOFS

    assert list(C.SEQUENCE_PROOF_IDS) == list(SEQUENCE_PROOFS)


def test_the_ledger_runs_the_sequence_proofs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["claims", "--json", "sequence-kl-gradient"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["claims"] == []
    [row] = data["sequence_proofs"]
    assert row["id"] == "sequence-kl-gradient" and row["verdict"] == "proved"
    assert row["proof"]["proved"] is True and row["proof"]["scope"] == "general"


def test_a_failing_sequence_proof_fails_the_ledger(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import types

    import spec.sequence

    wrong = dict(spec.sequence.SEQUENCE_PROOFS)
    wrong["sequence-kl-gradient"] = lambda: spec.sequence.prove_sequence_kl_gradient(
        weight=lambda lp, lr: lp
    )
    monkeypatch.setattr(spec.sequence, "SEQUENCE_PROOFS", types.MappingProxyType(wrong))
    assert main(["claims", "sequence-kl-gradient"]) == 1
    out = capsys.readouterr().out
    assert "sequence-kl-gradient" in out and "failed" in out and "0/1 sequence proofs proved" in out
