"""Regression tests for issue 9: hostile estimators get a precise verdict, never a traceback.

Each test names the old behaviour it guards against (every one of them failed on the
checker before the fix).  Time budget: about 60 s on one core (per-group checks use
``max_examples`` of 0-10; the battery runs in full regardless).
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from impl.estimators import reinforce
from properties.onestep.checker import EstimatorReport, check_estimator

FEW = 5
"""max_examples where the battery decides (it always runs in full)."""


def _softmax(logits: Any) -> Any:
    p = np.exp(logits - np.max(logits))
    return p / p.sum()


def pg_reinforce(logits: Any, samples: Any, rewards: Any) -> Any:
    p = _softmax(logits)
    return np.mean(rewards[:, None] * (np.eye(p.size)[samples] - p), axis=0)


def _error(report: EstimatorReport, kind: str) -> None:
    assert report.verdict == "error", report.message
    assert report.error is not None and report.error.kind == kind, report.message


# --------------------------------------------------------------------------- certified wrongly


def test_batch_mixing_estimator_is_an_error_not_unbiased() -> None:
    """Old: 'unbiased' (the full enumeration's batch mean is a constant baseline)."""

    def batch_mean_baseline(logits: Any, samples: Any, rewards: Any) -> Any:
        return reinforce(logits, samples, rewards - rewards.mean())  # mean over the batch

    report = check_estimator(batch_mean_baseline, batched=True, max_examples=FEW)
    _error(report, "rows-not-independent")
    assert "depends on the other rows" in report.message


def test_an_estimator_that_detects_the_full_enumeration_is_caught() -> None:
    """Old: 'unbiased' (the checker only ever sent the full n**k enumeration)."""

    def cheat(logits: Any, samples: Any, rewards: Any) -> Any:
        n, (b, k) = np.size(logits), samples.shape
        g = reinforce(logits, samples, rewards)
        return g if b == n**k else -g

    _error(check_estimator(cheat, batched=True, max_examples=FEW), "rows-not-independent")

    def order_cheat(logits: Any, samples: Any, rewards: Any) -> Any:
        g = reinforce(logits, samples, rewards)
        lexicographic = bool(np.all(np.diff(samples[:, 0]) >= 0))
        return g if lexicographic else 2 * g

    _error(check_estimator(order_cheat, batched=True, max_examples=FEW), "rows-not-independent")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_without_max_subtraction_is_caught(dtype: Any) -> None:
    """Old: 'unbiased' (logits never left about +-28); NaN at logits +100 (float32), +1000."""

    def naive(logits: Any, samples: Any, rewards: Any) -> Any:
        with np.errstate(all="ignore"):
            e = np.exp(logits.astype(dtype))
            p = e / e.sum()
            return np.mean(rewards[:, None] * (np.eye(p.size, dtype=dtype)[samples] - p), axis=0)

    report = check_estimator(naive, max_examples=FEW)
    _error(report, "non-finite")
    assert "nan" in report.message


@pytest.mark.parametrize(
    ("convert", "dtype"),
    [
        (lambda g: np.rint(g).astype(np.int64), "int64"),
        (lambda g: g > 0, "bool"),
        (lambda g: (g * 100).astype(np.uint8), "uint8"),
        (lambda g: [int(v) for v in np.rint(g)], "int64"),
    ],
)
def test_integer_and_bool_outputs_are_errors_naming_the_dtype(convert: Any, dtype: str) -> None:
    """Old: accepted silently and judged 'biased, c = 0'."""

    def est(logits: Any, samples: Any, rewards: Any) -> Any:
        return convert(pg_reinforce(logits, samples, rewards))

    report = check_estimator(est, max_examples=0)
    _error(report, "bad-type")
    assert f"dtype {dtype}" in report.message and "floating point" in report.message


# --------------------------------------------------------------------------- crashes


def test_float16_output_is_a_verdict_not_a_crash() -> None:
    """Old: KeyError (no reference problem found).

    A correct float16 estimator gets 'error': it overflows to inf at the battery's scores
    of 1e6 (float16 stops at 65504), and where it does not, float16's round-off at the
    safety factor that keeps float32/float64 estimators free of false alarms is more
    than 1% of |grad J|, so c_k cannot be told from 1 (kind 'imprecise', tested through
    rtol below).
    """

    def f16(logits: Any, samples: Any, rewards: Any) -> Any:
        with np.errstate(over="ignore"):
            return pg_reinforce(logits, samples, rewards).astype(np.float16)

    report = check_estimator(f16, max_examples=FEW)
    _error(report, "non-finite")
    assert "inf" in report.message


def test_outputs_near_the_float64_range_are_judged() -> None:
    """Old: KeyError (the tolerance's norm overflowed past ~1e154)."""

    def huge(logits: Any, samples: Any, rewards: Any) -> Any:
        return pg_reinforce(logits, samples, rewards) * 1e160

    report = check_estimator(huge, max_examples=FEW, group_sizes=(2,))
    assert report.verdict == "scaled", report.message
    assert report.scale is not None
    assert report.scale[2] == pytest.approx(1e160, rel=1e-9, abs=0.0)

    def overflowing(logits: Any, samples: Any, rewards: Any) -> Any:
        return pg_reinforce(logits, samples, rewards) * 1e306

    _error(check_estimator(overflowing, max_examples=0), "non-finite")


@pytest.mark.parametrize("rtol", [0.1, 0.5, 10.0])
def test_a_huge_rtol_is_a_verdict_not_a_crash(rtol: float) -> None:
    """Old: KeyError for rtol >= 0.1."""
    report = check_estimator(reinforce, batched=True, max_examples=FEW, rtol=rtol)
    _error(report, "imprecise")
    assert f"rtol={rtol!r}" in report.message and "smaller rtol" in report.message


def test_a_loose_rtol_names_an_rtol_that_judges() -> None:
    """At rtol=1e-2 a correct estimator is an imprecise error (its scale is known to +- 0.07);
    the message used to say only "pass a smaller rtol": it now names one that judges."""
    report = check_estimator(reinforce, batched=True, max_examples=FEW, rtol=1e-2)
    _error(report, "imprecise")
    suggested = float(report.message.split("smaller rtol: rtol=")[1].split()[0])
    assert suggested < 1e-2
    assert check_estimator(reinforce, batched=True, max_examples=FEW, rtol=suggested).verdict == "unbiased"


class StrRaises(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


class StrNotStr(Exception):
    def __str__(self) -> Any:
        return 12


class UserBase(BaseException):
    pass


def _raise(exc: BaseException) -> Any:
    def est(logits: Any, samples: Any, rewards: Any) -> Any:
        raise exc

    return est


@pytest.mark.parametrize(
    ("exc", "needle"),
    [
        (StrRaises("x"), "StrRaises"),
        (StrNotStr(), "StrNotStr"),
        (UserBase("base"), "UserBase: base"),
        (GeneratorExit(), "GeneratorExit"),
        (StopIteration(), "StopIteration"),
    ],
)
def test_any_exception_is_an_error_verdict(exc: BaseException, needle: str) -> None:
    """Old: a traceback (message building raised, or BaseException escaped the guard)."""
    report = check_estimator(_raise(exc), max_examples=0)
    _error(report, "raised")
    assert needle in report.message


def test_sys_exit_inside_the_estimator_is_an_error() -> None:
    """Old: SystemExit escaped check_estimator."""

    def quits(logits: Any, samples: Any, rewards: Any) -> Any:
        sys.exit(0)

    report = check_estimator(quits, max_examples=0)
    _error(report, "exited")
    assert "sys.exit" in report.message


@pytest.mark.parametrize("phase", ["battery", "hypothesis"])
def test_keyboard_interrupt_still_stops_the_run(phase: str) -> None:
    """Ctrl-C must stop the run, in the battery and inside Hypothesis."""

    def interrupted(logits: Any, samples: Any, rewards: Any) -> Any:
        # no battery problem with n = 2 has a logit strictly between 0 and 1 in size
        generated = np.size(logits) == 2 and any(0.0 < abs(v) < 0.99 for v in logits)
        if phase == "battery" or generated:
            raise KeyboardInterrupt
        return reinforce(logits, samples, rewards)

    with pytest.raises(KeyboardInterrupt):
        check_estimator(interrupted, batched=True, max_examples=200)


class AttributeBomb:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")


def test_a_returned_object_whose_attributes_raise_is_an_error() -> None:
    """Old: the RuntimeError escaped _coerce."""

    def bomb(logits: Any, samples: Any, rewards: Any) -> Any:
        return AttributeBomb()

    report = check_estimator(bomb, max_examples=0)
    _error(report, "bad-type")
    assert "AttributeBomb" in report.message


class Nameless:
    def __getattribute__(self, name: str) -> Any:
        if name in ("__qualname__", "__name__"):
            raise RuntimeError("no name")
        return object.__getattribute__(self, name)

    def __call__(self, logits: Any, samples: Any, rewards: Any) -> Any:
        return reinforce(logits, samples, rewards)


def test_a_callable_whose_name_lookup_raises_gets_a_report() -> None:
    """Old: _name_of raised."""
    report = check_estimator(Nameless(), batched=True, max_examples=0)
    assert report.verdict == "unbiased", report.message
    assert "Nameless object" in report.name


def test_a_value_error_mentioning_read_only_is_not_a_write() -> None:
    """Old: reported as 'mutated-input' (a write into the inputs) without any write."""

    def innocent(logits: Any, samples: Any, rewards: Any) -> Any:
        raise ValueError("the policy checkpoint is read-only")

    report = check_estimator(innocent, max_examples=0)
    _error(report, "raised")
    assert "checkpoint is read-only" in report.message and "wrote" not in report.message


def test_a_real_read_only_write_is_still_named() -> None:
    def writes(logits: Any, samples: Any, rewards: Any) -> Any:
        rewards -= rewards.mean()
        return pg_reinforce(logits, samples, rewards)

    report = check_estimator(writes, max_examples=0)
    _error(report, "mutated-input")
    assert "input rewards" in report.message


# --------------------------------------------------------------------------- read-only protection


@pytest.mark.parametrize("which", ["logits", "rewards", "samples"])
@pytest.mark.parametrize("batched", [True, False])
def test_read_only_protection_cannot_be_undone_with_setflags(which: str, batched: bool) -> None:
    """Old: logits and batched rewards owned their data, so setflags(write=True) succeeded
    and the write went unreported (verdict 'unbiased', 'scaled' or 'biased')."""

    def undo(logits: Any, samples: Any, rewards: Any) -> Any:
        arrays = {"logits": logits, "samples": samples, "rewards": rewards}
        a = arrays[which]
        base = a if a.base is None or not isinstance(a.base, np.ndarray) else a.base
        base.setflags(write=True)
        base[...] = base * 0  # the write the protection must stop or report
        return (reinforce if batched else pg_reinforce)(logits, samples, rewards)

    report = check_estimator(undo, batched=batched, max_examples=0)
    assert report.verdict == "error", report.message
    assert report.error is not None and report.error.kind in ("raised", "mutated-input")
    assert "WRITEABLE" in report.message or "wrote into" in report.message


def _poke(a: Any) -> None:
    """Write into ``a``'s memory behind NumPy's back (as torch.from_numpy would)."""
    one = np.ones(1, dtype=a.dtype)
    ctypes.memmove(a.ctypes.data, one.ctypes.data, one.nbytes)


@pytest.mark.parametrize("which", ["logits", "samples", "rewards"])
def test_writes_behind_numpy_are_caught_by_comparison(which: str) -> None:
    """Old: a write through ctypes (or torch.from_numpy) into a read-only input went unseen."""

    def sneaky(logits: Any, samples: Any, rewards: Any) -> Any:
        out = reinforce(logits, samples, rewards)
        _poke({"logits": logits, "samples": samples, "rewards": rewards}[which])
        return out

    report = check_estimator(sneaky, batched=True, max_examples=0)
    _error(report, "mutated-input")
    assert f"input {which}" in report.message and "private copies" in report.message


def test_a_write_through_a_reference_kept_from_an_earlier_call_is_caught() -> None:
    """Old: the cached group table could be corrupted for every later call."""
    kept: list[Any] = []

    def hoarder(logits: Any, samples: Any, rewards: Any) -> Any:
        if kept:
            _poke(kept[0])  # the samples of the previous call
        kept[:] = [samples]
        return reinforce(logits, samples, rewards)

    _error(check_estimator(hoarder, batched=True, max_examples=0), "mutated-input")
    # and the next check starts from clean group tables
    assert check_estimator(reinforce, batched=True, max_examples=0).verdict == "unbiased"


@pytest.mark.parametrize("which", ["logits", "rewards"])
@pytest.mark.parametrize("batched", [True, False])
def test_a_late_write_into_an_earlier_calls_input_is_caught(which: str, batched: bool) -> None:
    """A write into a kept logits/rewards array of an earlier call (old: unseen)."""
    kept: list[Any] = []

    def late(logits: Any, samples: Any, rewards: Any) -> Any:
        if kept:
            _poke(kept[0])
        kept[:] = [logits if which == "logits" else rewards]
        return (reinforce if batched else pg_reinforce)(logits, samples, rewards)

    report = check_estimator(late, batched=batched, max_examples=0)
    _error(report, "mutated-input")
    assert f"input {which}" in report.message, report.message
    # per group, the kept array is usually the current problem's (rows are views of it)
    assert "later call" in report.message or not batched, report.message


@pytest.mark.torch
def test_a_write_through_torch_from_numpy_is_caught() -> None:
    torch = pytest.importorskip("torch")

    def via_torch(logits: Any, samples: Any, rewards: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "the given NumPy array is not writable"
            r = torch.from_numpy(rewards)
        r -= r.mean()  # writes into the checker's read-only buffer
        return pg_reinforce(logits, samples, rewards)

    report = check_estimator(via_torch, max_examples=0)
    _error(report, "mutated-input")
    assert "input rewards" in report.message


# --------------------------------------------------------------------------- precedence


def test_a_shape_k_output_is_a_shape_error_not_biased() -> None:
    """Old: 'biased' (the first problem had n == k, where the wrong shape fits)."""

    def k_shaped(logits: Any, samples: Any, rewards: Any) -> Any:
        return rewards - rewards.mean()  # the advantages, (k,), instead of the gradient (n,)

    report = check_estimator(k_shaped, max_examples=FEW)
    _error(report, "wrong-shape")


def test_an_error_after_a_counterexample_still_wins() -> None:
    """A bias on the first problem must not hide a crash on a later battery problem."""

    def biased_then_crashes(logits: Any, samples: Any, rewards: Any) -> Any:
        if np.size(logits) >= 4:
            raise RuntimeError("n >= 4 not supported")
        return -pg_reinforce(logits, samples, rewards)

    report = check_estimator(biased_then_crashes, max_examples=FEW)
    _error(report, "raised")


def _random_when_n_at_least_3(batched: bool) -> Any:
    rng = np.random.default_rng(0)

    def est(logits: Any, samples: Any, rewards: Any) -> Any:
        g = reinforce(logits, samples, rewards) if batched else pg_reinforce(logits, samples, rewards)
        if np.size(logits) >= 3:
            g = g + 1e-3 * rng.standard_normal(np.shape(g))
        return g

    return est


def _drifting(batched: bool, every: int) -> Any:
    calls = [0]

    def est(logits: Any, samples: Any, rewards: Any) -> Any:
        calls[0] += 1
        g = reinforce(logits, samples, rewards) if batched else pg_reinforce(logits, samples, rewards)
        return 1.01 * g if calls[0] % every == 0 else g

    return est


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "per-group"])
def test_nondeterminism_beyond_the_first_problem_is_an_error(batched: bool) -> None:
    """Old: 'biased', with a Reproduce line that did not reproduce."""
    _error(check_estimator(_random_when_n_at_least_3(batched), batched=batched, max_examples=FEW),
           "nondeterministic")
    every = 50 if batched else 1000  # the batched path makes ~50x fewer calls
    report = check_estimator(_drifting(batched, every), batched=batched, max_examples=FEW)
    _error(report, "nondeterministic")


# --------------------------------------------------------------------------- messages


def test_scale_hints_are_named_only_where_they_explain_several_k() -> None:
    """Old: 'k=1: c_k = 1 = k, a sum instead of a mean' in every such report."""

    def rloo_at_1_group_mean_after(logits: Any, samples: Any, rewards: Any) -> Any:
        if rewards.size == 1:
            return pg_reinforce(logits, samples, rewards)
        return pg_reinforce(logits, samples, rewards - rewards.mean())

    report = check_estimator(rloo_at_1_group_mean_after, group_sizes=(1, 2, 3), max_examples=FEW)
    assert report.verdict == "scaled", report.message
    assert "sum instead of a mean" not in report.message
    assert "(k-1)/k" in report.message


# --------------------------------------------------------------------------- blind regions


@pytest.mark.parametrize(
    "bug",
    [
        lambda t, x, r: pg_reinforce(t, x, r) * (1.1 if np.size(t) >= 6 else 1.0),  # n >= 6
        lambda t, x, r: pg_reinforce(np.clip(t, -50.0, 50.0), x, r),  # logits beyond 50
        lambda t, x, r: pg_reinforce(t, x, np.clip(r, -1e4, 1e4)),  # rewards beyond 1e4
    ],
    ids=["large-n", "large-logits", "large-rewards"],
)
def test_biases_outside_the_old_region_are_found(bug: Any) -> None:
    """Old: 'unbiased' (n <= 5, |logits| <= 28, |scores| <= 1e3 only)."""
    report = check_estimator(bug, max_examples=0)
    assert report.verdict == "biased", report.message
    assert "Region checked: n in 2..16" in report.message


# --------------------------------------------------------------------------- more hostile returns


class ArrayBomb:
    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no array for you")


class Sub(np.ndarray):
    pass


@pytest.mark.parametrize(
    ("make", "kind", "needle"),
    [
        (lambda g: ArrayBomb(), "bad-type", "no array for you"),
        (lambda g: np.float64(g[0]), "wrong-shape", "shape ()"),
        (lambda g: np.array([object()] * g.size), "bad-type", "object"),
        (lambda g: (v for v in g), "bad-type", "generator"),
        (lambda g: np.asmatrix(g), "wrong-shape", "type=matrix"),
        (lambda g: np.ma.masked_array(g, mask=[True] + [False] * (g.size - 1)), "bad-type", "masked"),
        (lambda g: [ArrayBomb()] * g.size, "bad-type", "no array for you"),
        (lambda g: g.astype(np.complex128), "bad-type", "complex128"),
    ],
    ids=["array-raises", "0-d", "object", "generator", "matrix", "masked", "list-of-bombs", "complex"],
)
def test_hostile_returns_are_errors(make: Any, kind: str, needle: str) -> None:
    def est(logits: Any, samples: Any, rewards: Any) -> Any:
        return make(pg_reinforce(logits, samples, rewards))

    report = check_estimator(est, max_examples=0)
    _error(report, kind)
    assert needle in report.message


def test_acceptable_unusual_returns_are_accepted() -> None:
    """An ndarray subclass and an estimator reusing its own output buffer are fine."""

    def subclass(logits: Any, samples: Any, rewards: Any) -> Any:
        return reinforce(logits, samples, rewards).view(Sub)

    buffers: dict[tuple[int, ...], Any] = {}

    def reuses_buffer(logits: Any, samples: Any, rewards: Any) -> Any:
        shape = (samples.shape[0], np.size(logits))
        out = buffers.setdefault(shape, np.empty(shape))
        out[...] = reinforce(logits, samples, rewards)
        return out

    for fn in (subclass, reuses_buffer):
        assert check_estimator(fn, batched=True, max_examples=FEW).verdict == "unbiased"


def test_global_numpy_and_warning_state_changed_by_the_estimator() -> None:
    """np.seterr(all='raise') or warnings as errors inside fn must not break the checker."""

    def meddler(logits: Any, samples: Any, rewards: Any) -> Any:
        np.seterr(all="raise")
        warnings.simplefilter("error")
        return reinforce(logits, samples, rewards)

    before = np.geterr()
    with warnings.catch_warnings():
        report = check_estimator(meddler, batched=True, max_examples=FEW)
        assert report.verdict == "unbiased", report.message
        assert np.geterr() == before
        warnings.warn("still just a warning", UserWarning, stacklevel=1)  # not an error


def test_huge_exception_messages_are_cut() -> None:
    def chatty(logits: Any, samples: Any, rewards: Any) -> Any:
        raise ValueError("x" * 10_000_000)

    report = check_estimator(chatty, max_examples=0)
    _error(report, "raised")
    assert len(report.message) < 20_000


def test_hypothesis_control_exceptions_from_the_estimator_are_errors() -> None:
    """An estimator calling hypothesis.assume/reject must not make a problem 'pass'."""
    from hypothesis import assume

    def assumes(logits: Any, samples: Any, rewards: Any) -> Any:
        assume(np.size(logits) < 3)
        return reinforce(logits, samples, rewards)

    report = check_estimator(assumes, batched=True, max_examples=FEW)
    _error(report, "raised")


# --------------------------------------------------------------------------- reproducibility


SPY = """
import hashlib, json, sys
import numpy as np
sys.path.insert(0, {root!r})
{extra}
from impl.estimators import reinforce
from properties.onestep.checker import check_estimator
seen = hashlib.sha256()
def spy(logits, samples, rewards):
    seen.update(np.asarray(logits).tobytes()); seen.update(np.asarray(rewards).tobytes())
    return reinforce(logits, samples, rewards)
report = check_estimator(spy, batched=True, seed=3, max_examples=40)
print(json.dumps([report.verdict, report.problems_checked, seen.hexdigest()]))
"""

CONSTANTS = "\n".join(f"C{i} = {v!r}" for i, v in enumerate(
    [0.123456789, 3.5e-7, 987.654321, -2.75, 12345.678, 1e-300, 7.77, -0.001, 2**-20, 41.0]
)) + "\n"


def _spy(tmp_path: Path, extra: str) -> str:
    script = SPY.format(root=str(Path(__file__).resolve().parents[1]), extra=extra)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
        check=False, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_problems_depend_on_the_seed_only_and_nothing_is_written(tmp_path: Path) -> None:
    """Old: the caller's imported modules changed the problems; .hypothesis/ appeared in cwd."""
    (tmp_path / "lots_of_constants.py").write_text(CONSTANTS)
    plain = _spy(tmp_path, "")
    with_constants = _spy(tmp_path, "sys.path.insert(0, '.'); import lots_of_constants")
    assert plain == with_constants
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lots_of_constants.py"]


def test_region_and_round_off_fields_in_json() -> None:
    def f32_inside(logits: Any, samples: Any, rewards: Any) -> Any:
        g = pg_reinforce(logits.astype(np.float32), samples, rewards.astype(np.float32))
        return g.astype(np.float64)

    report = check_estimator(f32_inside, max_examples=FEW)
    assert report.verdict == "biased", report.message  # strict: float64 output
    cex = report.counterexample
    assert cex is not None and cex.roundoff is not None, report.message
    assert cex.roundoff.dtype == "float32" and cex.roundoff.verdict == "unbiased"
    assert "Round-off?" in report.message and "float32" in report.message
    assert f"rtol={cex.roundoff.rtol:g}" in report.message
    data = report.to_dict()
    assert data["counterexample"]["roundoff"]["dtype"] == "float32"
    assert textwrap.dedent(report.message).count("Region checked:") == 1


# --------------------------------------------------------------------------- hostile arguments


class IterBomb:
    def __iter__(self) -> Any:
        raise RuntimeError("no iteration")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


class ReprBomb:
    def __repr__(self) -> str:
        raise SystemExit(2)


class LoudName(str):
    def __repr__(self) -> str:
        raise RuntimeError("repr of the name")


def test_hostile_arguments_to_the_checker_are_invalid_arguments() -> None:
    """Old: the RuntimeError/SystemExit from repr or iteration escaped _validate."""
    from impl.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match=r"group_sizes=<.*IterBomb object"):
        check_estimator(reinforce, group_sizes=IterBomb())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="callable estimator"):
        check_estimator(ReprBomb())  # type: ignore[arg-type]
    report = check_estimator(reinforce, batched=True, max_examples=0, name=LoudName("mine"))
    assert "Estimator 'mine'" in report.message


@pytest.mark.torch
def test_a_bfloat16_tensor_output_is_judged_at_bfloat16_precision() -> None:
    """Old: bad-type (torch's .numpy() refuses bfloat16); now judged with bfloat16's epsilon."""
    torch = pytest.importorskip("torch")

    def bf16(logits: Any, samples: Any, rewards: Any) -> Any:
        return torch.from_numpy(pg_reinforce(logits, samples, rewards)).to(torch.bfloat16)

    report = check_estimator(bf16, max_examples=0)
    assert report.verdict == "error", report.message
    assert report.error is not None and report.error.kind == "imprecise", report.message
    assert "bfloat16" in report.message


SEQUENCE_SPY = """
import hashlib, json, sys
import numpy as np
sys.path.insert(0, {root!r})
{extra}
from properties.sequence.checker import check_token_weights
seen = hashlib.sha256()
def spy(rewards, mask, log_probs):
    seen.update(np.asarray(rewards).tobytes()); seen.update(np.asarray(log_probs).tobytes())
    return rewards[:, None] * mask
report = check_token_weights(spy, group_sizes=(2,), max_len=2, seed=3, max_examples=15)
print(json.dumps([report.verdict, report.problems_checked, seen.hexdigest()]))
"""


def test_sequence_problems_depend_on_the_seed_only_and_nothing_is_written(tmp_path: Path) -> None:
    """The sequence checker's search is pinned like the one-step one (one checker_settings)."""
    (tmp_path / "lots_of_constants.py").write_text(CONSTANTS)

    def run(extra: str) -> str:
        script = SEQUENCE_SPY.format(root=str(Path(__file__).resolve().parents[1]), extra=extra)
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
            check=False, timeout=600,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    plain = run("")
    with_constants = run("sys.path.insert(0, '.'); import lots_of_constants")
    assert plain == with_constants
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lots_of_constants.py"]


# --------------------------------------------------------------------------- output


@pytest.mark.parametrize(
    "write",
    [
        lambda: print("debug"),
        lambda: sys.stderr.write("debug\n"),
        lambda: __import__("os").write(1, b"debug\n"),
    ],
    ids=["print", "stderr", "fd1"],
)
@pytest.mark.parametrize("batched", [False, True])
def test_an_estimator_that_prints_is_an_error_as_a_sequence_loss_is(
    write: Any, batched: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    """It used to be certified UNBIASED, its output sent to the caller's standard output (to
    stderr from the command line), while a sequence loss that prints is the ``printed`` error."""

    def noisy(logits: Any, samples: Any, rewards: Any) -> Any:
        write()
        return reinforce(logits, samples, rewards) if batched else pg_reinforce(logits, samples, rewards)

    report = check_estimator(noisy, batched=batched, max_examples=FEW)
    _error(report, "printed")
    assert "debug" in report.message and "must not print" in report.message
    assert "debug" not in capfd.readouterr().out


def test_a_multi_prompt_estimator_that_prints_is_an_error() -> None:
    def noisy(logits: Any, samples: Any, rewards: Any, group: Any) -> Any:
        print("debug")
        return np.zeros(logits.shape)

    _error(check_estimator(noisy, group_sizes=(2,), num_prompts=(2,), max_examples=2), "printed")


# --------------------------------------------------------------------------- a float32 constant


def test_a_float32_constant_in_a_float64_estimator_is_noted_and_the_verdict_stays() -> None:
    """It used to be SCALED with c_3 = 1.0000000298 and no note (float32(1/3) = (1/3)(1 + 2.98e-8))."""

    def float32_mean(logits: Any, samples: Any, rewards: Any) -> Any:
        p = _softmax(logits)
        grad = (rewards[:, None] * (np.eye(p.size)[samples] - p)).sum(0)
        return grad * float(np.float32(1.0 / samples.shape[-1]))

    report = check_estimator(float32_mean, group_sizes=(2, 3), max_examples=FEW)
    assert report.verdict == "scaled"
    note = report.scale_note
    assert note is not None and note.dtype == "float32" and note.verdict == "unbiased"
    assert "float32 constant or step inside the estimator" in report.message
    assert report.to_dict()["scale_note"]["values"] == {"k=2": "1", "k=3": "1"}
    again = check_estimator(float32_mean, group_sizes=(2, 3), max_examples=FEW, rtol=note.rtol, atol=note.atol)
    assert again.verdict == "unbiased"


def test_a_real_scale_gets_no_float32_note() -> None:
    report = check_estimator(lambda *a: pg_reinforce(*a) * (1 + 1e-6), group_sizes=(2, 3), max_examples=FEW)
    assert report.verdict == "scaled" and report.scale_note is None
    assert "scale_note" not in report.to_dict()


def test_warnings_inside_an_estimator_are_not_printed_output() -> None:
    """NumPy's divide-by-zero warning and warnings.warn in a call do not count as printing."""

    def warns(logits: Any, samples: Any, rewards: Any) -> Any:
        np.log(np.zeros(1))
        warnings.warn("user warning", stacklevel=1)
        return pg_reinforce(logits, samples, rewards)

    assert check_estimator(warns, group_sizes=(2, 3), max_examples=FEW).verdict == "unbiased"
