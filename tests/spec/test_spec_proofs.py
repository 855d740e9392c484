"""Every proof checks, the registry is complete, and perturbed statements fail to prove."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st
from sympy import KroneckerDelta, Rational, Symbol

from spec import (
    CLAIMS,
    Claim,
    Proof,
    ProofFailed,
    SpecError,
    Step,
    check_identity,
    get_claim,
    prove_all,
)
from spec.claims import FAMILIES
from spec.proofs import group_mean
from spec.symbols import m, s, softmax_p

CLAIM_IDS = {
    "reinforce-unbiased": "proved",
    "baseline-invariant": "proved",
    "self-inclusive-baseline-scales": "proved",
    "reinforce-raises-above-average": "proved",
    "rl-optimum-is-xstar": "proved",
    "rl-converges-to-xstar": "holds",
    "imitation-optimum-is-demonstrator": "proved",
    "imitation-converges-to-xstar": "holds",
    "indicator-reward-is-imitation": "proved",
    "indicator-reward-stochastic-demonstrator": "refuted",
    "limited-search-imitation": "proved",
    "rl-equals-imitation-under-limited-search": "refuted",
    "unbounded-search-limit": "proved",
    "iterated-amplification-converges": "proved",
}

PROVED = [cid for cid, verdict in CLAIM_IDS.items() if verdict == "proved"]


CLAIMS_MD = Path(__file__).resolve().parents[2] / "CLAIMS.md"
"""The project's own claims document (generated from the registry; see tests/test_claims_doc.py)."""


def test_registry_has_exactly_the_14_ids_with_their_verdicts() -> None:
    assert {cid: c.expected for cid, c in CLAIMS.items()} == CLAIM_IDS
    assert list(CLAIMS) == list(CLAIM_IDS), "registry order differs from CLAIMS.md"


def test_registry_matches_the_claims_table_of_the_repository() -> None:
    rows = re.findall(r"^\| \[`([a-z0-9-]+)`\]\(#\1\) \|.*\| (proved|holds|refuted) \|$",
                      CLAIMS_MD.read_text(encoding="utf-8"), flags=re.M)
    assert rows == [(cid, c.expected) for cid, c in CLAIMS.items()]


def test_families_name_the_module_of_each_claim_and_its_proof() -> None:
    assert list(FAMILIES) == list(CLAIMS)
    for cid, family in FAMILIES.items():
        module = importlib.import_module(f"spec.claims.{family}")
        assert CLAIMS[cid] in module.CLAIMS
        prover = CLAIMS[cid].prover
        assert prover is None or prover.__module__ == module.__name__


@pytest.mark.parametrize("claim_id", list(CLAIM_IDS))
def test_every_claim_has_text_formula_and_assumptions(claim_id: str) -> None:
    claim = get_claim(claim_id)
    assert claim.text and "\n" not in claim.text
    assert isinstance(claim.formula, sympy.Basic)
    assert claim.assumptions
    assert claim.provable == (claim.expected == "proved")


@pytest.mark.parametrize("claim_id", PROVED)
def test_every_proof_checks_for_general_n(claim_id: str) -> None:
    proof = get_claim(claim_id).prove()
    proof.assert_ok()
    assert proof.ok and proof.steps
    assert proof.scope == "general", proof.render()
    assert all(isinstance(step, Step) and step.description for step in proof.steps)
    assert all(step.scope == "general" or step.bound for step in proof.steps)


def test_prove_all_checks_every_proof_and_times_each() -> None:
    # Speed is measured by `ida-verify prove` (it prints each proof's time), not asserted
    # here: a wall-clock bound in a test fails on a loaded machine without any regression.
    proofs = prove_all()
    assert [p.claim_id for p in proofs] == PROVED
    assert all(p.ok for p in proofs)
    assert all(p.seconds > 0.0 for p in proofs)


def test_proof_objects_are_frozen_and_serialisable() -> None:
    proof = get_claim("limited-search-imitation").prove()
    with pytest.raises(dataclasses.FrozenInstanceError):
        proof.steps = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        proof.steps[0].ok = False  # type: ignore[misc]
    data = json.loads(json.dumps(proof.to_dict()))
    assert data["ok"] is True and data["claim"] == "limited-search-imitation"
    assert {"description", "kind", "scope", "bound", "ok", "role"} <= set(data["steps"][0])
    assert "limited-search-imitation: PROVED" in proof.render()


def test_each_prove_call_rebuilds_the_steps() -> None:
    first = get_claim("rl-optimum-is-xstar").prove()
    second = get_claim("rl-optimum-is-xstar").prove()
    assert first.steps is not second.steps
    assert all(a is not b for a, b in zip(first.steps, second.steps, strict=True))


def test_empty_proof_is_not_ok() -> None:
    assert not Proof("x", "nothing", (), 0.0).ok


# ---------------------------------------------------------------- tests that must fail


def _wrong_amplify(a: Any, k: Any) -> Any:
    return 1 - (1 - a) ** (k - 1)


PERTURBATIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("reinforce-unbiased", "score without the -p_m term",
     {"score": lambda i, c: KroneckerDelta(i, c)}),
    ("reinforce-unbiased", "score with the wrong sign",
     {"score": lambda i, c: softmax_p(c) - KroneckerDelta(i, c)}),
    ("baseline-invariant", "self-inclusive mean as the baseline", {"baseline": group_mean}),
    ("self-inclusive-baseline-scales", "no (k-1)/k factor", {"factor": 1}),
    ("self-inclusive-baseline-scales", "factor k/(k+1)",
     {"factor": Symbol("k", integer=True, positive=True)
      / (Symbol("k", integer=True, positive=True) + 1)}),
    ("reinforce-raises-above-average", "update p_m s_m (no baseline J)",
     {"gradient": softmax_p(m) * s[m]}),
    ("rl-optimum-is-xstar", "sup J = M/2", {"sup": Symbol("M", real=True) / 2}),
    ("rl-optimum-is-xstar", "sup J = 0", {"sup": 0}),
    ("imitation-optimum-is-demonstrator", "optimum q^2", {"optimum": lambda q: q**2}),
    ("imitation-optimum-is-demonstrator", "optimum 1/2", {"optimum": lambda q: Rational(1, 2)}),
    ("indicator-reward-is-imitation", "multiple 1 (imitation gradient itself)", {"multiple": 1}),
    ("limited-search-imitation", "A* mass 1-(1-q)^(k-1)",
     {"astar_mass": lambda q, k: 1 - (1 - q) ** (k - 1)}),
    ("limited-search-imitation", "A* mass q", {"astar_mass": lambda q, k: q}),
    ("unbounded-search-limit", "limit 1/2", {"limit_value": Rational(1, 2)}),
    ("iterated-amplification-converges", "map 1-(1-a)^(k-1)", {"amplify": _wrong_amplify}),
    ("iterated-amplification-converges", "map a (no amplification)", {"amplify": lambda a, k: a}),
]


@pytest.mark.parametrize(
    ("claim_id", "label", "candidate"), PERTURBATIONS, ids=[f"{c}:{lbl}" for c, lbl, _ in PERTURBATIONS]
)
def test_perturbed_statement_is_not_proved(claim_id: str, label: str, candidate: dict[str, Any]) -> None:
    proof = get_claim(claim_id).prove(**candidate)
    assert not proof.ok, f"{claim_id} with {label} was proved:\n{proof.render()}"
    assert proof.failed
    with pytest.raises(ProofFailed, match=claim_id):
        proof.assert_ok()
    assert "NOT PROVED" in proof.render()


def test_check_identity_rejects_a_wrong_rhs() -> None:
    x = Symbol("x", real=True)
    assert check_identity("right", (x + 1) ** 2, x**2 + 2 * x + 1).ok
    step = check_identity("wrong", (x + 1) ** 2, x**2 + 1)
    assert not step.ok and "2*x" in step.detail


def test_a_step_where_sympy_raises_is_a_failed_step() -> None:
    def boom(*_: Any) -> Any:
        raise ZeroDivisionError("planted")

    proof = get_claim("limited-search-imitation").prove(astar_mass=boom)
    assert not proof.ok
    assert any("planted" in s.detail for s in proof.failed)


def test_bounded_step_requires_its_bound() -> None:
    from spec._core import check_predicate

    with pytest.raises(SpecError, match="bound"):
        check_predicate("d", "c", lambda: (True, ""), scope="bounded")


@pytest.mark.parametrize("bad", ["no-such-claim", "", 3, None])
def test_unknown_claim_id_names_the_known_ids(bad: Any) -> None:
    with pytest.raises(SpecError, match="reinforce-unbiased"):
        get_claim(bad)


@pytest.mark.parametrize("claim_id", ["rl-converges-to-xstar", "indicator-reward-stochastic-demonstrator"])
def test_non_proved_claims_have_no_proof(claim_id: str) -> None:
    with pytest.raises(SpecError, match="no symbolic proof"):
        get_claim(claim_id).prove()


def test_refuted_claims_confirm_their_documented_counterexample() -> None:
    for claim in CLAIMS.values():
        if claim.expected == "refuted":
            assert claim.refute().refutes
        else:
            with pytest.raises(SpecError):
                claim.refute()


def test_claim_is_a_frozen_dataclass() -> None:
    claim = get_claim("reinforce-unbiased")
    assert isinstance(claim, Claim)
    with pytest.raises(dataclasses.FrozenInstanceError):
        claim.expected = "refuted"  # type: ignore[misc]




nonzero_shifts = st.fractions(min_value=-3, max_value=3, max_denominator=7).filter(lambda f: f != 0)


@settings(max_examples=8)
@given(nonzero_shifts)
def test_any_wrong_baseline_factor_is_not_proved(shift: Fraction) -> None:
    k = Symbol("k", integer=True, positive=True)
    proof = get_claim("self-inclusive-baseline-scales").prove(factor=(k - 1) / k + Rational(shift))
    assert not proof.ok


@settings(max_examples=8)
@given(nonzero_shifts)
def test_any_wrong_amplification_exponent_is_not_proved(shift: Fraction) -> None:
    proof = get_claim("iterated-amplification-converges").prove(
        amplify=lambda a, k: 1 - (1 - a) ** (k + Rational(shift))
    )
    assert not proof.ok


@settings(max_examples=8)
@given(nonzero_shifts)
def test_any_wrong_search_exponent_is_not_proved(shift: Fraction) -> None:
    proof = get_claim("limited-search-imitation").prove(
        astar_mass=lambda q, k: 1 - (1 - q) ** (k + Rational(shift))
    )
    assert not proof.ok


# ---------------------------------------------------------------- issue 15: derived, chained steps


def _all_proofs() -> list[Proof]:
    from spec import prove_sequence

    return [*prove_all(), *prove_sequence()]


def test_no_identity_step_prints_as_x_equals_x() -> None:
    """A step whose right-hand side was typed in (not derived) printed as "gradJ = gradJ",
    "q_m = q_m", "G*(k - 1)/k = G*(k - 1)/k", "Sum(pi(v)) = Sum(pi(v))": it checked nothing."""
    tautologies = []
    for proof in _all_proofs():
        for number, step in enumerate(proof.steps, start=1):
            sides = step.claim.split(" = ")
            if step.kind != "enumeration" and len(sides) == 2 and sides[0] == sides[1]:
                tautologies.append(f"{proof.claim_id} step {number}: {step.claim[:80]}")
    assert not tautologies


def test_chained_steps_start_where_the_last_ended() -> None:
    chained = 0
    for proof in _all_proofs():
        for before, step in itertools.pairwise(proof.steps):
            if step.follows:
                chained += 1
                assert step.ok and before.rhs is not None and step.lhs is not None
                assert sympy.simplify(step.lhs - before.rhs) == 0, (proof.claim_id, step.description)
    assert chained >= 12


def test_a_broken_chain_fails_the_proof() -> None:
    from spec._core import chain, make_proof

    x = Symbol("x", real=True)
    typed = chain(
        [
            check_identity("expand", (x + 1) ** 2, x**2 + 2 * x + 1),
            check_identity("a true identity that starts elsewhere", x**2 + 1, 1 + x**2),
        ]
    )
    assert all(s.ok for s in typed)  # each step checks on its own
    proof = make_proof("c", "a chain with a gap", lambda: typed)
    assert not proof.ok and proof.failed == (proof.steps[1],)
    assert "chain broken" in proof.steps[1].detail and "step 1 ended at" in proof.steps[1].detail
    assert "(continues step 1)" in proof.render()


def test_the_imitation_multiplier_is_solved_not_set() -> None:
    """lambda comes from solving the normalisation: a stationary point that sums to 2/lambda
    (a demonstrator of mass 2) gives lambda = 2, and then p = q is no longer the optimum."""
    from spec.claims import _lemmas

    steps = _lemmas.imitation_stationary_steps(lambda qm: qm)
    assert [s.ok for s in steps] == [True] * 5
    assert "lambda = 1" in steps[3].description and "{lambda: 1}" in steps[4].detail
    assert steps[4].claim == "q_m/lambda = q_m"


def test_the_subtree_instance_of_the_sequence_induction_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hypothesis applied to the subtree in a form other than the statement being proved
    (here: without the log in the score) fails the subtree-instance step."""
    import spec.sequence as seq

    def wrong_statement(policy: Any, value: Any, size: Any) -> tuple[Any, Any]:
        y = seq.y
        return (
            sympy.Derivative(sympy.Sum(policy(y) * value(y), (y, 0, size - 1)), seq.vartheta),
            sympy.Sum(policy(y) * value(y) * sympy.diff(policy(y), seq.vartheta), (y, 0, size - 1)),
        )

    monkeypatch.setattr(seq, "_statement", wrong_statement)
    proof = seq.prove_sequence_score_function()
    assert not proof.ok
    assert any(s.description.startswith("subtree instance") for s in proof.failed)


def test_the_sequence_normalisation_is_derived_from_the_softmax() -> None:
    from spec.sequence import prove_sequence_score_function

    step = prove_sequence_score_function().steps[1]
    assert step.follows and step.claim == "Sum(pi(v, vartheta), (v, 0, V - 1)) = 1"
    assert "given {pi(v, vartheta): exp(theta_root[v])" in step.detail
