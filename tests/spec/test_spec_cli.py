"""`ida-verify prove`: exit codes, readable output and --json."""

from __future__ import annotations

import json

import pytest

from properties.cli import main


def test_prove_all_exits_0_and_prints_every_proof(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove"]) == 0
    out = capsys.readouterr().out
    assert "reinforce-unbiased: PROVED" in out
    assert "iterated-amplification-converges: PROVED" in out
    assert "10 proof(s), 0 failed" in out and "slowest" in out


def test_prove_one_claim(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "self-inclusive-baseline-scales"]) == 0
    out = capsys.readouterr().out
    assert "self-inclusive-baseline-scales: PROVED  [general" in out
    assert "reinforce-unbiased" not in out.split("\n\n")[0].split(":")[0]
    assert "1 proof(s), 0 failed" in out


def test_unknown_claim_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "reinforce-unbiased", "no-such-claim"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-claim" in err


def test_json_output_parses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    assert len(data["proofs"]) == 10
    first = data["proofs"][0]
    assert first["claim"] == "reinforce-unbiased" and first["ok"] is True
    assert first["scope"] == "general" and first["steps"]
    assert all({"description", "ok", "scope", "bound"} <= set(s) for s in first["steps"])


def test_refuted_and_holds_claims_are_shown_not_proved(capsys: pytest.CaptureFixture[str]) -> None:
    ids = ["indicator-reward-stochastic-demonstrator", "rl-converges-to-xstar"]
    assert main(["prove", "--json", *ids]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["proofs"] == []
    assert [o["claim"] for o in data["other"]] == ids
    assert data["other"][0]["refutes"] is True


def test_failing_proof_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses
    import types

    import spec
    from spec.proofs import prove_self_inclusive_baseline_scales

    claim = spec.get_claim("self-inclusive-baseline-scales")
    broken = dataclasses.replace(
        claim, prover=lambda **_: prove_self_inclusive_baseline_scales(factor=1)
    )
    registry = dict(spec.CLAIMS)
    registry[claim.id] = broken
    monkeypatch.setattr(spec, "CLAIMS", types.MappingProxyType(registry))
    assert main(["prove", "self-inclusive-baseline-scales"]) == 1
    out = capsys.readouterr().out
    assert "NOT PROVED" in out and "[FAIL]" in out and "FAILED: self-inclusive-baseline-scales" in out
