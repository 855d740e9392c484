"""impl.dynamics: the trajectories the convergence claims are checked on."""

from __future__ import annotations

import numpy as np
import pytest

from impl import (
    InvalidArgument,
    amplification_trajectory,
    imitation_trajectory,
    rl_trajectory,
    sampled_amplification_trajectory,
    sampled_imitation_trajectory,
    sampled_rl_trajectory,
    smooth_step_size,
)

MONOTONE_SLACK = 1e-12
"""J may dip by round-off only."""


def test_rl_trajectory_is_monotone_and_approaches_xstar() -> None:
    s = np.array([0.2, 1.0, 0.5, 0.9])
    tr = rl_trajectory(np.zeros(4), s, step_size=smooth_step_size(s), steps=2000)
    j = tr.objective(s)
    assert np.all(np.diff(j) >= -MONOTONE_SLACK)
    assert tr.probs[-1, 1] > 0.95


def test_rl_trajectory_step_is_the_exact_gradient() -> None:
    tr = rl_trajectory([0.0, 0.0], [0.0, 1.0], step_size=0.5, steps=1)
    np.testing.assert_allclose(tr.logits[1], [-0.125, 0.125])


def test_imitation_converges_to_stochastic_target() -> None:
    q = np.array([0.2, 0.3, 0.5])
    tr = imitation_trajectory([3.0, -2.0, 0.0], q, step_size=1.0, steps=500)
    np.testing.assert_allclose(tr.probs[-1], q, atol=1e-6)


def test_amplification_mass_follows_the_recursion() -> None:
    p = amplification_trajectory([0.7, 0.2, 0.1], [0.0, 0.5, 1.0], 3, steps=6)
    a = 0.1
    for t in range(1, 7):
        a = 1 - (1 - a) ** 3
        assert p[t, 2] == pytest.approx(a, abs=1e-12)


def test_sampled_versions_are_reproducible_from_the_seed() -> None:
    kw = {"step_size": 0.3, "steps": 20, "group_size": 3, "batch": 2}
    a = sampled_rl_trajectory([0.0, 0.0, 0.0], [0.0, 1.0, 2.0], rng=np.random.default_rng(5), **kw)
    b = sampled_rl_trajectory([0.0, 0.0, 0.0], [0.0, 1.0, 2.0], rng=np.random.default_rng(5), **kw)
    np.testing.assert_array_equal(a.logits, b.logits)
    c = sampled_imitation_trajectory([0.0, 0.0], [0.5, 0.5], step_size=0.1, steps=5, batch=3,
                                     rng=np.random.default_rng(1))
    assert c.probs.shape == (6, 2)
    d = sampled_amplification_trajectory([0.5, 0.5], [1.0, 0.0], 2, steps=3, demos=50,
                                         rng=np.random.default_rng(1))
    assert d.shape == (4, 2) and np.allclose(d.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: rl_trajectory([0.0, 0.0], [0.0, 1.0], step_size=0.0, steps=3), "step_size"),
        (lambda: rl_trajectory([0.0, 0.0], [0.0, 1.0], step_size=np.inf, steps=3), "step_size"),
        (lambda: rl_trajectory([0.0, 0.0], [0.0, 1.0], step_size=0.1, steps=-1), ">= 0"),
        (lambda: imitation_trajectory([0.0, 0.0], [0.5, 0.2], step_size=0.1, steps=3), "summing to 1"),
        (lambda: sampled_rl_trajectory([0.0, 0.0], [0.0, 1.0], step_size=0.1, steps=3, group_size=2,
                                       rng=0), "Generator"),  # type: ignore[arg-type]
    ],
)
def test_dynamics_bad_arguments(call: object, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        call()  # type: ignore[operator]


def test_constant_scores_have_infinite_safe_step() -> None:
    assert smooth_step_size([2.0, 2.0]) == float("inf")
