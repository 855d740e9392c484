"""``ida-verify audit verl``: the configuration space read from the installed verl, verdicts
that agree with the corpus, the process pool, the exit statuses.

The tests that need verl run against the real package: the ``test`` extra installs verl 0.9.1
(pyproject.toml says why and what it costs), so where verl cannot be imported they fail (a
broken install must not pass silently).  They would skip with one line only if the test extra
stopped naming verl (verl is also the optional ``[verl]`` extra for users).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from audit_extras import in_test_extra  # tests/audit_extras.py (verl ships "tests")

from properties.audit import core
from properties.audit.core import Configuration, constant_text, run_audit, run_configuration
from properties.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _verl_in_test_extra(text: str | None = None) -> bool:
    """Whether pyproject's ``test`` extra names verl (or the ``verl`` extra)."""
    return in_test_extra("verl", text)


def _import_verl() -> Any:
    try:
        from verl.trainer.ppo import core_algos
    except ImportError as exc:
        if _verl_in_test_extra():
            pytest.fail(f"the test extra installs verl but it does not import: {exc}")
        pytest.skip("verl is not installed (pip install '.[verl]' runs the audit tests)")
    return core_algos


@pytest.fixture(scope="module")
def core_algos() -> Any:
    pytest.importorskip("torch")
    return _import_verl()


# --------------------------------------------------------------------- without verl


def test_missing_library_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from properties.audit import verl as audit_verl

    def missing() -> str:
        raise ImportError("No module named 'verl'")

    monkeypatch.setattr(audit_verl, "version", missing)
    assert main(["audit", "verl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'ida-verify[verl]'" in err


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "nosuchlib"]) == 2
    assert main(["audit", "verl", "--jobs", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 2


def test_a_missing_verl_fails_when_the_test_extra_installs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _verl_in_test_extra()  # the test extra installs verl: CI runs these tests for real
    assert _verl_in_test_extra('test = [\n    "pytest>=7.4",\n    "verl==0.9.1",\n]\n')
    assert _verl_in_test_extra('test = [\n    "ida-verify[verl]",\n]\n')
    monkeypatch.setitem(sys.modules, "verl", None)  # import verl now raises ImportError
    monkeypatch.setitem(sys.modules, "verl.trainer", None)
    monkeypatch.setitem(sys.modules, "verl.trainer.ppo", None)
    monkeypatch.setattr(sys.modules[__name__], "_verl_in_test_extra", lambda text=None: True)
    with pytest.raises(pytest.fail.Exception, match="does not import"):
        _import_verl()
    monkeypatch.setattr(sys.modules[__name__], "_verl_in_test_extra", lambda text=None: False)
    with pytest.raises(pytest.skip.Exception, match=r"pip install '\.\[verl\]'"):
        _import_verl()


def test_constant_names_a_closed_form_only_when_it_fits_every_key() -> None:
    assert constant_text({(2, 1, 1): 1.0, (2, 2, 1): 0.5, (3, 3, 1): 1 / 3}) == "c = 1/T at P=1"
    assert constant_text({(2, 1, 1): 1.0, (2, 2, 1): 0.6}).startswith("c = 1 at k=2")


def test_not_checked_rows_carry_their_reason() -> None:
    row = run_configuration(Configuration("verl", "adv:x", (), not_checked="needs values"), "v")
    assert (row.verdict, row.cause, row.version) == ("not checked", "needs values", "v")


# --------------------------------------------------------------------- the space, from verl


def test_space_is_read_from_the_library(core_algos: Any) -> None:
    from properties.audit import verl as audit_verl

    assert len(audit_verl.estimators()) >= 10
    assert len(audit_verl.policy_losses()) >= 5
    assert set(audit_verl.estimators()) == set(core_algos.ADV_ESTIMATOR_REGISTRY)
    assert {"token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"} <= set(
        audit_verl.agg_modes()
    )
    kinds = audit_verl.kl_kinds()
    assert ("kl", "k1") in kinds and ("low_var_kl", "k3") in kinds
    names = {c.name: c for c in audit_verl.configurations()}
    assert len(names) == len(audit_verl.configurations())  # no duplicates
    for est in core_algos.ADV_ESTIMATOR_REGISTRY:
        assert f"adv:{est}" in names
    for loss in core_algos.POLICY_LOSS_REGISTRY:
        assert f"loss:{loss}" in names and f"loss:{loss} off-policy" in names
    assert names["adv:gae"].not_checked is None  # the batch has a critic's values now
    checked = [c for c in names.values() if c.not_checked is None]
    assert len(checked) >= 40


def test_a_newly_registered_policy_loss_is_audited(
    core_algos: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The space follows the registry: a loss registered at run time appears, and is judged."""
    from properties.audit import verl as audit_verl

    def token_mean_reinforce(old_log_prob: Any, log_prob: Any, advantages: Any,
                             response_mask: Any, loss_agg_mode: str = "token-mean",
                             config: Any = None, rollout_is_weights: Any = None) -> Any:
        per_token = -advantages * log_prob
        return core_algos.agg_loss(per_token, response_mask, "token-mean"), {}

    monkeypatch.setitem(core_algos.POLICY_LOSS_REGISTRY, "audit_test_loss", token_mean_reinforce)
    names = {c.name: c for c in audit_verl.configurations()}
    row = run_configuration(names["loss:audit_test_loss"], "test")
    assert row.verdict == "biased", row.cause  # a token mean weights responses by 1/length
    assert row.cause.startswith("E[g] ") and "grad J on" in row.cause, row.cause


def test_gae_is_checked_with_a_critic_and_biased_by_its_whitening_alone(
    core_algos: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verl's GAE gets the checker's random values; it is biased, and only through
    ``masked_whiten``: with the whitening replaced by the identity, lam = 1 is unbiased for any
    values, as GAE with lambda = 1 must be."""
    from properties.audit import verl as audit_verl
    from properties.sequence.checker import check_sequence_loss

    config = next(c for c in audit_verl.configurations() if c.name == "adv:gae")
    loss, kwargs = audit_verl.build(config)
    assert kwargs == {"values": "random"}
    small = {"group_sizes": (2,), "max_len": 2, "max_examples": 2, **kwargs}
    seen: list[Any] = []
    real_gae = core_algos.compute_gae_advantage_return

    @functools.wraps(real_gae)  # the same signature: the glue passes what it names
    def spy(**kw: Any) -> Any:
        seen.append(kw["values"])
        return real_gae(**kw)

    monkeypatch.setattr(core_algos, "compute_gae_advantage_return", spy)
    monkeypatch.setitem(core_algos.ADV_ESTIMATOR_REGISTRY, "gae", spy)
    report = check_sequence_loss(loss, **small)
    assert report.verdict == "biased", report.message
    assert seen and report.settings["values"] == "random"
    import verl.utils.torch_functional as verl_f

    monkeypatch.setattr(verl_f, "masked_whiten", lambda values, mask, shift_mean=True: values)
    assert check_sequence_loss(loss, **small).verdict == "unbiased"


def test_rollout_correction_is_checked_against_the_inference_engine(
    core_algos: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verl's rollout correction on the checker's perturbed engine: no correction and the
    per-token weights are biased; the sequence weights are unbiased untruncated and biased
    where verl's default truncation (2.0) binds."""
    from properties.audit import verl as audit_verl
    from properties.sequence.checker import check_sequence_loss

    names = {c.name: c for c in audit_verl.configurations()}
    small = {"group_sizes": (2,), "max_len": 2, "max_examples": 2}

    def verdict(name: str) -> str:
        loss, kwargs = audit_verl.build(names[name])
        assert kwargs == {"sampling_mismatch": True}
        return check_sequence_loss(loss, **small, **kwargs).verdict

    assert [verdict(f"rollout-is:{level}") for level in ("none", "token", "sequence")] == ["biased"] * 3
    monkeypatch.setattr(audit_verl, "ROLLOUT_IS_THRESHOLD", 1e6)
    assert verdict("rollout-is:sequence") == "unbiased"
    assert verdict("rollout-is:token") == "biased"


# --------------------------------------------------------------------- agreement with the corpus

CORPUS_MATCH: dict[str, str] = {
    "default": "verl_grpo_token_mean",
    "adv:rloo": "verl_rloo_seq_mean_token_sum",
    "adv:reinforce_plus_plus": "verl_reinforce_pp",
    "adv:reinforce_plus_plus_baseline": "verl_reinforce_pp_baseline",
    "adv:remax": "verl_remax_greedy_baseline",
    "adv:opo": "verl_opo",
    "adv:gpg": "verl_gpg",
    "loss:vanilla off-policy": "verl_ppo_dual_clip_off_policy",
    "loss:geo_mean": "verl_geo_mean",
    "agg:token-mean": "verl_rloo_token_mean",
    "agg:seq-mean-token-sum-norm": "verl_rloo_seq_mean_token_sum_norm",
    "kl-reward:kl|k1": "verl_kl_in_reward_k1",
    "kl-reward:low_var_kl|k3": "verl_kl_in_reward_k3",
    "kl-loss:kl|k1": "verl_kl_loss_k1",
    "kl-loss:mse|k2": "verl_kl_loss_k2",
    "kl-loss:low_var_kl|k3": "verl_kl_loss_k3",
    "kl-loss:abs": "verl_kl_loss_abs",
    "entropy-bonus": "verl_entropy_bonus",
}
"""Audit configuration -> the corpus entry (an old verl commit, re-expressed) with the same settings."""

UPSTREAM_CHANGES: dict[str, tuple[str, str]] = {
    "agg:seq-mean-token-sum-norm": (
        "scaled",
        "c = 1/T at P=1",
    ),
}
"""Where verl 0.9.1 differs from the corpus's commit, the verdict and constant the audit must
get instead (tests/corpus/README.md, "The installed verl" explains each)."""

SLOW = {"adv:rloo", "adv:remax", "kl-reward:kl|k1", "agg:seq-mean-token-sum-norm"}
"""Configurations that are certified (unbiased or scaled): a full run, about a minute each."""


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CORPUS_MATCH],
)
def test_verdict_agrees_with_the_corpus(core_algos: Any, name: str) -> None:
    from corpus import CORPUS

    from properties.audit import verl as audit_verl

    entry = next(e for e in CORPUS if e.name == CORPUS_MATCH[name])
    config = next(c for c in audit_verl.configurations() if c.name == name)
    row = run_configuration(config, audit_verl.version())
    if name in UPSTREAM_CHANGES:
        verdict, constant = UPSTREAM_CHANGES[name]
        assert entry.expected != verdict or entry.scale is not None
        assert (row.verdict, row.constant) == (verdict, constant), row.cause
    else:
        assert row.verdict == entry.expected, row.cause


# --------------------------------------------------------------------- pool and command line

FAST = ["adv:opo", "agg:token-mean", "kl-loss:full"]


def test_process_pool_gives_the_rows_of_one_process(core_algos: Any) -> None:
    from properties.audit import verl as audit_verl

    configs = [c for c in audit_verl.configurations() if c.name in FAST]
    version = audit_verl.version()
    pooled = run_audit(configs, version, jobs=2)
    alone = run_audit(configs, version, jobs=1)
    assert [r.name for r in pooled] == [c.name for c in configs]
    assert [(r.verdict, r.constant, r.cause) for r in pooled] == [
        (r.verdict, r.constant, r.cause) for r in alone
    ]


def test_json_version_and_exit_statuses(
    core_algos: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    only = [arg for name in FAST for arg in ("--only", name)]
    # a not-checked row: the audit covered less than the library offers, exit 1
    assert main(["audit", "verl", "--json", "--jobs", "1", *only]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["version"] == core.library_module("verl").version()
    rows = {r["name"]: r for r in payload["rows"]}
    assert set(rows) == set(FAST)
    assert rows["kl-loss:full"]["verdict"] == "not checked"
    assert rows["adv:opo"]["verdict"] == "biased" and rows["adv:opo"]["cause"]
    assert all(r["version"] == payload["version"] for r in rows.values())
    # the same matrix as expectation: exit 0, biased and not-checked rows included
    expect = tmp_path / "expect.json"
    expect.write_text(json.dumps(payload))
    assert main(["audit", "verl", "--jobs", "1", "--expect", str(expect), *only]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith(f"verl {payload['version']}: 3 configurations")
    # a changed verdict fails, naming it
    expect.write_text(json.dumps({**{n: r["verdict"] for n, r in rows.items()}, "adv:opo": "unbiased"}))
    assert main(["audit", "verl", "--jobs", "1", "--expect", str(expect), *only]) == 1
    assert "adv:opo: biased, expected unbiased" in capsys.readouterr().err
    # only biased rows, everything checked: exit 0 without --expect
    assert main(["audit", "verl", "--jobs", "1", "--only", "adv:opo"]) == 0
    assert main(["audit", "verl", "--only", "nosuch"]) == 2
