"""``ida-verify audit trl``: TRL's own ``GRPOTrainer._compute_loss`` judged per configuration.

The tests that need TRL run against the real installed package (trl 1.16.0), on small shapes
(``k`` 2 or 3, ``V = 2``, ``T <= 2``, one Hypothesis problem after the battery) so that the
file stays fast; the whole matrix at the audit's shapes is ``benchmarks/bench_audit.py trl``.
Where TRL cannot be imported they fail if the ``test`` extra installs it (a broken install
must not pass silently), and skip with one line otherwise (TRL is the optional ``[trl]``
extra; see pyproject.toml).
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from audit_extras import in_test_extra  # tests/audit_extras.py (verl ships "tests")

from properties.audit import core
from properties.audit.core import AuditRow, Configuration, run_configuration
from properties.cli import main

ROOT = Path(__file__).resolve().parents[1]

SMALL = {"group_sizes": (2, 3), "vocab_size": 2, "max_len": 2, "max_examples": 1, "seed": 0}
"""Checker settings of these tests: small shapes, every ``k`` the closed forms need to tell apart."""

SMALL_SPLIT = (2,)
"""Group sizes of the ``M = 2`` rows: one prompt of ``k = 2`` splits into two one-row micro-batches."""


def _trl_in_test_extra(text: str | None = None) -> bool:
    """Whether pyproject's ``test`` extra names trl (or the ``trl`` extra)."""
    return in_test_extra("trl", text)


def _import_trl() -> Any:
    try:
        from trl.trainer import grpo_trainer
    except ImportError as exc:
        if _trl_in_test_extra():
            pytest.fail(f"the test extra installs trl but it does not import: {exc}")
        pytest.skip("trl is not installed (pip install '.[trl]' runs the TRL audit tests)")
    return grpo_trainer


@pytest.fixture(scope="module")
def grpo_trainer() -> Any:
    pytest.importorskip("torch")
    return _import_trl()


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch, grpo_trainer: Any) -> Any:
    """The TRL module with :data:`SMALL` settings for every row (``M = 2`` rows: ``k = 2``)."""
    from properties.audit import trl as audit_trl

    for name, value in SMALL.items():
        monkeypatch.setitem(core.AUDIT_SETTINGS, name, value)
        monkeypatch.setitem(audit_trl.SETTINGS, name, value)
    monkeypatch.setattr(audit_trl, "ACCUM_GROUP_SIZES", SMALL_SPLIT)
    return audit_trl


def _row(audit_trl: Any, name: str) -> AuditRow:
    config = next(c for c in audit_trl.configurations() if c.name == name)
    return run_configuration(config, audit_trl.version())


# --------------------------------------------------------------------- without trl


def test_missing_trl_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from properties.audit import trl as audit_trl

    def missing() -> str:
        raise ImportError("No module named 'trl'")

    monkeypatch.setattr(audit_trl, "version", missing)
    assert main(["audit", "trl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'ida-verify[trl]'" in err


def test_a_missing_trl_fails_when_the_test_extra_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _trl_in_test_extra()  # the test extra installs trl: CI runs these tests for real
    assert _trl_in_test_extra('test = [\n    "pytest>=7.4",\n    "trl==1.16.0",\n]\n')
    assert _trl_in_test_extra('test = [\n    "ida-verify[verl,trl]",\n]\n')
    monkeypatch.setitem(sys.modules, "trl", None)  # import trl now raises ImportError
    monkeypatch.setitem(sys.modules, "trl.trainer", None)
    monkeypatch.setattr(sys.modules[__name__], "_trl_in_test_extra", lambda text=None: True)
    with pytest.raises(pytest.fail.Exception, match="does not import"):
        _import_trl()
    monkeypatch.setattr(sys.modules[__name__], "_trl_in_test_extra", lambda text=None: False)
    with pytest.raises(pytest.skip.Exception, match=r"pip install '\.\[trl\]'"):
        _import_trl()


def test_a_configuration_chooses_its_checker_and_a_bad_choice_is_an_error_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from properties.audit import verl as audit_verl

    def build(config: Configuration) -> Any:
        return (lambda batch: None), {"checker": "nonsense"}

    monkeypatch.setattr(audit_verl, "build", build)
    row = run_configuration(Configuration("verl", "x", ()), "v")
    assert row.verdict == "error" and "unknown checker 'nonsense'" in row.cause


# --------------------------------------------------------------------- the space, from trl


def test_space_is_read_from_trl(grpo_trainer: Any) -> None:
    from properties.audit import trl as audit_trl

    source = Path(grpo_trainer.__file__).read_text()
    loss_types = audit_trl.loss_types()
    assert loss_types[0] == audit_trl.BASE["loss_type"]
    assert set(loss_types) == {"grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo"}
    for loss in loss_types:
        assert f'"{loss}"' in source
    assert set(audit_trl.scale_rewards_modes()) == {"group", "batch", "none"}
    assert audit_trl.importance_sampling_levels() == ["token", "sequence"]
    names = {c.name: c for c in audit_trl.configurations()}
    assert len(names) == len(audit_trl.configurations())  # no duplicates
    for loss in loss_types:
        assert {f"loss:{loss}", f"loss:{loss} off-policy", f"accum:{loss}"} <= set(names)
    assert names["default"].axis("loss_type") == "dapo"  # GRPOConfig's default, read from the dataclass
    assert names["default"].axis("scale_rewards") == "group"
    assert names["vllm-is:token_mask"].axis("sampling_mismatch") == "yes"
    for config in names.values():  # every checked row builds; every axis is a GRPOConfig field
        if config.not_checked is None:
            fn, kwargs = audit_trl.build(config)
            assert callable(fn) and kwargs["checker"] == "trainer"


# --------------------------------------------------------------------- verdicts

AT_FLOAT32 = "at float32 precision: "
"""How every checked TRL row's cause starts: judged once at TRL's own precision (``PRECISION``)."""


def _judged_at_float32(row: AuditRow) -> None:
    """The row says the precision it was judged at, with the tolerance and why (TRL's kernel)."""
    assert row.precision.startswith("float32: rtol "), row.precision
    assert "ChunkedLogProbFunction" in row.precision and "chunked_logprob.py" in row.precision
    assert row.report is not None and row.report["settings"]["rtol"] == float(row.precision.split()[2].rstrip(","))
    assert "float32" in row.report["run"]["dtypes"]  # the loss was seen computing in float32
    from properties.sequence.run import FLOAT32_EPS, roundoff_tolerance

    sizes = [dict(part.split("=") for part in s["shape"].split(", ")) for s in row.report["run"]["shapes"]]
    positions = max(int(s["k"]) * int(s["P"]) * int(s["T"]) for s in sizes)  # the largest batch evaluated
    assert (row.report["settings"]["rtol"], row.report["settings"]["atol"]) == roundoff_tolerance(
        FLOAT32_EPS, positions
    )
    assert row.report.get("counterexample") is None or row.report["counterexample"].get("roundoff") is None


def test_precision_is_one_dtype_or_rtol() -> None:
    from impl.errors import InvalidArgument
    from properties.trainer.checker import check_trainer_loss

    with pytest.raises(InvalidArgument, match="precision and rtol"):
        check_trainer_loss(lambda model, inputs: None, precision="float32", rtol=1e-3)
    with pytest.raises(InvalidArgument, match="Expected precision=None or one of"):
        check_trainer_loss(lambda model, inputs: None, precision="float8")


def test_precision_is_the_checkers_roundoff_rule() -> None:
    """The tolerance is the round-off note's rule (32 B T eps32, rounded up; 32 tiny32), not a number."""
    import numpy as np

    from properties.sequence.run import FLOAT32_EPS, roundoff_tolerance

    rtol, atol = core.precision_tolerance("float32", {"group_sizes": (2, 4), "max_len": 2, "checker": "trainer"})
    assert (rtol, atol) == roundoff_tolerance(FLOAT32_EPS, 4 * 2 * 2)
    assert 32 * 16 * FLOAT32_EPS <= rtol < 2 * 32 * 16 * FLOAT32_EPS
    assert atol == 32 * float(np.finfo(np.float32).tiny)
    assert core.precision_tolerance("float32", {"group_sizes": (2, 4), "max_len": 2})[0] < rtol  # P = 1


@pytest.mark.parametrize(("name", "constant"), [("loss:dr_grpo", "c = (k-1)/(kT)"), ("loss:luspo", "c = (k-1)/k")])
def test_scaled_configurations_are_certified_at_float32_with_their_constant(
    small: Any, name: str, constant: str
) -> None:
    """Judged at TRL's float32 precision in one run: scaled, with the closed-form constant."""
    row = _row(small, name)
    assert (row.verdict, row.constant) == ("scaled", constant), row.cause
    assert row.cause.startswith(AT_FLOAT32), row.cause
    _judged_at_float32(row)


def test_a_cell_asked_for_and_not_reached_stays_marked(small: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings asking for more than the looped budget reaches: the row says what it did not check
    (``k = 5, T = 3, P = 1`` is ``4**5 = 1024`` batches at ``V = 2``, over 256)."""
    monkeypatch.setitem(small.SETTINGS, "group_sizes", (2, 5))  # the bias shows at k = 2
    monkeypatch.setitem(small.SETTINGS, "max_len", 3)
    row = _row(small, "loss:grpo")
    assert "k=5, T=3, P=1" in row.unchecked and "not checked: k=5, T=3, P=1" in row.cause, row.cause


def test_length_normalised_loss_is_biased_at_float32(small: Any) -> None:
    row = _row(small, "loss:grpo")
    assert row.verdict == "biased", row.cause
    assert row.cause.startswith(f"{AT_FLOAT32}E[g] is not"), row.cause
    residual = float(re.search(r"off the direction of grad J by ([0-9.e+-]+) \|grad J\|", row.cause).group(1))  # type: ignore[union-attr]
    assert residual > 1e-3  # far above float32 round-off: a real bias stays biased
    _judged_at_float32(row)


def test_reward_scaling_is_biased_beyond_round_off(small: Any) -> None:
    row = _row(small, "scale:group")
    assert row.verdict == "biased"
    # E[g] is along grad J on the counterexample, but its scale is not the reference problem's
    assert row.cause.startswith(f"{AT_FLOAT32}E[g] = ") and "the scale depends on the problem" in row.cause
    assert "round-off" not in row.cause, row.cause


@pytest.mark.parametrize(
    ("name", "verdict"),
    [("accum:dapo", "unbiased"), ("accum:bnpo", "biased")],
)
def test_accumulation_follows_num_items_in_batch(small: Any, name: str, verdict: str) -> None:
    """dapo divides by ``num_items_in_batch`` (the step's tokens): two micro-batches give the step
    of one call.  bnpo divides by the micro-batch's own tokens: they do not."""
    row = _row(small, name)
    assert row.cause.startswith(f"against one call (M=D=1): {AT_FLOAT32}"), row.cause
    assert row.verdict == verdict, row.cause
    _judged_at_float32(row)


@pytest.mark.slow
def test_vllm_importance_sampling_is_checked_with_trls_ratio(small: Any) -> None:
    """The inference engine's responses (``sampling_mismatch``), TRL's ratio re-expressed: the
    sequence-level ratio corrects the mismatch where the cap does not bind, the token-level
    one does not (a product of per-token ratios is the sequence's, not each token's), and a
    cap that binds (``VLLM_CAP``) biases."""
    names = {c.name: c for c in small.configurations()}
    assert all(names[f"vllm-is:{m}"].not_checked is None for m in small.vllm_importance_sampling_modes())
    seq = _row(small, "vllm-is:sequence_mask")
    assert (seq.verdict, seq.constant) == ("scaled", "c = (k-1)/(kT)"), seq.cause
    token = _row(small, "vllm-is:token_truncate")
    assert token.verdict == "biased", token.cause
    capped = _row(small, "vllm-is:sequence_mask cap")  # a cap that binds masks responses: biased
    assert capped.verdict == "biased", capped.cause
    for row in (seq, token, capped):
        _judged_at_float32(row)
        assert row.report is not None and row.report["settings"]["sampling_mismatch"] is True


def test_vllm_ratio_is_trls_lines(grpo_trainer: Any) -> None:
    """The re-expressed ratio reads the same fields and modes as TRL's source."""
    import inspect

    import torch

    from properties.audit import trl as audit_trl

    source = inspect.getsource(grpo_trainer.GRPOTrainer._generate_and_score_completions)
    for line in ("per_token_logps_diff = (old_per_token_logps - sampling_per_token_logps) * mask",
                 "torch.nan_to_num(per_token_logps_diff, nan=0.0)",
                 "per_token_logps_diff.sum(dim=-1, keepdim=True)",
                 "vllm_importance_sampling_ratio.masked_fill("):
        assert line in source
    old = torch.tensor([[-0.1, -2.0], [-0.5, -0.3]], dtype=torch.float64)
    shift = torch.tensor([[0.2, 1.5], [0.1, float("nan")]], dtype=torch.float64)
    inputs = {
        "old_per_token_logps": old,
        "sampling_per_token_logps": old - shift,
        "completion_mask": torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64),
    }
    ratio = {
        m: audit_trl.trl_vllm_importance_sampling_ratio(m, None, 3.0)(inputs)
        for m in audit_trl.vllm_importance_sampling_modes()
    }
    want = torch.tensor([[math.exp(0.2), 3.0], [math.exp(0.1), 1.0]], dtype=torch.float64)
    assert torch.allclose(ratio["token_truncate"], want)  # the NaN difference of a masked token: ratio 1
    assert ratio["token_mask"][0, 1] == 0.0 and ratio["sequence_mask"][0, 0] == 0.0  # e^1.7 > 3
    assert ratio["sequence_truncate"].shape == (2, 1) and ratio["sequence_truncate"][0, 0] == 3.0


# --------------------------------------------------------------------- the command


def test_cli_prints_the_matrix_with_the_version_and_json(
    small: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import trl

    status = main(["audit", "trl", "--only", "scale:batch", "--only", "tools", "--jobs", "1", "--no-group"])
    out = capsys.readouterr().out
    assert status == 1  # a "not checked" row: the audit covered less than TRL offers
    assert out.splitlines()[0] == f"trl {trl.__version__}: 2 configurations"
    judged = r"judged at float32: rtol \S+, atol \S+ \(TRL's fused LM head, ChunkedLogProbFunction"
    assert re.match(judged, out.splitlines()[1])
    assert re.search(r"^scale:batch\s+biased\s", out, re.M)
    assert re.search(r"^tools\s+not checked\s.*multi-turn", out, re.M)
    assert main(["audit", "trl", "--only", "scale:batch", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["library"] == "trl" and payload["version"] == trl.__version__
    [row] = payload["rows"]
    assert (row["name"], row["verdict"], row["version"]) == ("scale:batch", "biased", trl.__version__)
    assert row["axes"]["scale_rewards"] == "batch" and row["axes"]["loss_type"] == "dr_grpo"
    assert row["precision"].startswith("float32: rtol ") and payload["precision"] == [row["precision"]]
    assert row["cause"].startswith("at float32 precision: ")
