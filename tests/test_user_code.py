"""The shared user-code guard (properties.judging.user_code) and judging core (properties.judging.verdict).

Both are private modules reused by the one-step checker and the sequence checker; these
tests pin their contract.  Time budget: under 1 s.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

from properties.judging.user_code import (
    MAX_TEXT,
    UserCodeError,
    call_user,
    exception_text,
    name_of,
    safe_text,
)
from properties.judging.verdict import (
    Reference,
    ReferenceBook,
    best_fit,
    decide,
    explained_by,
    judge,
    nonpositive,
    norm,
    scale_hints,
    ulps,
)

# --------------------------------------------------------------------------- hostile objects


class StrBomb(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str bomb")


class BaseStrBomb(Exception):
    def __str__(self) -> str:
        raise SystemExit(3)


class NotStrable(Exception):
    def __str__(self) -> Any:
        return 42  # str() then raises TypeError


class MyBase(BaseException):
    pass


class ReprBomb:
    def __repr__(self) -> str:
        raise ValueError("repr bomb")


class ReprNotStr:
    def __repr__(self) -> Any:
        return 17


class StrSubclass(str):
    def __str__(self) -> str:
        raise RuntimeError("sneaky")


class SneakyRepr:
    def __repr__(self) -> str:
        return StrSubclass("looks fine")


class HugeRepr:
    def __repr__(self) -> str:
        return "y" * 10_000_000


class NameBomb:
    def __getattribute__(self, name: str) -> Any:
        if name in ("__qualname__", "__name__"):
            raise RuntimeError("no names")
        return object.__getattribute__(self, name)

    def __call__(self) -> None:
        return None


class NameNotStr:
    def __init__(self) -> None:
        self.__dict__["__qualname__"] = 5
        self.__dict__["__name__"] = None

    def __call__(self) -> None:
        return None


class Meta(type):
    def __getattribute__(cls, name: str) -> Any:
        if name in ("__qualname__", "__name__"):
            raise RuntimeError("metaclass bomb")
        return super().__getattribute__(name)


class WeirdType(Exception, metaclass=Meta):
    pass


def _raise(exc: BaseException) -> Any:
    raise exc


@pytest.mark.parametrize(
    ("exc", "kind", "type_name", "needle"),
    [
        (ValueError("plain"), "raised", "ValueError", "ValueError: plain"),
        (StrBomb("x"), "raised", "StrBomb", "__str__ of the exception raised RuntimeError"),
        (BaseStrBomb("x"), "raised", "BaseStrBomb", "__str__ of the exception raised SystemExit"),
        (NotStrable(), "raised", "NotStrable", "raised TypeError"),
        (MyBase("b"), "raised", "MyBase", "MyBase: b"),
        (GeneratorExit(), "raised", "GeneratorExit", "GeneratorExit"),
        (SystemExit(0), "exited", "SystemExit", "SystemExit: 0"),
        (StopIteration(), "raised", "StopIteration", "StopIteration"),
        (WeirdType("w"), "raised", "WeirdType", "WeirdType: w"),
    ],
)
def test_call_user_converts_everything_but_keyboard_interrupt(
    exc: BaseException, kind: str, type_name: str, needle: str
) -> None:
    with pytest.raises(UserCodeError) as info:
        call_user(_raise, exc)
    err = info.value
    assert err.kind == kind and err.type_name == type_name
    assert needle in err.text and "_raise" in err.text  # the innermost frame is named
    assert err.is_instance(type(exc)) and isinstance(str(err), str)


def test_sys_exit_is_caught_and_keyboard_interrupt_propagates() -> None:
    with pytest.raises(UserCodeError) as info:
        call_user(sys.exit, 0)
    assert info.value.kind == "exited" and "sys.exit" in info.value.describe
    with pytest.raises(KeyboardInterrupt):
        call_user(_raise, KeyboardInterrupt())


def test_safe_text_never_raises_and_is_bounded() -> None:
    assert safe_text(ReprBomb()) == "<ReprBomb object; repr() raised ValueError>"
    assert safe_text(ReprNotStr()) == "<ReprNotStr object; repr() raised TypeError>"
    assert safe_text(SneakyRepr()) == "looks fine" and type(safe_text(SneakyRepr())) is str
    text = safe_text(HugeRepr())
    assert len(text) <= MAX_TEXT and "10000000 characters" in text
    assert safe_text(1.5, use_str=True) == "1.5"


def test_exception_text_survives_hostile_exceptions() -> None:
    assert exception_text(StrBomb("a", 1)) == (
        "StrBomb: ('a', 1) (__str__ of the exception raised RuntimeError)"
    )
    assert exception_text(WeirdType("w")).startswith("WeirdType")


def test_name_of_survives_hostile_callables() -> None:
    assert name_of(len) == "len"
    assert "NameBomb object at" in name_of(NameBomb())
    assert "NameNotStr object at" in name_of(NameNotStr())

    class Both:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(name)

        def __repr__(self) -> str:
            raise RuntimeError("repr")

    assert name_of(Both()).endswith("<locals>.Both object; repr() raised RuntimeError>")


# --------------------------------------------------------------------------- judging


class Ev:
    """A minimal evaluation: the judging core needs nothing else."""

    def __init__(self, mean: Any, gradient: Any, *, tol: float = 1e-12, key: Any = 2) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.gradient = np.asarray(gradient, dtype=np.float64)
        self.tolerance = np.full(self.mean.shape, tol)
        self.floor = tol
        self.key = key


def test_judging_is_generic_over_keys_and_shapes() -> None:
    book: ReferenceBook[Ev] = ReferenceBook()
    key = (2, 3, 1)  # a sequence checker keys by (k, T, P); gradients may be 2-D
    g = np.array([[-0.25, 0.25], [0.5, -0.5]])
    assert book.offer(Ev(0.5 * g, g, key=key)) == []
    ref = book.reference(key)
    assert ref is not None and ref.multiple == pytest.approx(0.5, rel=1e-15, abs=0.0)
    (m,) = book.offer(Ev(0.7 * g, g, key=key))
    assert m.kind == "scale-varies" and "(2, 3, 1)" in m.reason
    (m,) = book.offer(Ev(0.5 * g + np.array([[1.0, 0.0], [0.0, 0.0]]), g, key=key))
    assert m.kind == "not-a-multiple"
    assert book.offer(Ev([1e-3, 0.0], [0.0, 0.0], key=5)) == []  # held back: no reference yet


def test_reference_book_judges_problems_offered_before_the_reference() -> None:
    book: ReferenceBook[Ev] = ReferenceBook()
    assert book.offer(Ev([1.0, -1.0], [0.0, 0.0])) == []  # G = 0: cannot be the reference
    found = book.offer(Ev([-0.25, 0.25], [-0.25, 0.25]))
    assert [m.kind for m in found] == ["flat"]


def test_imprecise_references_and_the_verdict_precedence() -> None:
    book: ReferenceBook[Ev] = ReferenceBook()
    assert book.offer(Ev([-0.25, 0.25], [-0.25, 0.25], tol=0.05)) == []  # |G| only 7x |tau|
    assert book.reference(2) is None
    assert book.close() == []
    ref = book.reference(2)
    assert ref is not None and not ref.precise
    refs = book.references()
    assert decide(fault=True, mismatch=True, references=refs, keys=[2]).verdict == "error"
    assert decide(fault=False, mismatch=True, references=refs, keys=[2]).verdict == "biased"
    imprecise = decide(fault=False, mismatch=False, references=refs, keys=[2])
    assert imprecise.verdict == "error" and imprecise.imprecise == (2,)
    assert decide(fault=False, mismatch=False, references={}, keys=[2]).imprecise == (2,)


def test_nonpositive_reference_is_a_mismatch() -> None:
    ev = Ev([0.25, -0.25], [-0.25, 0.25])
    ref: Reference[Ev] = Reference(multiple=-1.0, uncertainty=1e-9, evaluation=ev)
    m = nonpositive(ref)
    assert m is not None and m.kind == "nonpositive" and "<= 0" in m.reason
    assert judge(ev, ref) is None


def test_norm_and_fit_do_not_overflow() -> None:
    assert norm(np.array([3e200, 4e200])) == pytest.approx(5e200, rel=1e-15, abs=0.0)
    ev = Ev([2e300, -2e300], [1e300, -1e300], tol=1e290)
    c, residual = best_fit(ev)
    assert c == pytest.approx(2.0, rel=1e-14, abs=0.0)
    assert np.all(np.isfinite(residual)) and norm(residual) < 1e-13 * norm(ev.mean)


def test_scale_hints_only_where_they_explain_two_k() -> None:
    assert scale_hints({1: 1.0, 2: 0.5, 3: 0.75}, {1: 0.0, 2: 0.0, 3: 0.0}) == {}
    assert scale_hints({1: 1.0, 2: 2.0, 3: 3.0}, {1: 0.0, 2: 0.0, 3: 0.0}) == {
        2: "k, the scale of a sum instead of a mean",
        3: "k, the scale of a sum instead of a mean",
    }
    assert scale_hints({4: 4.0}, {4: 0.0}) == {}  # one k explains nothing


def test_roundoff_explanation_picks_the_finest_dtype() -> None:
    g = np.array([-0.25, 0.25])
    ev = Ev(g + np.array([1e-9, -1e-9]), g)
    book: ReferenceBook[Ev] = ReferenceBook()
    ref: Reference[Ev] = Reference(multiple=1.0, uncertainty=0.0, evaluation=Ev(g, g))
    m = judge(ev, ref)
    assert m is not None and book.references() == {}

    def tolerance_at(eps: float) -> Any:
        return np.full(2, 10 * eps)

    assert explained_by(m, tolerance_at, finer_than=2.0**-52) == "float32"
    assert explained_by(m, tolerance_at, finer_than=2.0**-23) == "bfloat16"
    assert ulps(2.0**-23)["float32"] == pytest.approx(1.0, rel=1e-12, abs=0.0)


def test_both_checkers_replay_messages_come_from_one_helper_byte_identical() -> None:
    """Issue 15: the one-step and sequence checkers each wrote their own "nondeterministic
    under replay" text; one helper now builds both, with the old bytes."""
    import inspect

    from properties.judging.user_code import replay_detail
    from properties.onestep import run as onestep_run
    from properties.sequence import checker as sequence_checker

    assert replay_detail(
        "Flaky",
        outcome="verdicts",
        inputs="(logits, samples, rewards)",
        advice=": an estimator with its own randomness or hidden state needs a sampling check "
        "(properties.stats)",
    ) == (
        "gave different verdicts when Hypothesis replayed the same problem (Flaky); the exact "
        "checker needs a deterministic function of (logits, samples, rewards): an estimator "
        "with its own randomness or hidden state needs a sampling check (properties.stats)"
    )
    assert replay_detail("FlakyFailure", outcome="results", inputs="the batch") == (
        "gave different results when Hypothesis replayed the same problem (FlakyFailure); the "
        "exact checker needs a deterministic function of the batch"
    )
    for module in (onestep_run, sequence_checker):
        source = inspect.getsource(module)
        assert "replay_detail(" in source and "replayed the same problem" not in source
