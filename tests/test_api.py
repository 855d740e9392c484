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
