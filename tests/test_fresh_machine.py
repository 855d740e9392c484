"""The README's Quickstart on a fresh machine: what it installs, and what runs without torch.

CI runs ``.ci/run`` in a fresh clone; the README's test command must be all it needs of pip,
and the suite must collect (skipping the torch tier with its reason) where PyTorch is missing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCK_TORCH = '''
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name="torch")
        return None
sys.meta_path.insert(0, _NoTorch())
'''
"""A ``sitecustomize`` that makes ``import torch`` fail as it does where torch is not installed."""


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quickstart\n\n```bash\n(.*?)```", text, flags=re.S)
    assert block is not None, "the README has no Quickstart block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_quickstart_is_two_commands_and_ci_runs_the_test_one_verbatim() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    test_command = commands[1]
    assert "'.[test]'" in test_command and "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text()
    code = [line for line in ci.splitlines() if not line.lstrip().startswith("#")]
    assert any(test_command in line for line in code), "CI does not run the README's test command"
    pip_lines = [line for line in code if "pip " in line or "pip3 " in line]
    assert all(test_command in line for line in pip_lines), f"CI installs more than the README: {pip_lines}"


def _extra(name: str) -> list[str]:
    """The requirements of one extra of pyproject.toml, as written."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(rf"^{name} = \[(.*?)^\]", text, flags=re.S | re.M)
    assert block is not None, f"pyproject.toml has no {name} extra"
    return re.findall(r'"([^"]+)"', block.group(1))


def test_the_test_extra_installs_what_the_tiers_need() -> None:
    requirements = _extra("test")
    names = {re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0].lower() for req in requirements}
    assert {"pytest", "pytest-xdist", "torch", "matplotlib", "ruff", "mypy"} <= names


@pytest.mark.parametrize("library", ["verl", "trl"])
def test_the_test_extra_installs_the_audited_library_at_the_pin_of_its_extra(library: str) -> None:
    """``ida-verify audit LIB`` is tested against the real package in CI (issue 17): the test
    extra installs it, pinned exactly, at the version the user extra ``[LIB]`` pins."""
    pinned = [r for r in _extra("test") if re.match(rf"{library}\s*==", r)]
    assert len(pinned) == 1, f"the test extra does not pin {library} exactly: {_extra('test')}"
    assert pinned[0] in _extra(library), f"{pinned[0]} is not the pin of the [{library}] extra"


@pytest.mark.slow
def test_without_torch_the_suite_collects_and_the_torch_tier_is_skipped_with_its_reason(
    tmp_path: Path,
) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=600,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "errors during collection" not in out and "error during collection" not in out
    assert "torch_loss.py: PyTorch is not installed" in out
    assert "the library corpus needs PyTorch" in out
