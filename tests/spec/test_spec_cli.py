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
    assert "sequence-score-function: PROVED" in out and "sequence-kl-gradient: PROVED" in out
    assert "12 proofs, 0 failed" in out and "slowest" in out


def test_prove_one_claim(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "self-inclusive-baseline-scales"]) == 0
    out = capsys.readouterr().out
    assert "self-inclusive-baseline-scales: PROVED  [general" in out
    assert "reinforce-unbiased" not in out.split("\n\n")[0].split(":")[0]
    assert "1 proof, 0 failed" in out


def test_unknown_claim_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "reinforce-unbiased", "no-such-claim"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-claim" in err


def test_json_output_parses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    assert len(data["proofs"]) == 12
    assert [p["claim"] for p in data["proofs"]][-2:] == [
        "sequence-score-function",
        "sequence-kl-gradient",
    ]
    assert all(p["proved"] for p in data["proofs"])
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


def test_refuted_claims_show_the_ledger_counterexample_and_a_sensible_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`prove` shows the same counterexamples as `claims` and the README (issue 15)."""
    ids = ["indicator-reward-stochastic-demonstrator", "rl-equals-imitation-under-limited-search"]
    assert main(["prove", *ids]) == 0
    out = capsys.readouterr().out
    assert "q=['1/3', '2/3']" in out
    assert "scores=['0', '1'], q=['1/2', '1/2'], k=1" in out
    summary = out.strip().splitlines()[-1]
    assert "0 proof" not in summary
    assert summary.startswith("2 refuted claims, 2 counterexample(s) confirmed exactly")


def test_prove_runs_the_sequence_proofs_by_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "sequence-kl-gradient"]) == 0
    out = capsys.readouterr().out
    assert "sequence-kl-gradient: PROVED  [general" in out and "1 proof, 0 failed" in out


def _bounded_only_limited_search(**_: object) -> object:
    """A cut-down copy of the limited-search proof: only its bounded cross-check is left."""
    import dataclasses

    from spec.proofs import prove_limited_search_imitation

    full = prove_limited_search_imitation()
    cross = tuple(s for s in full.steps if s.role == "cross-check")
    assert len(cross) == 1 and cross[0].scope == "bounded"
    return dataclasses.replace(full, steps=cross)


def test_a_bounded_only_proof_is_not_reported_proved(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses
    import types

    import spec

    claim = spec.get_claim("limited-search-imitation")
    registry = dict(spec.CLAIMS)
    registry[claim.id] = dataclasses.replace(claim, prover=_bounded_only_limited_search)
    monkeypatch.setattr(spec, "CLAIMS", types.MappingProxyType(registry))
    assert main(["prove", "--json", claim.id]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert data["proofs"][0]["scope"] == "bounded" and data["proofs"][0]["proved"] is False
    assert data["proofs"][0]["bounds"] == ["n <= 4, k <= 3"]
    assert main(["prove", claim.id]) == 1
    out = capsys.readouterr().out
    assert "PROVED" not in out.replace("NOT PROVED", "")
    assert "limited-search-imitation: CHECKED only for n <= 4, k <= 3" in out
    assert "1 checked only for bounded sizes" in out and "FAILED: limited-search-imitation" in out


def test_a_refutation_that_is_not_exact_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A uniform demonstrator is no counterexample: `prove` must not call it a refutation."""
    import dataclasses
    import functools
    import types

    import spec

    claim = spec.get_claim("indicator-reward-stochastic-demonstrator")
    uniform = functools.partial(spec.confirm_indicator_counterexample, ["1/2", "1/2"])
    registry = dict(spec.CLAIMS)
    registry[claim.id] = dataclasses.replace(claim, counterexample=uniform)
    monkeypatch.setattr(spec, "CLAIMS", types.MappingProxyType(registry))
    assert main(["prove", claim.id]) == 1
    out = capsys.readouterr().out
    assert "NOT REFUTED" in out and "0 counterexample(s) confirmed exactly, 1 NOT confirmed" in out
