"""The command line: --help, --version, and bad usage (exit 2, one line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from properties import __version__
from properties.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"ida-verify {__version__}"


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("claims", "prove", "check"):
        assert command in out


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["--no-such-flag"], ["claims", "--max-examples", "many"]],
)
def test_bad_usage_exits_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ida-verify"), captured.err


def test_console_script_module_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "properties.cli", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and __version__ in result.stdout


def test_bad_usage_under_python_dash_m_is_one_line_exit_2() -> None:
    """Under ``python -m properties.cli`` the module is __main__; UsageError must still be caught."""
    result = subprocess.run(
        [sys.executable, "-m", "properties.cli", "check", "no_such_file.py:f"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_installed_console_script_runs_the_main_job() -> None:
    """The Quickstart's main job, through the installed ``ida-verify`` entry point."""
    script = Path(sys.executable).parent / "ida-verify"
    assert script.exists(), f"ida-verify is not installed beside {sys.executable}: pip install ."
    result = subprocess.run(
        [str(script), "claims", "--max-examples", "3", "self-inclusive-baseline-scales"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1/1 claims have their expected verdict" in result.stdout


# --------------------------------------------------------------------------- issue 15: options


ESTIMATORS = '''
import numpy as np

def reinforce(logits, samples, rewards):
    p = np.exp(logits - logits.max())
    p /= p.sum()
    g = np.zeros_like(logits)
    for s, r in zip(samples, rewards):
        e = -p.copy()
        e[s] += 1.0
        g += r * e
    return g / len(samples)

def loss(batch):
    return -(batch.rewards * (batch.log_probs * batch.mask).sum(-1)).mean()

def weights(rewards, mask, log_probs):
    return rewards[..., None] * mask / rewards.shape[-1]
'''

QUICK = ["--group-sizes", "2", "--max-examples", "1"]


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "user_estimators.py"
    path.write_text(ESTIMATORS)
    return path


def _usage_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``main(argv)``, assert bad usage (exit 2, nothing on stdout, one line), return the line."""
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 2, captured.out + captured.err
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ida-verify check: "), captured.err
    return lines[0]


@pytest.mark.parametrize(
    "extra",
    [["--kl-coef", "0.5"], ["--off-policy"], ["--vocab-size", "4"], ["--max-len", "2"]],
)
def test_a_sequence_option_without_sequence_is_bad_usage(
    user_file: Path, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to be ignored and the one-step check passed (exit 0): a false pass for --kl-coef."""
    line = _usage_line(["check", f"{user_file}:reinforce", *extra, *QUICK], capsys)
    assert extra[0] in line and "--sequence" in line


def test_batched_with_a_sequence_loss_is_bad_usage(
    user_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--batched only shapes one-step and --weights arrays; with --sequence alone it was ignored."""
    line = _usage_line(["check", f"{user_file}:loss", "--sequence", "--batched", *QUICK], capsys)
    assert "--batched" in line


def test_a_sequence_loss_without_sequence_asks_did_you_mean(
    user_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to be "ERROR (raised) TypeError ... at properties/cli/isolation.py"."""
    line = _usage_line(["check", f"{user_file}:loss", *QUICK], capsys)
    assert "did you mean --sequence?" in line and "isolation.py" not in line


def test_token_weights_under_sequence_asks_did_you_mean_weights(
    user_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")  # --sequence refuses to start without PyTorch
    line = _usage_line(["check", f"{user_file}:weights", "--sequence", *QUICK], capsys)
    assert "did you mean --weights?" in line


def test_a_sequence_loss_under_weights_asks_did_you_mean_sequence(
    user_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _usage_line(["check", f"{user_file}:loss", "--weights", *QUICK], capsys)
    assert "did you mean --sequence without --weights?" in line


def test_a_misspelt_function_gets_a_suggestion(
    user_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _usage_line(["check", f"{user_file}:reinforse", *QUICK], capsys)
    assert "did you mean 'reinforce'?" in line


def test_a_misspelt_catalogue_name_names_no_python_parameter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It used to say "No catalogue entry name='reinforc' (type=str); close names: [...]"."""
    line = _usage_line(["check", "catalogue:reinforc", *QUICK], capsys)
    assert "name=" not in line and "type=str" not in line
    assert "did you mean 'reinforce'" in line


def test_module_colon_func_finds_a_module_in_the_current_directory(user_file: Path) -> None:
    """Through the installed console script, whose sys.path starts with its bin directory."""
    script = Path(sys.executable).parent / "ida-verify"
    result = subprocess.run(
        [str(script), "check", "user_estimators:reinforce", *QUICK],
        capture_output=True,
        text=True,
        check=False,
        cwd=user_file.parent,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Estimator 'reinforce' is UNBIASED")


def test_max_examples_defaults_follow_the_api(user_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One-step: check_estimator's default; --weights/--sequence: the sequence checker's (was 100)."""
    from properties.onestep.checker import DEFAULT_MAX_EXAMPLES as ONESTEP
    from properties.sequence.checker import DEFAULT_MAX_EXAMPLES as SEQUENCE

    assert ONESTEP != SEQUENCE  # otherwise this test checks nothing
    fast = ["--group-sizes", "2", "--max-len", "1", "--vocab-size", "2", "--json"]
    assert main(["check", f"{user_file}:weights", "--weights", "--batched", *fast]) == 0
    assert json.loads(capsys.readouterr().out)["max_examples"] == SEQUENCE
    assert main(["check", f"{user_file}:reinforce", "--group-sizes", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_examples"] == ONESTEP


def test_help_states_both_max_examples_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from properties.onestep.checker import DEFAULT_MAX_EXAMPLES as ONESTEP
    from properties.sequence.checker import DEFAULT_MAX_EXAMPLES as SEQUENCE

    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"default {ONESTEP}, and {SEQUENCE} with --sequence or --weights" in text


def test_weights_that_fit_no_shape_are_bad_usage(
    user_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to be "ERROR (imprecise): it no shape fits the batch budget" (exit 1)."""
    argv = ["check", f"{user_file}:weights", "--weights", "--group-sizes", "9", "--max-examples", "1"]
    line = _usage_line(argv, capsys)
    assert "fits no shape" in line and "--group-sizes 9" in line


def test_weights_api_that_fit_no_shape_raise_invalid_argument() -> None:
    from impl.errors import InvalidArgument
    from properties import check_token_weights

    def weights(rewards: Any, mask: Any, log_probs: Any) -> Any:
        return rewards[..., None] * mask / rewards.shape[-1]

    with pytest.raises(InvalidArgument, match="batch budget"):
        check_token_weights(weights, group_sizes=(12,), num_prompts=(2,), batched=True)


TORCH_BLOCKER = "import sys\nsys.modules['torch'] = None  # as if PyTorch were not installed\n"


def test_sequence_without_pytorch_is_one_line_naming_the_extra(
    user_file: Path, tmp_path: Path
) -> None:
    """It used to be "internal error ... a bug in ida-verify: please report it" (exit 1)."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(TORCH_BLOCKER)
    path = os.pathsep.join([str(blocker), *(p for p in sys.path if p)])
    result = subprocess.run(
        [sys.executable, "-m", "properties.cli", "check", f"{user_file}:loss", "--sequence", *QUICK],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PyTorch" in lines[0], result.stderr
    assert TORCH_INSTALL in lines[0] and "bug in ida-verify" not in lines[0]


def test_sequence_api_without_pytorch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from impl.errors import InvalidArgument
    from properties import check_sequence_loss

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(InvalidArgument) as exc:
        check_sequence_loss(lambda batch: batch, group_sizes=(2,))
    assert TORCH_INSTALL in str(exc.value)


TORCH_INSTALL = "pip install 'ida-verify[torch]' (from a clone: pip install '.[torch]')"


REPORT_INSTALL = "pip install 'ida-verify[report]' (from a clone: pip install '.[report]')"


def test_install_hints_have_the_readme_wording(monkeypatch: pytest.MonkeyPatch) -> None:
    """The matplotlib hint said only 'ida-verify[report]', the README only '.[report]'."""
    from properties.cli.check_sequence import TORCH_HINT
    from properties.report.figures import ReportUnavailable, require_matplotlib

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ReportUnavailable) as exc:
        require_matplotlib()
    assert REPORT_INSTALL in str(exc.value)
    assert TORCH_HINT == TORCH_INSTALL
    for extra in ("report", "torch"):
        assert f"pip install 'ida-verify[{extra}]'" in readme
        assert f"(from a clone: pip install '.[{extra}]')" in readme


@pytest.mark.parametrize("command", ["report --out", "check catalogue:reinforce --report"])
@pytest.mark.parametrize("occupant", ["file", "directory"])
def test_an_out_dir_refusal_names_the_option(
    command: str, occupant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to name the Python parameter: "out_dir='...' (type=str)"."""
    pytest.importorskip("matplotlib")
    target = tmp_path / "taken"
    if occupant == "file":
        target.write_text("not a report")
    else:
        target.mkdir()
        (target / "notes.txt").write_text("someone's notes")
    assert main([*command.split(), str(target)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1, captured.err
    option = command.split()[-1]
    assert lines[0].startswith(f"ida-verify {command.split()[0]}: {option} ")
    assert "out_dir=" not in lines[0] and "type=str" not in lines[0]
    assert target.exists()  # nothing was replaced


LEAVE_ONE_OUT = '''
import numpy as np

def rloo(logits, samples, rewards):
    p = np.exp(logits - logits.max())
    p /= p.sum()
    k = len(samples)
    baseline = (rewards.sum() - rewards) / (k - 1)
    g = np.zeros_like(logits)
    for s, a in zip(samples, rewards - baseline):
        e = -p.copy()
        e[s] += 1.0
        g += a * e
    return g / k
'''


@pytest.mark.parametrize("target", ["file", "catalogue:rloo-unguarded"])
def test_leave_one_out_at_k_1_gets_a_hint(
    target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The non-finite error at k = 1 stays an error, now with the reason (it had no hint)."""
    if target == "file":
        path = tmp_path / "loo.py"
        path.write_text(LEAVE_ONE_OUT)
        target = f"{path}:rloo"
    with np.errstate(all="ignore"):
        status = main(["check", target, "--group-sizes", "1,2", "--max-examples", "1"])
    out = capsys.readouterr().out
    assert status == 1 and "ERROR (non-finite)" in out
    assert "Hint: " in out and "leave-one-out needs k >= 2" in out


def test_non_finite_at_k_2_gets_no_leave_one_out_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "catalogue:rloo-unguarded", "--group-sizes", "2", "--max-examples", "1"]) == 0
    assert "leave-one-out" not in capsys.readouterr().out


@pytest.mark.parametrize("name", ["reinforce", "group-mean-baseline"])
def test_check_report_caption_names_only_the_bars_drawn(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The caption spoke of grey bars also where none are drawn (c_k = 1: unbiased)."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "page"
    main(["check", f"catalogue:{name}", "--group-sizes", "2,3", "--max-examples", "1", "--report", str(out)])
    capsys.readouterr()
    panels = json.loads((out / "check.json").read_text(encoding="utf-8"))["panels"]
    grey_drawn = any(not np.isclose(p["multiple"], 1.0) for p in panels)
    assert grey_drawn == (name != "reinforce")  # the two cases this test is about
    caption = (out / "index.html").read_text(encoding="utf-8").split("<figcaption>", 1)[1]
    caption = caption.split("</figcaption>", 1)[0]
    assert ("grey" in caption) == grey_drawn, caption


def test_a_one_step_estimator_under_weights_asks_did_you_mean(
    user_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both protocols take three arrays; it used to be "ERROR (raised): IndexError ..."."""
    line = _usage_line(["check", f"{user_file}:reinforce", "--weights", *QUICK], capsys)
    assert "without --weights?" in line


def test_token_weights_without_weights_ask_did_you_mean(
    user_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _usage_line(["check", f"{user_file}:weights", *QUICK], capsys)
    assert "did you mean --weights?" in line


def test_a_catalogue_entry_below_its_min_k_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """rloo is defined for k >= 2; --group-sizes 1 used to blame it ("ERROR (raised)", exit 1)."""
    line = _usage_line(["check", "catalogue:rloo", "--group-sizes", "1,2", "--max-examples", "1"], capsys)
    assert "k >= 2" in line and "--group-sizes" in line


def test_catalogue_with_weights_names_the_option_given(capsys: pytest.CaptureFixture[str]) -> None:
    line = _usage_line(["check", "catalogue:rloo", "--weights"], capsys)
    assert line.endswith("drop --weights")


POOLED_LEAVE_ONE_OUT = '''
import numpy as np

def rloo(logits, samples, rewards, group):
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g = -p * 0.0
    for j in range(len(samples)):
        mine = group == group[j]
        baseline = (rewards[mine].sum() - rewards[j]) / (mine.sum() - 1)
        e = -p[j].copy()
        e[samples[j]] += 1.0
        g[j] = (rewards[j] - baseline) * e / mine.sum()
    return g
'''


def test_pooled_leave_one_out_at_k_1_gets_the_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pooled_loo.py"
    path.write_text(POOLED_LEAVE_ONE_OUT)
    with np.errstate(all="ignore"):
        status = main(["check", f"{path}:rloo", "--num-prompts", "1,2", "--group-sizes", "1,2", "--max-examples", "1"])
    out = capsys.readouterr().out
    assert status == 1 and "ERROR (non-finite)" in out and "leave-one-out needs k >= 2" in out


@pytest.mark.parametrize("extra", [["--seed", str(2**70)], ["--max-examples", str(10**7)]])
def test_sequence_limits_are_bad_usage_naming_the_option(
    user_file: Path, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """They used to be an internal error ("a bug in ida-verify") naming seed=... (type=int)."""
    line = _usage_line(["check", f"{user_file}:weights", "--weights", *extra], capsys)
    assert line.startswith(f"ida-verify check: {extra[0]} ") and "type=int" not in line


HOSTILE_SIGNATURE = '''
import sys

class Loss:
    @property
    def __signature__(self):
        sys.exit(3)

    def __call__(self, batch):
        return 0.0

loss = Loss()
'''


def test_a_signature_that_exits_is_left_to_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Reading the signature must not turn user code's sys.exit into an internal error."""
    path = tmp_path / "hostile_signature.py"
    path.write_text(HOSTILE_SIGNATURE)
    status = main(["check", f"{path}:loss", *QUICK])
    out = capsys.readouterr().out
    assert status == 1 and "ERROR" in out and "internal" not in out and "bug in ida-verify" not in out
