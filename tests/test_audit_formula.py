"""A scaled row's constant as a formula in k, T, P (issue 17): fitted to the per-key constants
the sequence checker measures, checked on the catalogue's losses whose constants were
derived on paper, and the per-key values where no formula fits."""

from __future__ import annotations

import math
from typing import Any

import pytest

from properties.audit.core import constant_text
from properties.audit.formula import fit_formula

EXPECTED_TEXT: dict[str, str] = {
    "reinforce-sum-over-prompts": "c = P",
    "batch-mean-baseline": "c = (Pk-1)/(kP)",
    "grpo-mean-only": "c = (k-1)/k at P=1",
    "seq-mean-token-sum-norm": "c = k/T at P=1",
    "dr-grpo-verl": "c = (k-1)P/T",
    "dr-grpo-trl": "c = (k-1)/(kT)",
    "kl-k1-in-reward-group-mean": "c = (k-1)/k at P=1",
}
"""How each scaled loss of the catalogue reads (the catalogue's table writes the same forms;
``at P=1`` where its settings check one prompt only)."""


def _scaled_losses() -> list[str]:
    from impl.sequence_catalogue import SEQUENCE_CATALOGUE

    return [e.name for e in SEQUENCE_CATALOGUE if e.expected == "scaled" and e.protocol == "loss"]


def test_every_scaled_loss_of_the_catalogue_has_an_expected_text() -> None:
    pytest.importorskip("torch")
    assert sorted(_scaled_losses()) == sorted(EXPECTED_TEXT)


@pytest.mark.parametrize("name", sorted(EXPECTED_TEXT))
def test_the_formula_of_a_catalogue_loss_is_its_derived_constant(name: str) -> None:
    pytest.importorskip("torch")
    from impl.sequence_catalogue import get
    from properties.sequence.checker import check_sequence_loss

    entry = get(name)
    report: Any = check_sequence_loss(entry.fn, max_examples=0, **entry.settings.checker_kwargs("loss"))
    assert report.verdict == "scaled" and report.scale
    assert all(len(key) == 4 for key in report.scale)  # (k, T, P, V): the field read is .scale
    formula = fit_formula(report.scale)
    assert formula is not None, report.scale
    for key in report.scale:  # the formula is the catalogue's derived constant on every key
        k, t, p = key[:3]
        assert math.isclose(formula(k, t, p), entry.scale(k, t, p), rel_tol=1e-12), key
    assert constant_text(report.scale) == EXPECTED_TEXT[name]


def test_no_formula_where_none_fits_or_the_keys_cannot_tell() -> None:
    # one key: no formula, its value
    assert constant_text({(2, 1, 1, 3): 0.3}) == "c = 0.3 at k=2, T=1, P=1, V=3"
    # k and T grow together: (k-1)/k and T/k give the same two values, so neither is named
    both = {(2, 1, 1): 0.5, (3, 2, 1): 2 / 3}
    assert fit_formula(both) is None
    assert constant_text(both) == "c = 0.5 at k=2, T=1, P=1; 0.6667 at k=3, T=2, P=1"
    # a constant that depends on V has no formula in k, T, P
    assert fit_formula({(2, 1, 1, 2): 0.5, (2, 1, 1, 3): 1 / 3, (3, 1, 1, 2): 0.5}) is None
    # values off a formula by more than round-off: none
    assert fit_formula({(2, 1, 1): 0.5, (3, 1, 1): 2 / 3 * (1 + 1e-4), (3, 2, 1): 2 / 3}) is None
    # more than three values are cut
    many = {(k, t, 1): 0.1 * k + 0.01 * t * t for k in (2, 3) for t in (1, 2, 3)}
    assert constant_text(many).endswith("; ...") and constant_text(many).count(" at ") == 3


def test_a_formula_names_what_was_held_fixed_and_its_coefficient() -> None:
    assert constant_text({(2, 1, 1): 1.0, (2, 2, 1): 0.5, (2, 3, 1): 1 / 3}) == "c = 1/T at k=2, P=1"
    assert constant_text({(2, 1, 2): 0.5, (3, 2, 1): 0.25, (4, 1, 1): 0.5}) == "c = 1/(2T)"
    assert fit_formula({(2, 1, 1): -2.0, (3, 1, 1): -3.0, (3, 2, 2): -3.0}) is not None
    assert constant_text({(2, 1, 1): -2.0, (3, 1, 1): -3.0, (3, 2, 2): -3.0}) == "c = -k"
