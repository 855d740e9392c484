"""Run the oracle's tests with one intra-op torch thread.

The oracle works on tensors of a few dozen elements; on the shared 2-core machine extra
intra-op threads only add synchronisation (measured 10x slower under load).  The previous
setting is restored after each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    try:
        import torch
    except ImportError:  # the torch tests skip themselves
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
