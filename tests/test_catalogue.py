"""Verify every catalogue entry's declared verdict against exact expectations.

Each entry's verdict was derived by hand (see its description); here it is checked with
:func:`impl.exact.exact_expectation` (no sampling) on a fixed list of problems that covers
``n`` in 2..5 and 8, ``k`` in 1..4, extreme logits (+-30, -12), logits shifted by 1000,
negative scores, scores of a million, ties and all-equal scores.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import impl.catalogue as catalogue_module
from impl.catalogue import (
    CATALOGUE,
    CATEGORIES,
    LOGP_FLOOR,
    PROB_FLOOR,
    VERDICTS,
    CatalogueEntry,
    get,
    per_group,
)
from impl.errors import InvalidArgument
from impl.exact import Expectation, enumerate_groups, exact_expectation
from impl.policy import log_softmax, policy_gradient, softmax

# ----------------------------------------------------------------------------- budgets

ROUNDOFF_REL = 1e-10
"""Round-off budget of an exact float64 expectation, per unit of E|g| (plus 1)."""

FLOAT32_ROUNDOFF_REL = 64 * float(np.finfo(np.float32).eps)
"""Budget for entries returning float32: 64 ulps of float32 per unit of E|g| (plus 1)."""

CLEAR_BIAS = 100.0
"""A bias must exceed this many round-off budgets to count as clearly present."""

SIGNIFICANT_GRADIENT = 1e4
"""grad J counts as nonzero (so a fitted scale c is meaningful) above this many budgets."""

MAX_K = 4


@dataclass(frozen=True)
class Problem:
    label: str
    logits: np.ndarray[Any, np.dtype[np.float64]]
    scores: np.ndarray[Any, np.dtype[np.float64]]

    @property
    def n(self) -> int:
        return int(self.logits.size)

    def __repr__(self) -> str:
        return f"{self.label}(logits={self.logits.tolist()}, scores={self.scores.tolist()})"


def _p(label: str, logits: list[float], scores: list[float]) -> Problem:
    return Problem(label, np.array(logits, dtype=np.float64), np.array(scores, dtype=np.float64))


PROBLEMS: tuple[Problem, ...] = (
    _p("n2-uniform", [0.0, 0.0], [1.0, 3.0]),
    _p("n2-negative", [0.3, -1.2], [-2.0, 5.0]),
    _p("n2-extreme", [30.0, -30.0], [1.0, 2.0]),
    _p("n3-basic", [0.3, -1.0, 0.5], [1.0, 0.0, 2.0]),
    _p("n3-tie", [0.0, 0.0, 0.0], [1.0, 1.0, 2.0]),
    _p("n3-negative", [2.0, -1.0, 0.5], [-1.5, 0.25, 3.0]),
    _p("n3-extreme", [30.0, -30.0, 0.0], [2.0, -1.0, 0.5]),
    _p("n3-rare", [0.0, -12.0, 2.0], [1.0, 3.0, -2.0]),
    _p("n3-all-equal-half", [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]),
    _p("n3-all-equal-two", [0.4, -0.2, 0.9], [2.0, 2.0, 2.0]),
    _p("n3-unit", [0.2, -0.7, 1.1], [0.4, 0.9, 0.1]),
    _p("n4-unit", [0.5, -0.5, 1.0, 0.0], [0.0, 1.0, 0.25, 0.75]),
    _p("n4-tie-negative", [0.1, 0.2, -0.3, 0.4], [2.0, 2.0, -1.0, 5.0]),
    _p("n5-mixed", [-1.0, 0.0, 1.0, 2.0, -2.0], [3.0, -1.0, 0.5, 2.0, -4.0]),
    _p("n5-uniform", [0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0, 5.0]),
    _p("n5-extreme", [30.0, 0.0, -30.0, 5.0, -5.0], [0.0, 1.0, 2.0, 3.0, 4.0]),
    _p("n3-shifted", [1000.3, 999.0, 1000.5], [1.0, 0.0, 2.0]),
    _p("n3-huge-scores", [0.0, 0.5, -0.5], [1e6, -2e6, 0.25]),
    _p("n8-mixed", [0.5, -1.0, 1.5, 0.0, -0.5, 2.0, -2.0, 1.0],
       [1.0, 3.0, 0.0, -1.0, 2.0, 0.5, 1.0, -2.0]),
)


def _ks(entry: CatalogueEntry) -> range:
    return range(entry.min_k, MAX_K + 1)


def _cases(entry: CatalogueEntry) -> Iterator[tuple[Problem, int]]:
    for problem in PROBLEMS:
        for k in _ks(entry):
            yield problem, k


def _by(verdict: str) -> list[Any]:
    """Entries whose batched verdict is ``verdict`` (round-off-only biases are apart: _roundoff())."""
    return [
        pytest.param(e, id=e.name)
        for e in CATALOGUE
        if e.expected == verdict and e.roundoff is None
    ]


def _roundoff() -> list[Any]:
    return [pytest.param(e, id=e.name) for e in CATALOGUE if e.roundoff is not None]


def _budget(entry: CatalogueEntry, problem: Problem, ex: Expectation) -> float:
    k = entry.min_k
    x = enumerate_groups(problem.n, k)[:1]
    out = np.asarray(entry.fn(problem.logits.copy(), x, problem.scores[x]))
    rel = FLOAT32_ROUNDOFF_REL if out.dtype == np.float32 else ROUNDOFF_REL
    return rel * (1.0 + float(ex.magnitude.max()))


def _report(entry: CatalogueEntry, problem: Problem, k: int, expected: Any, got: Any) -> str:
    diff = np.asarray(got) - np.asarray(expected)
    return (
        f"{entry.name} ({entry.expected}) on {problem!r}, k={k}:\n"
        f"  expected E[g] = {np.asarray(expected)!r}\n  observed E[g] = {np.asarray(got)!r}\n"
        f"  difference    = {diff!r}"
    )


# ----------------------------------------------------------------------------- structure


def test_catalogue_is_large_and_well_formed() -> None:
    assert len(CATALOGUE) >= 34
    names = [e.name for e in CATALOGUE]
    assert len(set(names)) == len(names), "duplicate names"
    for e in CATALOGUE:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", e.name), e.name
        assert e.expected in VERDICTS, e
        assert e.category in CATEGORIES, e
        assert e.min_k in (1, 2), e
        assert e.description and "\n" not in e.description, e.name
        assert (e.scale is not None) == ("scaled" in (e.expected, e.expected_per_group)), e.name
        assert e.per_group_expected in (None, *VERDICTS), e.name
        assert e.roundoff is None or (e.expected == "biased" and e.roundoff[1] in VERDICTS), e.name
        if e.scale is not None:
            scales = [e.scale(k) for k in _ks(e)]
            assert all(c > 0 for c in scales), (e.name, scales)
            assert any(c != 1 for c in scales), (e.name, scales)
    assert {e.expected for e in CATALOGUE} == set(VERDICTS)


def test_module_table_matches_catalogue() -> None:
    doc = catalogue_module.__doc__ or ""
    rows = {
        m.group(1): m.groups()[1:]
        for m in re.finditer(r"^(\S+)\s+(unbiased|scaled|biased|error)\s+\S+\s+(\d)\s+(\S+)$",
                             doc, flags=re.MULTILINE)
    }
    assert list(rows) == [e.name for e in CATALOGUE]
    for e in CATALOGUE:
        assert rows[e.name] == (e.expected, str(e.min_k), e.category), e.name


def test_get_known_and_unknown_names() -> None:
    for e in CATALOGUE:
        assert get(e.name) is e
    with pytest.raises(InvalidArgument, match=r"rloo-wrong-denominator"):
        get("rloo-wrong-denominater")


def test_all_is_exported() -> None:
    for name in catalogue_module.__all__:
        assert hasattr(catalogue_module, name), name


# ----------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize("entry", _by("unbiased"))
def test_unbiased_entries_are_exact(entry: CatalogueEntry) -> None:
    for problem, k in _cases(entry):
        ex = exact_expectation(entry.fn, problem.logits, problem.scores, k)
        grad = policy_gradient(problem.logits, problem.scores)
        budget = _budget(entry, problem, ex)
        assert np.abs(ex.mean - grad).max() <= budget, _report(entry, problem, k, grad, ex.mean)


@pytest.mark.parametrize("entry", _by("scaled"))
def test_scaled_entries_have_the_declared_scale(entry: CatalogueEntry) -> None:
    assert entry.scale is not None
    for problem, k in _cases(entry):
        ex = exact_expectation(entry.fn, problem.logits, problem.scores, k)
        want = entry.scale(k) * policy_gradient(problem.logits, problem.scores)
        budget = _budget(entry, problem, ex)
        assert np.abs(ex.mean - want).max() <= budget, _report(entry, problem, k, want, ex.mean)


@st.composite
def random_problems(draw: st.DrawFn) -> Problem:
    """n in 2..4, logits in [-6, 6], scores on a coarse grid in [-3, 3] (so ties occur)."""
    n = draw(st.integers(min_value=2, max_value=4))
    logits = draw(st.lists(st.floats(min_value=-6, max_value=6), min_size=n, max_size=n))
    scores = draw(st.lists(st.integers(min_value=-6, max_value=6), min_size=n, max_size=n))
    return _p("generated", logits, [v / 2 for v in scores])


@pytest.mark.parametrize("entry", _by("unbiased") + _by("scaled"))
@settings(max_examples=25, deadline=None)
@given(problem=random_problems(), k=st.integers(min_value=1, max_value=3))
def test_exact_entries_hold_on_generated_problems(
    entry: CatalogueEntry, problem: Problem, k: int
) -> None:
    k = max(k, entry.min_k)
    ex = exact_expectation(entry.fn, problem.logits, problem.scores, k)
    c = entry.scale(k) if entry.scale is not None else 1.0
    want = c * policy_gradient(problem.logits, problem.scores)
    budget = _budget(entry, problem, ex)
    assert np.abs(ex.mean - want).max() <= budget, _report(entry, problem, k, want, ex.mean)


@dataclass(frozen=True)
class Fit:
    """The best multiple ``c`` of grad J for one (problem, k), and what is left over."""

    problem: Problem
    k: int
    c: float | None  # None when grad J is not significantly nonzero
    residual: float
    budget: float
    c_error: float  # round-off uncertainty of c: budget / max|grad J|


def _fit(entry: CatalogueEntry, problem: Problem, k: int) -> Fit:
    ex = exact_expectation(entry.fn, problem.logits, problem.scores, k)
    grad = policy_gradient(problem.logits, problem.scores)
    budget = _budget(entry, problem, ex)
    gg = float(grad @ grad)
    c_best = float(ex.mean @ grad) / gg if gg > 0 else 0.0
    residual = float(np.abs(ex.mean - c_best * grad).max())
    size = float(np.abs(grad).max())
    significant = size > SIGNIFICANT_GRADIENT * budget
    c_error = budget / size if significant else np.inf
    return Fit(problem, k, c_best if significant else None, residual, budget, c_error)


def bias_witnesses(entry: CatalogueEntry, problems: tuple[Problem, ...] = PROBLEMS,
                   ks: range | None = None) -> list[str]:
    """Reasons why ``E[g]`` is not ``c_k grad J`` with one ``c_k > 0`` per ``k``."""
    reasons: list[str] = []
    for k in ks if ks is not None else _ks(entry):
        fits = [_fit(entry, problem, k) for problem in problems]
        for f in fits:
            if f.residual > CLEAR_BIAS * f.budget:
                reasons.append(f"k={k} {f.problem!r}: residual {f.residual:.3g} off span(grad J)")
            if f.c is not None and f.c <= 0:
                reasons.append(f"k={k} {f.problem!r}: scale c={f.c:.3g} <= 0")
        cs = [f.c for f in fits if f.c is not None]
        c_error = max((f.c_error for f in fits if f.c is not None), default=0.0)
        if cs and max(cs) - min(cs) > CLEAR_BIAS * c_error:
            reasons.append(f"k={k}: scale depends on the problem, c in [{min(cs):.6g}, "
                           f"{max(cs):.6g}]")
    return reasons


@pytest.mark.parametrize("entry", _by("biased"))
def test_biased_entries_show_a_clear_bias(entry: CatalogueEntry) -> None:
    assert bias_witnesses(entry), f"{entry.name}: no problem shows a bias"


@pytest.mark.parametrize("entry", _by("unbiased") + _by("scaled"))
def test_correct_and_scaled_entries_show_no_bias_witness(entry: CatalogueEntry) -> None:
    # the witness detector itself must not fire on exact (or exactly scaled) entries
    assert bias_witnesses(entry) == []


# Biases that appear only under one condition: unbiased where the condition fails.
CONDITIONAL: list[tuple[str, str, Callable[[Problem, int], bool]]] = [
    ("clip-rewards-unit-interval", "scores outside [0, 1]",
     lambda pr, k: bool(pr.scores.min() < 0 or pr.scores.max() > 1)),
    ("prob-floor-in-score", "some p < PROB_FLOOR",
     lambda pr, k: bool(softmax(pr.logits).min() < PROB_FLOOR)),
    ("clamped-log-prob", "some log p < LOGP_FLOOR",
     lambda pr, k: bool(log_softmax(pr.logits).min() < LOGP_FLOOR)),
    ("rloo-k1-fallback-self", "k = 1", lambda pr, k: k == 1),
    ("dedupe-by-reward", "tied scores",
     lambda pr, k: len(set(pr.scores.tolist())) < pr.n),
    ("binary-softmax-assumption", "n >= 3", lambda pr, k: pr.n >= 3),
    ("nan-on-negative-reward", "negative scores", lambda pr, k: bool(pr.scores.min() < 0)),
    ("rloo-unguarded", "k = 1", lambda pr, k: k == 1),
    ("top5-truncated-softmax", "n >= 6", lambda pr, k: pr.n >= 6),
    ("logit-clamp-50", "a logit beyond 50",
     lambda pr, k: bool(np.abs(pr.logits).max() > catalogue_module.LOGIT_CLAMP)),
    ("reward-clip-1e4", "a score beyond 1e4",
     lambda pr, k: bool(np.abs(pr.scores).max() > catalogue_module.REWARD_CLIP)),
    ("softmax-without-max-subtraction", "a logit beyond 709",
     lambda pr, k: bool(np.abs(pr.logits).max() > 709)),
]


@pytest.mark.parametrize(("name", "condition", "triggers"), CONDITIONAL,
                         ids=[c[0] for c in CONDITIONAL])
def test_conditional_bias_appears_only_under_its_condition(
    name: str, condition: str, triggers: Callable[[Problem, int], bool]
) -> None:
    entry = get(name)
    triggered = 0
    for problem, k in _cases(entry):
        if triggers(problem, k):
            triggered += 1
            continue
        ex = exact_expectation(entry.fn, problem.logits, problem.scores, k)
        grad = policy_gradient(problem.logits, problem.scores)
        budget = _budget(entry, problem, ex)
        assert np.abs(ex.mean - grad).max() <= budget, (
            f"without {condition}: " + _report(entry, problem, k, grad, ex.mean)
        )
    assert triggered, f"no problem in PROBLEMS has {condition}"
    if entry.expected == "biased":
        hit = tuple(p for p in PROBLEMS if any(triggers(p, k) for k in _ks(entry)))
        assert bias_witnesses(entry, hit), f"{name}: no bias with {condition}"


def test_median_including_self_is_scaled_at_k2_but_biased_at_k3() -> None:
    entry = get("median-baseline-including-self")
    for problem in PROBLEMS:
        ex = exact_expectation(entry.fn, problem.logits, problem.scores, 2)
        want = 0.5 * policy_gradient(problem.logits, problem.scores)
        assert np.abs(ex.mean - want).max() <= _budget(entry, problem, ex)
    assert bias_witnesses(entry, ks=range(3, 4))


def test_mutating_entries_compute_the_expected_values() -> None:
    # in-place-sort is reinforce on its values; mutates-rewards is the group-mean baseline
    for problem in PROBLEMS:
        grad = policy_gradient(problem.logits, problem.scores)
        for k in range(1, 4):
            ex = exact_expectation(get("in-place-sort-by-reward").fn, problem.logits,
                                   problem.scores, k)
            assert np.abs(ex.mean - grad).max() <= ROUNDOFF_REL * (1 + ex.magnitude.max())
            ex = exact_expectation(get("mutates-rewards").fn, problem.logits, problem.scores, k)
            want = (k - 1) / k * grad
            assert np.abs(ex.mean - want).max() <= ROUNDOFF_REL * (1 + ex.magnitude.max())


# Closed forms of E[g] for the biased entries, derived by hand (p, s, J, G, k, n, theta).
def _closed_forms() -> dict[str, Callable[[Problem, int], np.ndarray[Any, Any]]]:
    def parts(pr: Problem) -> tuple[Any, Any, float, Any]:
        p = softmax(pr.logits)
        return p, pr.scores, float(p @ pr.scores), policy_gradient(pr.logits, pr.scores)

    def entropy_grad(pr: Problem) -> Any:
        p, logp = softmax(pr.logits), log_softmax(pr.logits)
        return -p * (logp - p @ logp)

    def temperature(pr: Problem) -> Any:
        p, s, j, _ = parts(pr)
        p_t = softmax(pr.logits / catalogue_module.TEMPERATURE)
        return (p * s - j * p_t) / catalogue_module.TEMPERATURE

    return {
        "negated-reinforce": lambda pr, k: -parts(pr)[3],
        "zero-gradient": lambda pr, k: 0 * parts(pr)[3],
        "divide-by-n-not-k": lambda pr, k: k / pr.n * parts(pr)[3],
        "missing-p-term": lambda pr, k: parts(pr)[0] * pr.scores,
        "uniform-p-in-score": lambda pr, k: parts(pr)[0] * pr.scores - parts(pr)[2] / pr.n,
        "grad-p-instead-of-grad-log-p": lambda pr, k: (
            parts(pr)[0] ** 2 * pr.scores - (parts(pr)[0] ** 2 @ pr.scores) * parts(pr)[0]
        ),
        "index-shift": lambda pr, k: (
            np.roll(parts(pr)[0] * pr.scores, 1) - parts(pr)[2] * parts(pr)[0]
        ),
        "rewards-rolled": lambda pr, k: 0 * parts(pr)[3],
        "prob-floor-in-score": lambda pr, k: (
            parts(pr)[3] + parts(pr)[2] * (parts(pr)[0] - np.maximum(parts(pr)[0], PROB_FLOOR))
        ),
        "entropy-bonus": lambda pr, k: (
            parts(pr)[3] + catalogue_module.ENTROPY_COEF * entropy_grad(pr)
        ),
        "kl-to-uniform-reward-penalty": lambda pr, k: (
            parts(pr)[3] + catalogue_module.KL_COEF * entropy_grad(pr)
        ),
        "temperature-mismatch-score": lambda pr, k: temperature(pr),
    }


CLOSED_FORMS = _closed_forms()


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_biased_entries_match_their_closed_form(name: str) -> None:
    entry = get(name)
    for problem, k in _cases(entry):
        ex = exact_expectation(entry.fn, problem.logits, problem.scores, k)
        want = CLOSED_FORMS[name](problem, k)
        budget = _budget(entry, problem, ex)
        assert np.abs(ex.mean - want).max() <= budget, _report(entry, problem, k, want, ex.mean)


# ----------------------------------------------------------------------------- errors


def error_modes(fn: Any, problem: Problem, k: int, *, batched: bool = True) -> set[str]:
    """How ``fn`` fails on every group of ``k`` for ``problem`` (empty: it does not)."""
    x_all = enumerate_groups(problem.n, k)
    calls = [(x_all, (x_all.shape[0], problem.n))] if batched else [
        (row, (problem.n,)) for row in x_all
    ]
    modes: set[str] = set()
    for x0, shape in calls:
        theta, x, r = problem.logits.copy(), x0.copy(), problem.scores[x0]
        r0 = r.copy()
        try:
            first = fn(theta, x, r)
            second = fn(problem.logits.copy(), x0.copy(), r0.copy())
        except SystemExit:
            modes.add("exits")
            continue
        except Exception:
            modes.add("raises")
            continue
        if not (np.array_equal(theta, problem.logits) and np.array_equal(x, x0)
                and np.array_equal(r, r0)):
            modes.add("mutates")
        if first is None:
            modes.add("none")
            continue
        if np.asarray(first).dtype.kind != "f" or np.asarray(first).dtype == np.float16:
            modes.add("dtype")  # integer/bool, or float16 (too coarse: see reinforce-float16)
        a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
        if a.shape != shape:
            modes.add("shape")
        elif not np.all(np.isfinite(a)):
            modes.add("nonfinite")
        if a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
            modes.add("nondeterministic")
        elif batched and a.shape == shape and x0.shape[0] > 1:
            # each row must be a function of its own group: a batch of one must agree
            one = np.asarray(fn(problem.logits.copy(), x0[:1].copy(), problem.scores[x0[:1]]),
                             dtype=np.float64)
            if one.shape != (1, problem.n) or not np.allclose(one[0], a[0], rtol=1e-12, atol=0.0):
                modes.add("rows")
    return modes


ERROR_MODES = {
    "raises-value-error": "raises",
    "returns-none": "none",
    "wrong-shape-drops-last": "shape",
    "nan-on-negative-reward": "nonfinite",
    "nondeterministic-noise": "nondeterministic",
    "mutates-rewards": "mutates",
    "in-place-sort-by-reward": "mutates",
    "per-group-only": "shape",
    "rloo-unguarded": "nonfinite",
    "batch-mean-baseline": "rows",
    "detects-full-enumeration": "rows",
    "softmax-without-max-subtraction": "nonfinite",
    "returns-integer": "dtype",
    "reinforce-float16": "dtype",
    "calls-sys-exit": "exits",
    "random-for-n-at-least-3": "nondeterministic",
    "ema-baseline-state": "nondeterministic",
    "forces-writeable-inputs": "mutates",  # with writeable arrays the write succeeds
    "read-only-message": "raises",
}


def test_every_error_entry_has_a_declared_mode() -> None:
    assert sorted(ERROR_MODES) == sorted(e.name for e in CATALOGUE if e.expected == "error")


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "per-group"])
@pytest.mark.parametrize("entry", _by("error"))
def test_error_entries_fail_as_declared(entry: CatalogueEntry, batched: bool) -> None:
    if not batched and entry.expected_per_group != "error":
        pytest.skip(f"{entry.name} is {entry.expected_per_group!r} per group")
    fn = entry.fn if batched else per_group(entry.fn)
    seen: set[str] = set()
    for problem in PROBLEMS:
        for k in range(entry.min_k, 4):
            seen |= error_modes(fn, problem, k, batched=batched)
    assert ERROR_MODES[entry.name] in seen, (entry.name, seen)


@pytest.mark.parametrize("entry", _by("unbiased") + _by("scaled") + _by("biased") + _roundoff())
def test_non_error_entries_are_well_behaved(entry: CatalogueEntry) -> None:
    for problem in PROBLEMS:
        for k in range(entry.min_k, 4):
            assert error_modes(entry.fn, problem, k) == set(), (entry.name, problem, k)


@pytest.mark.parametrize("entry", _by("unbiased") + _by("scaled") + _by("biased") + _roundoff())
def test_per_group_adapter_agrees_with_batched(entry: CatalogueEntry) -> None:
    one = per_group(entry.fn)
    for problem in PROBLEMS[::3]:
        for k in range(entry.min_k, 4):
            x = enumerate_groups(problem.n, k)
            batched = np.asarray(entry.fn(problem.logits.copy(), x.copy(), problem.scores[x]))
            rows = np.array([one(problem.logits.copy(), row, problem.scores[row]) for row in x])
            assert rows.shape == batched.shape
            np.testing.assert_allclose(rows, batched, rtol=1e-6, atol=1e-12,
                                       err_msg=f"{entry.name} {problem!r} k={k}")
    assert error_modes(one, PROBLEMS[3], entry.min_k, batched=False) == set()


def test_per_group_keeps_pathological_outputs() -> None:
    x, r = np.array([0, 1]), np.array([1.0, 3.0])
    assert per_group(get("returns-none").fn)(np.zeros(2), x, r) is None
    assert isinstance(per_group(get("reinforce-returns-list").fn)(np.zeros(2), x, r), list)
    out32 = per_group(get("reinforce-float32").fn)(np.zeros(2), x, r)
    assert out32.dtype == np.float32 and out32.shape == (2,)


def test_no_global_random_state_is_touched() -> None:
    # the legacy global state is read on purpose: no entry may draw from it
    def global_state() -> tuple[list[int], int]:
        state: Any = np.random.get_state(legacy=False)  # noqa: NPY002
        return list(map(int, state["state"]["key"])), int(state["state"]["pos"])

    before = global_state()
    problem = PROBLEMS[3]
    for e in CATALOGUE:
        x = enumerate_groups(problem.n, 2)
        try:
            e.fn(problem.logits.copy(), x, problem.scores[x])
        except (ValueError, SystemExit):
            pass
    assert global_state() == before


# ----------------------------------------------------------------------------- round-off entries

ROUNDOFF_BUDGET_ULPS = 64.0
"""A round-off entry must match its verdict within this many ulps of its dtype (per unit of E|g|, plus 1)."""

_DTYPE_EPS = {"float32": float(np.finfo(np.float32).eps), "bfloat16": 2.0**-7}

FLOAT64_ROUNDOFF_ULPS = 1024.0
"""Residuals beyond this many float64 ulps (per unit of the terms) are not float64 round-off
(the checker's own bound is 32 k ulps, k <= 4)."""


@pytest.mark.parametrize("entry", _roundoff())
def test_roundoff_entries_are_exact_at_their_precision_and_biased_beyond(
    entry: CatalogueEntry,
) -> None:
    """Within its dtype's round-off the entry has its ``roundoff`` verdict; in float64 it is biased."""
    assert entry.roundoff is not None
    dtype, verdict = entry.roundoff
    eps = _DTYPE_EPS[dtype]
    beyond_float64 = False
    for problem, k in _cases(entry):
        ex = exact_expectation(entry.fn, problem.logits, problem.scores, k)
        grad = policy_gradient(problem.logits, problem.scores)
        c = (k - 1) / k if verdict == "scaled" else 1.0
        size = 1.0 + float(ex.magnitude.max()) + float(np.abs(problem.scores).max())
        residual = float(np.abs(ex.mean - c * grad).max())
        assert residual <= ROUNDOFF_BUDGET_ULPS * eps * size, _report(entry, problem, k, c * grad, ex.mean)
        beyond_float64 |= residual > FLOAT64_ROUNDOFF_ULPS * float(np.finfo(np.float64).eps) * size
    assert beyond_float64, f"{entry.name}: never beyond float64 round-off, so not biased"
