"""Each package's ``__all__`` is exactly its public surface (STYLE item 1)."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = ["impl", "spec", "properties"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    declared = {a for a in module.__all__ if not a.startswith("__")}
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_") and not isinstance(value, types.ModuleType) and attr != "annotations"
    }
    assert declared == public, f"{name}: missing from __all__ {public - declared}, stale {declared - public}"
    assert sorted(module.__all__) == list(module.__all__), f"{name}.__all__ is not sorted"


@pytest.mark.parametrize("name", PACKAGES)
def test_packages_ship_py_typed(name: str) -> None:
    from importlib.resources import files

    assert files(name).joinpath("py.typed").is_file()


def test_pyproject_lists_every_package_and_subpackage() -> None:
    """setuptools installs only the packages it is given: a missing subpackage breaks `pip install .`."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    listed = re.search(r"^packages = \[(.*)\]$", (root / "pyproject.toml").read_text(), flags=re.M)
    assert listed is not None
    declared = set(re.findall(r'"([\w.]+)"', listed.group(1)))
    on_disk = {
        ".".join(init.parent.relative_to(root).parts)
        for name in PACKAGES
        for init in (root / name).rglob("__init__.py")
    }
    assert declared == on_disk
