r"""Comparing one-step estimators: verdict, constant, exact variance and MSE against REINFORCE.

:func:`compare_estimators` judges each estimator with
:func:`~properties.onestep.checker.check_estimator` (its verdict and scale :math:`c_k`)
and then evaluates it exactly on one fixed set of problems (by default the seeded
:func:`~properties.onestep.variance.comparison_problems`), together with plain REINFORCE
(:func:`impl.estimators.reinforce`) on the same problems and ``k``.  For each ``k`` it
reports

* the **variance ratio**: :math:`\operatorname{Var}[g] / \operatorname{Var}[g_{RF}]`, and
* the **MSE ratio**: :math:`(|b|^2 + \operatorname{Var}[g]) / \operatorname{MSE}[g_{RF}]`
  (REINFORCE is unbiased, so its MSE is its variance),

each the **geometric mean over the problems** of the per-problem ratio (see
:func:`~properties.onestep.variance.geometric_mean_ratio`).  A scaled estimator
(:math:`E g = c_k \nabla J`) is compared as it is, not divided by :math:`c_k`: its MSE
carries the bias :math:`(c_k - 1)\nabla J`.

>>> from impl.estimators import reinforce, rloo, group_mean_baseline
>>> result = compare_estimators([reinforce, rloo, group_mean_baseline], batched=True,
...                             group_sizes=(2, 4), max_examples=0)
>>> [row.verdict for row in result.rows]
['unbiased', 'unbiased', 'scaled']
>>> result.ranking(4)
['group_mean_baseline', 'rloo', 'reinforce']
>>> round(result.rows[2].variance_ratio[4] / result.rows[1].variance_ratio[4], 12)  # ((k-1)/k)^2
0.5625
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from impl.errors import InvalidArgument, describe
from impl.estimators import reinforce
from properties.judging.user_code import name_of
from properties.judging.verdict import Verdict
from properties.onestep.checker import (
    DEFAULT_GROUP_SIZES,
    DEFAULT_MAX_EXAMPLES,
    check_estimator,
)
from properties.onestep.guard import EstimatorFault
from properties.onestep.variance import (
    DEFAULT_NUM_PROBLEMS,
    ComparisonProblem,
    Moments,
    as_problems,
    comparison_problems,
    estimator_moments,
    geometric_mean_ratio,
)

AGGREGATE = "geometric mean"
"""How per-problem ratios are combined into one figure per ``k`` (see the module docstring)."""

MAX_PROBLEMS = 256
"""Most problems a comparison accepts (each is enumerated at every ``k`` for every estimator)."""

_VERDICTS = ("unbiased", "scaled", "biased", "error")


@dataclass(frozen=True)
class EstimatorProfile:
    """One estimator's verdict and its exact moments on the comparison problems.

    ``moments[k][i]`` are the :class:`~properties.onestep.variance.Moments` on the ``i``-th
    problem usable at ``k``; ``None`` when there are none: the check ended in ``"error"``
    (a variance of a misbehaving estimator means nothing), or the estimator misbehaved on a
    comparison problem (``note`` says how).  ``message`` is the check's message.
    """

    name: str
    verdict: Verdict
    scale: dict[int, float] | None
    message: str
    moments: dict[int, tuple[Moments, ...]] | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return {
            "name": self.name,
            "verdict": self.verdict,
            "scale": None if self.scale is None else {str(k): c for k, c in self.scale.items()},
            "message": self.message,
            "moments": None
            if self.moments is None
            else {str(k): [m.to_dict() for m in ms] for k, ms in self.moments.items()},
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Any) -> EstimatorProfile:
        """The inverse of :meth:`to_dict`; ``ValueError`` on anything else."""
        try:
            verdict = data["verdict"]
            if verdict not in _VERDICTS:
                raise ValueError(f"unknown verdict {verdict!r}")
            scale = data["scale"]
            raw = data["moments"]
            return cls(
                name=str(data["name"]),
                verdict=verdict,
                scale=None if scale is None else {int(k): float(c) for k, c in scale.items()},
                message=str(data["message"]),
                moments=None
                if raw is None
                else {int(k): tuple(Moments.from_dict(m) for m in ms) for k, ms in raw.items()},
                note=str(data.get("note", "")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an EstimatorProfile dict ({type(exc).__name__})") from None


def profile_estimator(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    batched: bool = False,
    group_sizes: Iterable[int] = DEFAULT_GROUP_SIZES,
    seed: int = 0,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    num_problems: int = DEFAULT_NUM_PROBLEMS,
    problem_seed: int = 0,
    problems: Iterable[Any] | None = None,
) -> EstimatorProfile:
    """:func:`check_estimator` on ``fn``, then its exact moments on the comparison problems.

    The arguments are those of :func:`compare_estimators`, for one estimator (the engine
    of ``ida-verify compare``, run in a child process per estimator).
    """
    ks, chosen = _validate(group_sizes, num_problems, problem_seed, problems)
    report = check_estimator(
        fn, group_sizes=ks, seed=seed, max_examples=max_examples, batched=batched, name=name
    )
    scale = None if report.scale is None else {int(k): float(c) for k, c in report.scale.items()}
    if report.verdict == "error":
        return EstimatorProfile(
            report.name, report.verdict, scale, report.message, None,
            "no variance: the check ended in an error"
            + ("" if report.error is None else f" ({report.error.kind})"),
        )
    try:
        found = estimator_moments(fn, chosen, ks, batched=batched)
    except EstimatorFault as fault:
        return EstimatorProfile(
            report.name, report.verdict, scale, report.message, None,
            f"no variance: on a comparison problem (logits {fault.logits.tolist()}) the "
            f"estimator misbehaved ({fault.kind}): {fault.detail}",
        )
    return EstimatorProfile(report.name, report.verdict, scale, report.message, found)


def _validate(
    group_sizes: Any, num_problems: Any, problem_seed: Any, problems: Any
) -> tuple[tuple[int, ...], tuple[ComparisonProblem, ...]]:
    from properties.onestep.checker import MAX_GROUP_SIZE

    try:
        given = () if isinstance(group_sizes, str | bytes) else tuple(group_sizes)
    except TypeError:
        given = ()
    ks = tuple(sorted({int(k) for k in given}))
    if (
        not given
        or any(isinstance(k, bool) or not isinstance(k, int | np.integer) for k in given)
        or ks[0] < 1
        or ks[-1] > MAX_GROUP_SIZE
    ):
        raise InvalidArgument(
            f"Expected group sizes 1 <= k <= {MAX_GROUP_SIZE} but got {describe('group_sizes', group_sizes)}"
        )
    for label, value, low in (("num_problems", num_problems, 1), ("problem_seed", problem_seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidArgument(f"Expected an integer >= {low} but got {describe(label, value)}")
    if problems is None:
        if num_problems > MAX_PROBLEMS:
            raise InvalidArgument(
                f"Expected num_problems <= {MAX_PROBLEMS} but got {describe('num_problems', num_problems)}"
            )
        return ks, comparison_problems(num_problems, problem_seed)
    try:
        chosen = as_problems(problems)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"Expected problems as (logits, scores) pairs: {exc}") from None
    if len(chosen) > MAX_PROBLEMS:
        raise InvalidArgument(f"Expected at most {MAX_PROBLEMS} problems but got {len(chosen)}")
    return ks, chosen


class ListedProblem(Protocol):
    """A comparison problem: one-step (:class:`~properties.onestep.variance.ComparisonProblem`)
    or sequence; ``to_list()`` gives its arrays as plain lists for the JSON."""

    def to_list(self) -> list[Any]:
        """The problem's arrays as plain lists."""
        ...


@dataclass(frozen=True)
class ComparisonRow:
    """One estimator in a :class:`Comparison`: verdict, :math:`c_k`, and the ratios per ``k``.

    ``variance_ratio[k]`` and ``mse_ratio[k]`` are ``None`` when there was no variance
    (``note`` says why) or no problem had a non-zero reference variance;
    :attr:`rescaled_variance_ratio` divides the variance ratio by :math:`c_k^2`.
    """

    name: str
    verdict: Verdict
    scale: dict[int, float] | None
    variance_ratio: dict[int, float | None]
    mse_ratio: dict[int, float | None]
    note: str = ""

    @property
    def rescaled_variance_ratio(self) -> dict[int, float | None]:
        r"""The variance ratio of :math:`g / c_k`, the estimator rescaled to be unbiased
        (``None`` where :math:`c_k` or the ratio is unknown: biased, error).

        A scaled estimator's lower variance may be only its smaller scale: the
        self-inclusive group mean is :math:`\frac{k-1}{k}` RLOO, so its rescaled ratio is
        RLOO's ratio exactly.  What a learning rate tuned for it sees is this ratio.
        """
        out: dict[int, float | None] = {}
        for k, v in self.variance_ratio.items():
            c = None if self.scale is None else self.scale.get(k)
            out[k] = None if v is None or c is None or c == 0.0 else v / (c * c)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return {
            "name": self.name,
            "verdict": self.verdict,
            "scale": None if self.scale is None else {str(k): c for k, c in self.scale.items()},
            "variance_ratio": {str(k): v for k, v in self.variance_ratio.items()},
            "mse_ratio": {str(k): v for k, v in self.mse_ratio.items()},
            "rescaled_variance_ratio": {
                str(k): v for k, v in self.rescaled_variance_ratio.items()
            },
            "note": self.note,
        }


@dataclass(frozen=True)
class Comparison:
    r"""Several estimators judged on the same problems (:func:`compare_estimators`).

    ``rows`` in the order given; ``reference_variance[k]`` is the geometric mean of plain
    REINFORCE's variance over the problems at ``k``; ``problems_used[k]`` how many
    problems entered the ratios at ``k`` (``problems_skipped[k]``: left out, their
    reference variance being zero); ``problems`` the comparison problems themselves.
    ``str(comparison)`` is the table.
    """

    rows: tuple[ComparisonRow, ...]
    group_sizes: tuple[int, ...]
    reference_variance: dict[int, float | None]
    problems_used: dict[int, int]
    problems_skipped: dict[int, int]
    problems: tuple[ListedProblem, ...] = field(repr=False)
    source: str = ""
    aggregate: str = AGGREGATE

    @property
    def complete(self) -> bool:
        """Every estimator has a variance ratio at every ``k`` (nothing was left out)."""
        return all(
            row.variance_ratio.get(k) is not None for row in self.rows for k in self.group_sizes
        )

    def ranking(self, k: int, *, by: str = "variance") -> list[str]:
        """The estimators' names at ``k``, lowest ``by`` (``"variance"`` or ``"mse"``) ratio first
        (those without a ratio are left out)."""
        if by not in ("variance", "mse"):
            raise InvalidArgument(f"Expected by='variance' or 'mse' but got {describe('by', by)}")
        pairs = []
        for row in self.rows:
            value = (row.variance_ratio if by == "variance" else row.mse_ratio).get(k)
            if value is not None:
                pairs.append((value, row.name))
        return [name for _, name in sorted(pairs, key=lambda t: t[0])]

    def table(self) -> str:
        """The comparison as one text table, a line per estimator and ``k``."""
        lines = [
            f"Compared on {self.source or 'the given problems'}.",
            f"Ratios: the {self.aggregate} over the problems of (estimator / plain REINFORCE) at "
            "the same problem and k; MSE = |bias|^2 + variance; var/c_k^2: the variance ratio "
            "of g / c_k (rescaled to be unbiased).",
        ]
        for k in self.group_sizes:
            ref = self.reference_variance.get(k)
            skipped = self.problems_skipped.get(k, 0)
            lines.append(
                f"  k={k}: {self.problems_used.get(k, 0)} problems"
                + (f" ({skipped} left out: zero REINFORCE variance)" if skipped else "")
                + f", REINFORCE variance {_num(ref)}"
            )
        width = max([len("estimator")] + [len(r.name) for r in self.rows])
        lines.append(
            f"{'estimator':<{width}}  {'verdict':<8}  {'k':>2}  {'c_k':>8}  "
            f"{'var ratio':>10}  {'MSE ratio':>10}  {'var/c_k^2':>10}"
        )
        for row in self.rows:
            for i, k in enumerate(self.group_sizes):
                c = None if row.scale is None else row.scale.get(k)
                lines.append(
                    f"{row.name if i == 0 else '':<{width}}  {row.verdict if i == 0 else '':<8}  "
                    f"{k:>2}  {_num(c):>8}  {_num(row.variance_ratio.get(k)):>10}  "
                    f"{_num(row.mse_ratio.get(k)):>10}  "
                    f"{_num(row.rescaled_variance_ratio.get(k)):>10}"
                )
            if row.note:
                lines.append(f"{'':<{width}}  ({row.note})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields (the problems as ``[logits, scores]`` lists)."""
        return {
            "aggregate": self.aggregate,
            "source": self.source,
            "group_sizes": list(self.group_sizes),
            "reference": "reinforce",
            "reference_variance": {str(k): v for k, v in self.reference_variance.items()},
            "problems_used": {str(k): v for k, v in self.problems_used.items()},
            "problems_skipped": {str(k): v for k, v in self.problems_skipped.items()},
            "problems": [p.to_list() for p in self.problems],
            "rows": [row.to_dict() for row in self.rows],
        }

    def to_json(self) -> str:
        """``to_dict()`` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)


def _num(value: float | None) -> str:
    """``value`` with 4 significant digits, ``-`` for ``None``.

    >>> _num(None), _num(0.5625), _num(1.0), _num(2.5e-7)
    ('-', '0.5625', '1', '2.5e-07')
    """
    return "-" if value is None else f"{value:.4g}"


def comparison_from_profiles(
    profiles: Sequence[EstimatorProfile],
    group_sizes: Sequence[int],
    problems: Sequence[ComparisonProblem],
    *,
    source: str = "",
) -> Comparison:
    """Build the :class:`Comparison` from the profiles, evaluating plain REINFORCE here.

    Every profile's moments must have been computed on ``problems`` at ``group_sizes``; one
    whose moments do not line up with them is shown without ratios, with a note.
    """
    ks = tuple(group_sizes)
    reference = estimator_moments(reinforce, problems, ks, batched=True)
    return comparison_against(profiles, reference, ks, problems, source=source)


def comparison_against(
    profiles: Sequence[EstimatorProfile],
    reference: dict[int, tuple[Moments, ...]],
    group_sizes: Sequence[int],
    problems: Sequence[ListedProblem],
    *,
    source: str = "",
) -> Comparison:
    """The :class:`Comparison` of the profiles against the ``reference`` moments (the same
    problems at every ``k``, in the same order): the builder for any protocol."""
    ks = tuple(group_sizes)
    rows = []
    used: dict[int, int] = {}
    skipped: dict[int, int] = {}
    reference_variance: dict[int, float | None] = {}
    for k in ks:
        ref = reference[k]
        positive = [m.variance for m in ref if m.variance > 0.0]
        reference_variance[k] = (
            math.exp(math.fsum(math.log(v) for v in positive) / len(positive)) if positive else None
        )
        probe = geometric_mean_ratio([m.variance for m in ref], ref)
        used[k], skipped[k] = probe.used, probe.skipped
    for profile in profiles:
        var: dict[int, float | None] = dict.fromkeys(ks)
        mse: dict[int, float | None] = dict.fromkeys(ks)
        note = profile.note
        if profile.moments is not None:
            if any(len(profile.moments.get(k, ())) != len(reference[k]) for k in ks):
                note = "no variance: its moments were not computed on the comparison problems"
            else:
                for k in ks:
                    ms = profile.moments[k]
                    var[k] = geometric_mean_ratio([m.variance for m in ms], reference[k]).value
                    mse[k] = geometric_mean_ratio([m.mse for m in ms], reference[k], of="mse").value
        rows.append(ComparisonRow(profile.name, profile.verdict, profile.scale, var, mse, note))
    return Comparison(
        rows=tuple(rows), group_sizes=ks, reference_variance=reference_variance,
        problems_used=used, problems_skipped=skipped, problems=tuple(problems), source=source,
    )


def describe_source(
    problems: Sequence[ComparisonProblem], problem_seed: int | None = None
) -> str:
    """How the comparison problems were chosen, for the table's first line (``problem_seed``:
    the seeded set of :func:`~properties.onestep.variance.comparison_problems`; ``None``:
    given by the caller).

    >>> from properties.onestep.variance import comparison_problems
    >>> describe_source(comparison_problems(3), 0)
    '3 seeded problems (problem_seed=0: n in {2, 3, 4}, logits ~ N(0, 1), rewards ~ U[0, 1])'
    >>> describe_source(comparison_problems(3))
    '3 given problems (n in {2, 3, 4})'
    """
    sizes = "{" + ", ".join(str(n) for n in sorted({p.n for p in problems})) + "}"
    if problem_seed is None:
        return f"{len(problems)} given problems (n in {sizes})"
    return (
        f"{len(problems)} seeded problems (problem_seed={problem_seed}: n in {sizes}, "
        "logits ~ N(0, 1), rewards ~ U[0, 1])"
    )


def compare_estimators(
    estimators: Iterable[Callable[..., Any]],
    *,
    names: Sequence[str] | None = None,
    batched: bool | Sequence[bool] = False,
    group_sizes: Iterable[int] = DEFAULT_GROUP_SIZES,
    seed: int = 0,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    num_problems: int = DEFAULT_NUM_PROBLEMS,
    problem_seed: int = 0,
    problems: Iterable[Any] | None = None,
) -> Comparison:
    r"""Judge several estimators on the same problems: verdict, :math:`c_k`, variance and MSE.

    Each estimator is checked with :func:`check_estimator` (``group_sizes``, ``seed``,
    ``max_examples``; ``batched`` for all, or one flag per estimator; ``names`` to name
    them in the table), then evaluated exactly on the comparison problems: ``problems``
    (``(logits, scores)`` pairs) if given, else ``num_problems`` seeded problems
    (:func:`~properties.onestep.variance.comparison_problems` with ``problem_seed``).  At
    each ``k`` the problems with ``n**k`` above the enumeration budget are left out.
    Variance and MSE are reported relative to plain REINFORCE at the same problem and
    ``k``, as the geometric mean over the problems.  An estimator whose check ends in
    ``"error"`` gets no variance (its row says so and :attr:`Comparison.complete` is false).

    The one-step protocol only (one group per call, or per batch row with ``batched``):
    the multi-prompt protocol (``num_prompts``) and sequence losses are not compared yet
    (for a sequence loss, :func:`properties.sequence.variance.sequence_moments` gives the
    exact variance on one problem).  Raises :class:`impl.errors.InvalidArgument` for bad
    arguments (never for misbehaving estimators).
    """
    try:
        fns = [] if isinstance(estimators, str | bytes) else list(estimators)
    except KeyboardInterrupt:
        raise
    except BaseException:  # a hostile iterable: say what it was, not its traceback
        fns = []
    if not fns or not all(callable(f) for f in fns):
        raise InvalidArgument(
            f"Expected a non-empty sequence of callables but got {describe('estimators', estimators)}"
        )
    flags = [batched] * len(fns) if isinstance(batched, bool) else list(batched)
    if len(flags) != len(fns) or not all(isinstance(b, bool) for b in flags):
        raise InvalidArgument(
            f"Expected batched as one bool or one per estimator but got {describe('batched', batched)}"
        )
    shown = [name_of(f) for f in fns] if names is None else [str(n) for n in names]
    if len(shown) != len(fns):
        raise InvalidArgument(f"Expected one name per estimator but got {describe('names', names)}")
    ks, chosen = _validate(group_sizes, num_problems, problem_seed, problems)
    profiles = [
        profile_estimator(
            fn, name=name, batched=flag, group_sizes=ks, seed=seed, max_examples=max_examples,
            problems=chosen,
        )
        for fn, name, flag in zip(fns, shown, flags, strict=True)
    ]
    source = describe_source(chosen, None if problems is not None else problem_seed)
    return comparison_from_profiles(profiles, ks, chosen, source=source)


__all__ = [
    "AGGREGATE",
    "MAX_PROBLEMS",
    "Comparison",
    "ComparisonRow",
    "EstimatorProfile",
    "ListedProblem",
    "compare_estimators",
    "comparison_against",
    "comparison_from_profiles",
    "describe_source",
    "profile_estimator",
]
