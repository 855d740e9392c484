"""CLAIMS.md is generated from the registry, and the project refers to nothing outside itself.

Budget: about 3 s (it builds the document twice and imports every family module).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import spec
from properties.claims import CLAIM_CHECKS, claims_markdown
from properties.claims._markdown import REGENERATE
from properties.cli import main

ROOT = Path(__file__).resolve().parents[1]
CLAIMS_MD = ROOT / "CLAIMS.md"

SKIP_DIRS = {".git", ".venv", "venv", "build", "dist", "__pycache__", ".hypothesis",
             ".mypy_cache", ".ruff_cache", ".pytest_cache", ".venv-mut", "mutants"}
"""Directories that are not part of the project's sources (caches, environments, builds, and
the mutation run's venv and mutated copies, both made by ``benchmarks/mutation.sh``)."""

OUTSIDE = re.compile(r"(?<![./\w])\.\./|(?<![\w.~])/(?:work|home|root|Users|shared)/")
"""A reference that climbs out of the repository (a parent-directory path) or into a machine's
own folders (a home, a shared work area)."""


def _project_files() -> list[Path]:
    out = []
    for path in ROOT.rglob("*"):
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in path.relative_to(ROOT).parts):
            continue
        if path.is_file() and path.suffix in {".py", ".md", ".toml", ".cfg", ".ini", ".txt"}:
            out.append(path)
    return out


def test_committed_claims_md_is_the_generated_text() -> None:
    assert CLAIMS_MD.read_bytes().decode("utf-8") == claims_markdown(), (
        f"CLAIMS.md differs from the registry; regenerate it with `{REGENERATE}`"
    )


def test_the_command_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["claims", "--markdown"]) == 0
    assert capsys.readouterr().out == claims_markdown()


@pytest.mark.parametrize("argv", [["claims", "--markdown", "reinforce-unbiased"],
                                  ["claims", "--markdown", "--json"]])
def test_markdown_takes_no_claim_and_no_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("ida-verify claims")


def test_every_claim_has_a_section_with_its_verdict_and_modules() -> None:
    text = claims_markdown()
    families = spec.claims.FAMILIES
    for claim in spec.CLAIMS.values():
        section = text.split(f"## `{claim.id}`\n", 1)[1].split("\n## ", 1)[0]
        assert f"**Expected verdict.** {claim.expected}\n" in section
        assert f"`spec/claims/{families[claim.id]}.py`" in section
        assert f"* properties: `properties/claims/{families[claim.id]}.py`" in section
        for field in (claim.meaning, claim.parameterisation, claim.ties):
            assert field and field.replace("*", r"\*") in section, (claim.id, field)


def test_every_claim_states_its_parameterisation_ties_and_meaning() -> None:
    for claim in spec.CLAIMS.values():
        assert claim.parameterisation and claim.ties and claim.meaning, claim.id


def test_every_path_and_name_in_claims_md_exists() -> None:
    text = CLAIMS_MD.read_text(encoding="utf-8")
    paths = set(re.findall(r"`([\w/]+\.py)`", text))
    assert len(paths) > 10
    for rel in paths:
        assert (ROOT / rel).is_file(), rel
    # "`module.py`: `name`, `name`" and "`module.py`, `name`": every name is in that module
    for rel, names in re.findall(r"`([\w/]+\.py)`[:,] ((?:`\w+`(?:, )?)+)", text):
        module = importlib.import_module(rel[: -len(".py")].replace("/", "."))
        for name in re.findall(r"`(\w+)`", names):
            assert hasattr(module, name), f"{rel} has no {name}"


def test_the_implementation_of_every_claim_is_listed() -> None:
    text = CLAIMS_MD.read_text(encoding="utf-8")
    for check in CLAIM_CHECKS:
        for fn in check.implementation:
            assert f"`{fn.__name__}`" in text, (check.id, fn)


def test_the_project_refers_to_nothing_outside_the_repository() -> None:
    files = _project_files()
    assert ROOT / "README.md" in files and CLAIMS_MD in files and Path(__file__).resolve() in files
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, "\n".join(hits)


def _joined(*parts: str) -> str:
    return "/".join(parts)  # built here, so that this file does not contain what it looks for


@pytest.mark.parametrize(
    "line",
    [
        f"see `{_joined('..', 'shared', 'CLAIMS.md')}`",
        f'Path("{_joined("", "work", "shared", "CLAIMS.md")}")',
        f"open('{_joined('', 'home', 'me', 'notes.txt')}')",
    ],
)
def test_outside_references_are_recognised(line: str) -> None:
    assert OUTSIDE.search(line)


@pytest.mark.parametrize("line", ["pip install torch --index-url .../cpu", "spec/claims/rl.py", "a/b"])
def test_paths_inside_the_repository_are_not_flagged(line: str) -> None:
    assert not OUTSIDE.search(line)
