r"""Comparing sequence losses or token-weight functions: verdict, constant, variance, MSE.

:func:`compare_sequence_losses` is :func:`properties.compare_estimators` for the sequence
protocols.  Each function is judged by :func:`~properties.sequence.checker.check_sequence_loss`
(or :func:`~properties.sequence.checker.check_token_weights`), then evaluated exactly on a
fixed seeded set of problems of one shape (``V`` = ``vocab_size`` tokens, responses of
at most ``T`` = ``max_len`` tokens, one prompt), with its variance
:math:`\sum_b w_b |g_b - E g|^2` over all batches (:mod:`properties.sequence.variance`).
Variance and MSE are reported relative to plain REINFORCE **with the aggregation named by**
``reference`` (:data:`REFERENCES`), at the same problem and ``k``, as the geometric mean
over the problems; the table is a :class:`~properties.onestep.compare.Comparison`, its
constant :math:`c_k` the one measured at ``(k, T, 1)``.

>>> import numpy as np
>>> def rloo(rewards, mask, log_probs):
...     k = rewards.shape[0]
...     return (rewards - (rewards.sum() - rewards) / (k - 1))[:, None] * mask / k
>>> result = compare_sequence_losses([rloo], protocol="token-weights", group_sizes=(2,),
...                                  max_len=1, max_examples=0, num_problems=2)
>>> result.rows[0].verdict, result.rows[0].variance_ratio[2] < 1
('unbiased', True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from impl.errors import InvalidArgument, describe
from impl.sequence import MAX_VOCAB
from impl.types import FloatArray
from properties.judging.user_code import name_of
from properties.onestep.compare import (
    MAX_PROBLEMS,
    Comparison,
    EstimatorProfile,
    comparison_against,
)
from properties.onestep.variance import DEFAULT_NUM_PROBLEMS, Moments
from properties.sequence.checker import (
    DEFAULT_MAX_EXAMPLES,
    check_sequence_loss,
    check_token_weights,
)
from properties.sequence.options import (
    MAX_LEN_LIMIT,
)
from properties.sequence.variance import sequence_moments

DEFAULT_COMPARE_SIZES = (2, 3)
"""Group sizes compared unless told otherwise (``V**T`` responses make ``k = 4`` costly)."""

DEFAULT_COMPARE_VOCAB = 3
"""Vocabulary of the comparison problems, EOS included."""

DEFAULT_COMPARE_LEN = 2
"""Longest response of the comparison problems."""

MAX_COMPARE_BATCHES = 20_000
"""Most batches ``R**k`` one comparison problem may have (``R`` responses)."""


def _sum(rewards: Any, mask: Any, log_probs: Any) -> Any:
    """REINFORCE, each token's score weighted by its response's reward, mean over responses."""
    return rewards[:, None] * mask / rewards.shape[0]


def _token_mean(rewards: Any, mask: Any, log_probs: Any) -> Any:
    """REINFORCE with a per-response token mean (a weight of ``1/|y|``: biased)."""
    return rewards[:, None] * mask / (rewards.shape[0] * mask.sum(axis=1, keepdims=True))


def _max_len(rewards: Any, mask: Any, log_probs: Any) -> Any:
    """REINFORCE divided by the constant ``T`` (Dr. GRPO's aggregation: scaled by ``1/T``)."""
    return rewards[:, None] * mask / (rewards.shape[0] * mask.shape[1])


REFERENCES: dict[str, Callable[..., Any]] = {
    "sum": _sum,
    "token-mean": _token_mean,
    "max-len": _max_len,
}
"""Plain REINFORCE token weights per aggregation: ``"sum"`` over the tokens (unbiased),
``"token-mean"`` per response, ``"max-len"`` (divided by the constant ``T``)."""


@dataclass(frozen=True)
class SequenceComparisonProblem:
    """One comparison problem: ``theta`` ``(1, N+1, V)`` and ``rewards`` ``(1, R)``."""

    theta: FloatArray
    rewards: FloatArray

    def to_list(self) -> list[Any]:
        """``[theta, rewards]`` as plain lists."""
        return [self.theta.tolist(), self.rewards.tolist()]


def sequence_problems(
    vocab_size: int, max_len: int, count: int = DEFAULT_NUM_PROBLEMS, seed: int = 0
) -> tuple[SequenceComparisonProblem, ...]:
    r"""``count`` seeded problems of one shape: logits :math:`N(0, 1)`, rewards :math:`U[0, 1]`,
    both rounded to 3 decimals (``np.random.default_rng(seed)``).

    With ``V`` tokens (EOS included) and length cap ``T`` there are
    :math:`N = \sum_{d<T}(V-1)^d` nodes (plus the after-the-end one) and
    :math:`R = \sum_{d\le T}(V-1)^d` responses.

    >>> p = sequence_problems(3, 2, 1)[0]
    >>> p.theta.shape, p.rewards.shape
    ((1, 4, 3), (1, 7))
    """
    nodes = sum((vocab_size - 1) ** d for d in range(max_len))
    responses = sum((vocab_size - 1) ** d for d in range(max_len + 1))
    rng = np.random.default_rng(seed)
    return tuple(
        SequenceComparisonProblem(
            np.round(rng.normal(size=(1, nodes + 1, vocab_size)), 3),
            np.round(rng.uniform(size=(1, responses)), 3),
        )
        for _ in range(count)
    )


def _moments(
    fn: Callable[..., Any],
    problems: Sequence[SequenceComparisonProblem],
    ks: Sequence[int],
    protocol: str,
    batched: bool,
    kl_coef: float,
) -> dict[int, tuple[Moments, ...]]:
    return {
        k: tuple(
            sequence_moments(
                fn, theta=p.theta, rewards=p.rewards, k=k, kl_coef=kl_coef, protocol=protocol,
                batched=batched,
            )
            for p in problems
        )
        for k in ks
    }


def _validate(
    fns: list[Any], protocol: Any, reference: Any, group_sizes: Any, vocab_size: Any,
    max_len: Any, num_problems: Any, problem_seed: Any,
) -> tuple[int, ...]:
    if not fns or not all(callable(f) for f in fns):
        raise InvalidArgument(f"Expected a non-empty sequence of callables but got {describe('fns', fns)}")
    return validate_arguments(
        protocol, reference, group_sizes, vocab_size, max_len, num_problems, problem_seed
    )


def validate_arguments(
    protocol: Any, reference: Any, group_sizes: Any, vocab_size: Any, max_len: Any,
    num_problems: Any, problem_seed: Any,
) -> tuple[int, ...]:
    """The sorted group sizes, or :class:`impl.errors.InvalidArgument` naming the bad argument."""
    if protocol not in ("sequence-loss", "token-weights"):
        raise InvalidArgument(
            f"Expected protocol='sequence-loss' or 'token-weights' but got {describe('protocol', protocol)}"
        )
    if reference not in REFERENCES:
        raise InvalidArgument(
            f"Expected reference in {sorted(REFERENCES)} but got {describe('reference', reference)}"
        )
    given = () if isinstance(group_sizes, str | bytes) else tuple(group_sizes)
    if not given or any(
        isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2 for k in given
    ):
        raise InvalidArgument(f"Expected group sizes k >= 2 but got {describe('group_sizes', group_sizes)}")
    ks = tuple(sorted({int(k) for k in given}))
    for label, value, low, high in (
        ("vocab_size", vocab_size, 2, MAX_VOCAB),
        ("max_len", max_len, 1, MAX_LEN_LIMIT),
        ("num_problems", num_problems, 1, MAX_PROBLEMS),
        ("problem_seed", problem_seed, 0, 2**63 - 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidArgument(
                f"Expected an integer {low} <= {label} <= {high} but got {describe(label, value)}"
            )
    responses = sum((vocab_size - 1) ** d for d in range(max_len + 1))
    if responses ** max(ks) > MAX_COMPARE_BATCHES:
        raise InvalidArgument(
            f"Expected at most {MAX_COMPARE_BATCHES} batches per problem but vocab_size="
            f"{vocab_size}, max_len={max_len} give {responses} responses, {responses}**{max(ks)} "
            "batches at the largest k; compare smaller shapes or groups"
        )
    return ks


def profile_sequence_loss(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    protocol: str = "sequence-loss",
    batched: bool = False,
    group_sizes: Iterable[int] = DEFAULT_COMPARE_SIZES,
    vocab_size: int = DEFAULT_COMPARE_VOCAB,
    max_len: int = DEFAULT_COMPARE_LEN,
    kl_coef: float = 0.0,
    seed: int = 0,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    num_problems: int = DEFAULT_NUM_PROBLEMS,
    problem_seed: int = 0,
) -> EstimatorProfile:
    """One function's check and exact moments on the comparison problems (the arguments of
    :func:`compare_sequence_losses`; the engine of ``ida-verify compare --sequence``, run in
    a child process per function)."""
    ks = _validate([fn], protocol, "sum", group_sizes, vocab_size, max_len, num_problems, problem_seed)
    problems = sequence_problems(vocab_size, max_len, num_problems, problem_seed)
    options: dict[str, Any] = {
        "group_sizes": ks, "vocab_size": vocab_size, "max_len": max_len, "kl_coef": kl_coef,
        "seed": seed, "max_examples": max_examples, "name": name,
    }
    if protocol == "sequence-loss":
        report = check_sequence_loss(fn, **options)
    else:
        report = check_token_weights(fn, batched=batched, **options)
    scale = (
        None
        if report.scale is None
        # keyed (k, T, P, V): the constant at the longest responses, one prompt, the largest V
        else {key[0]: c for key, c in sorted(report.scale.items()) if key[1] == max_len and key[2] == 1}
    )
    if report.verdict == "error":
        kind = "" if report.error is None else f" ({report.error.kind})"
        return EstimatorProfile(
            report.name, report.verdict, scale, report.message, None,
            f"no variance: the check ended in an error{kind}",
        )
    try:
        found = _moments(fn, problems, ks, protocol, batched, kl_coef)
    except InvalidArgument as exc:
        return EstimatorProfile(
            report.name, report.verdict, scale, report.message, None,
            f"no variance: on a comparison problem {exc}",
        )
    return EstimatorProfile(report.name, report.verdict, scale, report.message, found)


def sequence_comparison(
    profiles: Sequence[EstimatorProfile],
    *,
    reference: str = "sum",
    group_sizes: Iterable[int] = DEFAULT_COMPARE_SIZES,
    vocab_size: int = DEFAULT_COMPARE_VOCAB,
    max_len: int = DEFAULT_COMPARE_LEN,
    kl_coef: float = 0.0,
    num_problems: int = DEFAULT_NUM_PROBLEMS,
    problem_seed: int = 0,
) -> Comparison:
    """The :class:`Comparison` of the profiles against the ``reference`` REINFORCE, evaluated
    here on the same problems (our own code: the command line runs this in the parent)."""
    ks = tuple(sorted(set(group_sizes)))
    problems = sequence_problems(vocab_size, max_len, num_problems, problem_seed)
    ref = _moments(REFERENCES[reference], problems, ks, "token-weights", False, kl_coef)
    source = (
        f"{num_problems} seeded sequence problems (problem_seed={problem_seed}: V={vocab_size}, "
        f"T={max_len}, one prompt, logits ~ N(0, 1), rewards ~ U[0, 1]; reference: REINFORCE, "
        f"aggregation {reference!r})"
    )
    return comparison_against(profiles, ref, ks, problems, source=source)


def compare_sequence_losses(
    fns: Iterable[Callable[..., Any]],
    *,
    protocol: str = "sequence-loss",
    reference: str = "sum",
    names: Sequence[str] | None = None,
    batched: bool = False,
    group_sizes: Iterable[int] = DEFAULT_COMPARE_SIZES,
    vocab_size: int = DEFAULT_COMPARE_VOCAB,
    max_len: int = DEFAULT_COMPARE_LEN,
    kl_coef: float = 0.0,
    seed: int = 0,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    num_problems: int = DEFAULT_NUM_PROBLEMS,
    problem_seed: int = 0,
) -> Comparison:
    """Judge several sequence losses (``protocol="sequence-loss"``, PyTorch) or token-weight
    functions (``"token-weights"``, NumPy; ``batched`` for all) on the same problems.

    Each is checked (``group_sizes``, ``vocab_size``, ``max_len``, ``kl_coef``, ``seed``,
    ``max_examples``; on-policy, one prompt), then evaluated exactly on ``num_problems``
    seeded problems with ``V = vocab_size`` and ``T = max_len``
    (:func:`sequence_problems`); variance and MSE are relative to the :data:`REFERENCES`
    entry ``reference`` at the same problem and ``k``.  A function whose check ends in
    ``"error"``, or that misbehaves on a comparison problem, gets no variance (its row
    says why, and :attr:`Comparison.complete` is false).  Raises
    :class:`impl.errors.InvalidArgument` for bad arguments.
    """
    try:
        fns = [] if isinstance(fns, str | bytes) else list(fns)
    except KeyboardInterrupt:
        raise
    except BaseException:  # a hostile iterable: say what it was, not its traceback
        fns = []
    ks = _validate(fns, protocol, reference, group_sizes, vocab_size, max_len, num_problems, problem_seed)
    shown = [name_of(f) for f in fns] if names is None else [str(n) for n in names]
    if len(shown) != len(fns):
        raise InvalidArgument(f"Expected one name per function but got {describe('names', names)}")
    shape: dict[str, Any] = {
        "group_sizes": ks, "vocab_size": vocab_size, "max_len": max_len, "kl_coef": kl_coef,
        "num_problems": num_problems, "problem_seed": problem_seed,
    }
    profiles = [
        profile_sequence_loss(
            fn, name=name, protocol=protocol, batched=batched, seed=seed,
            max_examples=max_examples, **shape,
        )
        for fn, name in zip(fns, shown, strict=True)
    ]
    return sequence_comparison(profiles, reference=reference, **shape)


__all__ = [
    "DEFAULT_COMPARE_LEN",
    "DEFAULT_COMPARE_SIZES",
    "DEFAULT_COMPARE_VOCAB",
    "MAX_COMPARE_BATCHES",
    "REFERENCES",
    "SequenceComparisonProblem",
    "compare_sequence_losses",
    "profile_sequence_loss",
    "sequence_comparison",
    "sequence_problems",
    "validate_arguments",
]
