"""The torch tier skips cleanly, with one line, where PyTorch is not installed.

``pip install '.[test]'`` installs PyTorch, so the README's test command runs the whole
suite.  Where torch is missing all the same (a bare ``pip install .`` and ``pytest``), the
modules that need it at import (``properties/sequence/torch_loss.py`` and the library corpus,
collected as doctest modules) are reported as skipped with the reason, instead of stopping
collection with an ``ImportError``; the test modules of the torch tier skip themselves
(``pytest.importorskip``).  Only a missing ``torch`` is turned into a skip: any other import
error still fails collection.  This file lives at the top because pytest applies a
``conftest.py`` only below its own folder, and the doctests of ``properties/`` are collected
too.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest


def _have_torch() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except ModuleNotFoundError:
        return False


HAVE_TORCH = _have_torch()

TORCH_MISSING = "PyTorch is not installed (pip install '.[test]' installs it): the torch tier is skipped"


def _skip_if_torch_is_missing(collector: Any) -> Any:
    collect = collector.collect

    def collect_or_skip() -> Iterator[Any]:
        try:
            yield from collect()
        except (ModuleNotFoundError, pytest.Collector.CollectError) as exc:
            # pytest reports a failed import as a CollectError raised from the ImportError
            cause = exc if isinstance(exc, ModuleNotFoundError) else exc.__cause__
            if not isinstance(cause, ModuleNotFoundError) or cause.name != "torch":
                raise
            pytest.skip(f"{collector.path.name}: {TORCH_MISSING}")

    collector.collect = collect_or_skip
    return collector


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Any, parent: Any) -> Any:
    collectors = yield
    if HAVE_TORCH or collectors is None:
        return collectors
    return [_skip_if_torch_is_missing(c) for c in collectors]


def pytest_report_header(config: pytest.Config) -> str | None:
    return None if HAVE_TORCH else TORCH_MISSING
