"""Quality tier for the estimator checker: every catalogue entry gets its verdict.

The checker must *reject* every planted wrong estimator of :mod:`impl.catalogue` and
*accept* every correct one, through both the batched and the per-group path; the
``must fail`` tests assert that :func:`properties.assert_unbiased` raises on each buggy
entry (a test that passes only because the checker fails loudly).
"""

from __future__ import annotations

import numpy as np
import pytest

from impl.catalogue import CATALOGUE, CatalogueEntry, per_group
from properties.onestep.checker import EstimatorCheckFailure, assert_unbiased, check_estimator

pytestmark = pytest.mark.quality

QUALITY_MAX_EXAMPLES = 100
"""Generated problems per entry (the checker's default)."""

PER_GROUP_MAX_EXAMPLES = 20
"""Fewer for the per-group path: a Python call per group; the battery still runs in full."""

SCALE_RTOL = 1e-9
"""Measured c_k against the catalogue's closed form (the measurement is good to ~1e-13)."""


def _group_sizes(entry: CatalogueEntry) -> tuple[int, ...]:
    """``min_k..4``: k = 1 is checked wherever the entry is defined there."""
    return tuple(range(entry.min_k, 5))


def _assert_verdict(entry: CatalogueEntry, *, batched: bool, max_examples: int, seed: int = 0) -> None:
    fn = entry.fn if batched else per_group(entry.fn)
    report = check_estimator(
        fn, batched=batched, group_sizes=_group_sizes(entry), seed=seed, max_examples=max_examples,
        name=entry.name,
    )
    expected = entry.expected if batched else entry.expected_per_group
    assert report.verdict == expected, (
        f"catalogue entry {entry.name!r} ({entry.description}) should be {expected!r}:\n"
        f"{report.message}"
    )
    if entry.roundoff is not None:  # biased by round-off only: the report must say so
        cex = report.counterexample
        assert cex is not None and cex.roundoff is not None, report.message
        assert (cex.roundoff.dtype, cex.roundoff.verdict) == entry.roundoff, report.message
        assert "Round-off?" in report.message
    if expected == "scaled":
        assert entry.scale is not None and report.scale is not None
        for k, c in report.scale.items():
            np.testing.assert_allclose(
                c, entry.scale(k), rtol=SCALE_RTOL, atol=0.0,
                err_msg=f"{entry.name}: c_{k} measured {c!r}, expected {entry.scale(k)!r}",
            )


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.name)
def test_batched_verdict_matches_the_catalogue(entry: CatalogueEntry) -> None:
    _assert_verdict(entry, batched=True, max_examples=QUALITY_MAX_EXAMPLES)


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.name)
def test_per_group_verdict_matches_the_catalogue(entry: CatalogueEntry) -> None:
    _assert_verdict(entry, batched=False, max_examples=PER_GROUP_MAX_EXAMPLES)


@pytest.mark.parametrize(
    "entry", [e for e in CATALOGUE if e.expected != "unbiased"], ids=lambda e: e.name
)
def test_assert_unbiased_must_fail_on_every_wrong_estimator(entry: CatalogueEntry) -> None:
    with pytest.raises(EstimatorCheckFailure) as info:
        assert_unbiased(entry.fn, batched=True, group_sizes=_group_sizes(entry), max_examples=20)
    assert entry.expected.upper() in str(info.value) or entry.expected == "error"


def test_no_round_off_note_on_real_biases_that_exceed_float32() -> None:
    """The round-off note must not excuse a bias well beyond float32 round-off."""
    for name in ("negated-reinforce", "grpo-std-normalised", "top5-truncated-softmax"):
        entry = next(e for e in CATALOGUE if e.name == name)
        report = check_estimator(entry.fn, batched=True, group_sizes=_group_sizes(entry),
                                 max_examples=QUALITY_MAX_EXAMPLES)
        assert report.verdict == "biased" and report.counterexample is not None
        note = report.counterexample.roundoff
        assert note is None or note.dtype != "float32", report.message


def test_catalogue_is_large_enough_to_mean_something() -> None:
    verdicts = [e.expected for e in CATALOGUE]
    assert len(CATALOGUE) >= 60
    assert all(verdicts.count(v) >= 3 for v in ("unbiased", "scaled", "biased", "error"))


FALSE_ALARM_SEEDS = range(1, 21)
"""Seeds for the false-alarm count (seed 0 is the test above): 20 seeds x every correct entry."""


@pytest.mark.slow
@pytest.mark.parametrize("seed", FALSE_ALARM_SEEDS)
def test_no_false_alarms_on_correct_entries_over_seeds(seed: int) -> None:
    for entry in CATALOGUE:
        if entry.expected in ("unbiased", "scaled"):
            _assert_verdict(entry, batched=True, max_examples=QUALITY_MAX_EXAMPLES, seed=seed)
        if entry.roundoff is not None:  # the round-off entries: same false-alarm question
            _assert_verdict(entry, batched=True, max_examples=QUALITY_MAX_EXAMPLES, seed=seed)
