"""spec.sequence: the sequence score-function and KL-gradient proofs check, and can fail (budget: ~15 s)."""

from __future__ import annotations

import pytest

from spec import prove_sequence, prove_sequence_kl_gradient, prove_sequence_score_function
from spec.sequence import SEQUENCE_PROOFS


def test_every_sequence_proof_checks_in_general() -> None:
    proofs = prove_sequence()
    assert [p.claim_id for p in proofs] == list(SEQUENCE_PROOFS)
    for proof in proofs:
        proof.assert_ok()
        assert proof.scope == "general"
        # each carries an independent bounded cross-check that was actually run
        cross = [s for s in proof.steps if s.role == "cross-check"]
        assert cross and all(s.ok and "cases checked" in s.detail for s in cross)


@pytest.mark.parametrize(
    ("candidate", "failing"),
    [
        # forgetting the continuation's score: only the first token's log-prob counts
        (lambda dlp, dlq: dlp, {"autoregressive factorisation", "(cross-check)"}),
        # the continuation counted twice
        (lambda dlp, dlq: dlp + 2 * dlq, {"autoregressive factorisation", "(cross-check)"}),
    ],
)
def test_score_proof_fails_for_a_wrong_factorisation(candidate, failing) -> None:  # type: ignore[no-untyped-def]
    proof = prove_sequence_score_function(continuation_score=candidate)
    assert not proof.ok
    assert "FAIL" in proof.render()
    failed = {
        "(cross-check)" if s.role == "cross-check" else s.description.split(":")[0]
        for s in proof.failed
    }
    assert failing <= failed


@pytest.mark.parametrize(
    "weight",
    [
        lambda lp, lr: lp,  # the reference term dropped
        lambda lp, lr: lr - lp,  # the sign flipped
    ],
)
def test_kl_proof_fails_for_a_wrong_weight(weight) -> None:  # type: ignore[no-untyped-def]
    proof = prove_sequence_kl_gradient(weight=weight)
    assert not proof.ok
    assert any(s.role == "cross-check" and not s.ok for s in proof.steps)
