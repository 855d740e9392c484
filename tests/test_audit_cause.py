"""Every biased audit row names its cause (issue 17, "A matrix worth reading").

:mod:`properties.audit.cause` turns a check result into a one-line cause (from the diagnosis)
and keeps the checker's symptom as ``detail``.  The first tests audit a toy library defined
here (this module is its library module: ``LIBRARY``, ``EXTRA``, ``version``,
``configurations``, ``build``), so that they run without verl; the last ones audit the real
verl rows the blind trial read (skipped with one line where verl is not installed).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from properties.audit import core
from properties.audit.cause import row_cause
from properties.audit.core import Configuration, run_audit, run_configuration
from properties.cli import main

torch = pytest.importorskip("torch")

LIBRARY = "toy"
EXTRA = "toy"
KL_COEF = 0.2
"""The ``beta`` of the toy KL row."""

GRPO_STD_EPS = 1e-4
"""The ``eps`` of the toy GRPO's ``std + eps`` (TRL's and verl's value)."""


def version() -> str:
    return "0.0"


def _rloo(rewards: Any, k: int) -> Any:
    grouped = rewards.view(-1, k)
    return (grouped - (grouped.sum(1, keepdim=True) - grouped) / (k - 1)).reshape(-1)


def _token_sum_per_response(batch: Any, advantages: Any) -> Any:
    return -(advantages.detach()[:, None] * batch.log_probs * batch.mask).sum(-1)


def grpo_std(batch: Any) -> Any:
    """GRPO's std-normalised advantage, a token sum per response, the mean over responses."""
    grouped = batch.rewards.view(-1, batch.group_size)
    adv = (grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + GRPO_STD_EPS)
    return _token_sum_per_response(batch, adv.reshape(-1)).mean()


def per_response_token_mean(batch: Any) -> Any:
    """RLOO advantages, each response's token mean (the weight 1/|y|)."""
    per = _token_sum_per_response(batch, _rloo(batch.rewards, batch.group_size))
    return (per / batch.mask.sum(-1)).mean()


def token_sum(batch: Any) -> Any:
    """RLOO advantages summed over every response of the batch: c = kP."""
    return _token_sum_per_response(batch, _rloo(batch.rewards, batch.group_size)).sum()


def k1_in_the_loss(batch: Any) -> Any:
    """RLOO plus ``beta * (log pi - log pi_ref)`` summed per response in the loss."""
    pg = _token_sum_per_response(batch, _rloo(batch.rewards, batch.group_size))
    kl = ((batch.log_probs - batch.ref_log_probs) * batch.mask).sum(-1)
    return (pg + batch.kl_coef * kl).mean()


LOSSES = {
    "grpo-std": (grpo_std, {}),
    "token-mean": (per_response_token_mean, {}),
    "token-sum": (token_sum, {}),
    "kl-loss:k1": (k1_in_the_loss, {"kl_coef": KL_COEF}),
}


def configurations() -> list[Configuration]:
    return [
        Configuration(LIBRARY, "grpo-std", ()),
        Configuration(LIBRARY, "token-mean", (("loss_agg_mode", "seq-mean-token-sum"),)),
        Configuration(LIBRARY, "token-sum", ()),
        Configuration(LIBRARY, "kl-loss:k1", ()),
    ]


def build(config: Configuration) -> tuple[Any, dict[str, Any]]:
    fn, kwargs = LOSSES[config.name]
    return fn, dict(kwargs)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> dict[str, Configuration]:
    monkeypatch.setitem(core.LIBRARIES, LIBRARY, __name__)
    return {c.name: c for c in configurations()}


# --------------------------------------------------------------------- without verl


def test_std_normalised_grpo_names_std_normalisation(toy: dict[str, Configuration]) -> None:
    row = run_configuration(toy["grpo-std"], "0.0", diagnose=True)
    assert row.verdict == "biased"
    assert row.cause.startswith("std normalisation of the group's rewards"), row.cause
    assert row.detail.startswith("E[g] "), row.detail  # the symptom, kept
    assert row.to_dict()["detail"] == row.detail


def test_a_per_response_token_mean_names_one_over_length(toy: dict[str, Configuration]) -> None:
    row = run_configuration(toy["token-mean"], "0.0", diagnose=True)
    assert row.verdict == "biased"
    assert "length normalisation 1/|y|" in row.cause, row.cause
    # configured as seq-mean-token-sum, the loss's own token mean is named as hard-coded
    assert "although loss_agg_mode is seq-mean-token-sum" in row.cause, row.cause
    plain = run_configuration(
        Configuration(LIBRARY, "token-mean", (("loss_agg_mode", "seq-mean-token-mean"),)),
        "0.0", diagnose=True,
    )
    assert "1/|y|" in plain.cause and "hard-codes" not in plain.cause, plain.cause


def test_k1_in_the_loss_names_its_zero_mean_gradient(toy: dict[str, Configuration]) -> None:
    row = run_configuration(toy["kl-loss:k1"], "0.0", diagnose=True)
    assert row.verdict == "biased"
    assert row.cause.startswith("KL k1 in the loss: zero-mean gradient"), row.cause


def test_a_scaled_row_describes_its_constant(toy: dict[str, Configuration]) -> None:
    # the checker keys its constants by (k, T, P, V): the closed form is still named
    plain = run_configuration(toy["token-sum"], "0.0")
    assert (plain.verdict, plain.constant) == ("scaled", "c = k at P=1"), plain.constant
    assert plain.cause == "c = k at P=1: the group's responses are summed, not averaged", plain.cause
    assert plain.detail.startswith("E[g] is a constant multiple of grad J on all")
    scaled = SimpleNamespace(verdict="scaled", diagnosis=None)
    found = row_cause(scaled, "E[g] is a constant multiple", constant="c = k", unchecked=("x",))
    assert found.cause == "c = k: the group's responses are summed, not averaged; not checked: x"
    assert found.detail == "E[g] is a constant multiple"
    diagnosed = run_configuration(toy["token-sum"], "0.0", diagnose=True)
    assert diagnosed.verdict == "scaled"
    assert diagnosed.detail.startswith("E[g] is a constant multiple of grad J on all")
    # a sum over every response of the batch: c = kP, both factors named
    assert diagnosed.cause == (
        "sums over the prompts (c ~ P); sums over the group's responses (c ~ k)"
    ), diagnosed.cause


def test_without_diagnose_a_biased_row_keeps_its_symptom(toy: dict[str, Configuration]) -> None:
    row = run_configuration(toy["grpo-std"], "0.0")
    assert row.cause == row.detail and row.cause.startswith("E[g] "), row.cause


def test_the_command_line_diagnoses_in_the_rows(
    toy: dict[str, Configuration], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", LIBRARY, "--json", "--jobs", "1", "--diagnose",
                 "--only", "grpo-std", "--only", "kl-loss:k1"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["grpo-std"]["cause"].startswith("std normalisation"), rows["grpo-std"]
    assert rows["kl-loss:k1"]["cause"].startswith("KL k1 in the loss"), rows["kl-loss:k1"]
    assert all(r["detail"].startswith("E[g] ") for r in rows.values())
    # and run_audit passes the flag on
    (row,) = run_audit([toy["grpo-std"]], "0.0", jobs=1, diagnose=True)
    assert row.cause.startswith("std normalisation")


def test_a_result_the_diagnosis_cannot_read_falls_back_to_the_symptom() -> None:
    weights = SimpleNamespace(verdict="biased", protocol="token-weights")  # trainer losses: test_trainer_diagnosis
    found = row_cause(weights, "E[g] is not 1 grad J", loss_fn=grpo_std, diagnose=True)
    assert found.cause == "E[g] is not 1 grad J"
    assert "does not model the token-weights protocol" in found.detail
    assert row_cause(None, "whatever").cause == "whatever"
    assert row_cause(object(), "whatever", diagnose=True).cause == "whatever"


def test_a_loss_the_probes_cannot_run_falls_back_to_the_symptom() -> None:
    def hostile(batch: Any) -> Any:
        raise RuntimeError("no")

    result = SimpleNamespace(verdict="biased", protocol="sequence-loss", diagnosis=None)
    found = row_cause(result, "E[g] is not 1 grad J", loss_fn=hostile, check_kwargs={},
                      diagnose=True)
    assert found.cause == "E[g] is not 1 grad J"
    assert "the diagnosis named no cause" in found.detail and "could not run" in found.detail
    found_ = SimpleNamespace(findings=(SimpleNamespace(name="eos", sentence=""),),
                             skipped=("padding: the loss misbehaved",))
    partial = row_cause(SimpleNamespace(verdict="biased", diagnosis=found_), "symptom")
    assert partial.cause == "the EOS token gets no weight"
    assert partial.detail == "symptom [the diagnosis: 1 probes could not run: padding: the loss misbehaved]"
    bad = row_cause(result, "E[g] is not 1 grad J", loss_fn=grpo_std,
                    check_kwargs={"kl_coef": -1.0}, diagnose=True)
    assert bad.cause == "E[g] is not 1 grad J"
    assert "the diagnosis failed: InvalidArgument" in bad.detail


def test_a_diagnosis_already_in_the_result_is_used() -> None:
    from properties.sequence.checker import check_sequence_loss

    report = check_sequence_loss(grpo_std, group_sizes=(2, 3), vocab_size=2, max_len=2,
                                 max_examples=2, diagnose=True)
    found = row_cause(report, "symptom")  # no loss given: the report's own diagnosis
    assert found.cause.startswith("std normalisation"), found.cause


# --------------------------------------------------------------------- the real verl rows

VERL_CAUSES = {
    "default": "std normalisation of the group's rewards",
    "loss:sapo": "length normalisation 1/|y|",
    "kl-loss:kl|k1": "KL k1 in the loss: zero-mean gradient",
}
"""What the blind trial found missing: verl's default GRPO advantage divides by the group's
std; sapo computes a per-response token mean whatever ``loss_agg_mode`` says; a k1 term in the
loss has a zero-mean gradient."""


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VERL_CAUSES))
def test_verl_rows_name_their_cause(name: str) -> None:
    try:
        from properties.audit import verl as audit_verl

        version_text = audit_verl.version()
    except ImportError:
        pytest.skip("verl is not installed (pip install '.[verl]' runs the audit tests)")
    config = next(c for c in audit_verl.configurations() if c.name == name)
    row = run_configuration(config, version_text, diagnose=True)
    assert row.verdict == "biased", row.detail
    assert VERL_CAUSES[name] in row.cause, row.cause
    assert row.detail.startswith("E[g] "), row.detail
    if name == "loss:sapo":
        assert "although loss_agg_mode is seq-mean-token-sum" in row.cause, row.cause


@pytest.mark.slow
def test_the_process_pool_diagnoses_in_its_workers() -> None:
    try:
        from properties.audit import verl as audit_verl

        version_text = audit_verl.version()
    except ImportError:
        pytest.skip("verl is not installed (pip install '.[verl]' runs the audit tests)")
    configs = [c for c in audit_verl.configurations() if c.name in ("adv:grpo", "agg:token-mean")]
    pooled = run_audit(configs, version_text, jobs=2, diagnose=True)
    assert [r.name for r in pooled] == ["adv:grpo", "agg:token-mean"]
    assert pooled[0].cause == "std normalisation of the group's rewards", pooled[0].cause
    assert pooled[1].cause.startswith("length-dependent token weights"), pooled[1].cause
    assert all(r.detail.startswith("E[g] ") for r in pooled)
