"""The sequence checker's arguments: validated where they enter, and the batch budget they must fit."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from impl.errors import InvalidArgument, describe
from impl.sequence import MAX_VOCAB, num_responses
from properties.sequence.problems import (
    MAX_BATCHES_LOOPED,
    MAX_BATCHES_VECTORISED,
)

MAX_GROUP_SIZE = 12
"""Largest ``k`` accepted (only ``V = 2, T = 1`` fits the budget at ``k = 12``)."""

MAX_NUM_PROMPTS = 4
"""Largest ``P`` accepted."""

MAX_LEN_LIMIT = 8
"""Largest ``max_len`` accepted."""

MAX_SEED = 2**64
"""Largest ``seed`` accepted."""

MAX_MAX_EXAMPLES = 10**6
"""Largest ``max_examples`` accepted."""


def batch_budget(*, weights: bool, batched: bool = False) -> int:
    """The largest number of batches per problem a check plans for at first: a PyTorch loss
    (``weights=False``) starts under ``vmap``, token weights are looped unless ``batched``.

    >>> batch_budget(weights=False), batch_budget(weights=True), batch_budget(weights=True, batched=True)
    (8192, 256, 8192)
    """
    return MAX_BATCHES_LOOPED if weights and not batched else MAX_BATCHES_VECTORISED


def smallest_over_budget(
    group_sizes: Iterable[int], num_prompts: Iterable[int], budget: int
) -> tuple[int, int, int] | None:
    """``(k, P, batches)`` of the smallest shape (``V = 2``, ``T = 1``) when even it has more
    than ``budget`` batches, so that no shape at all can be checked; ``None`` otherwise.

    >>> smallest_over_budget((12,), (2,), 8192)
    (12, 2, 16777216)
    >>> smallest_over_budget((2, 12), (1,), 8192) is None
    True
    """
    k, p = min(group_sizes), min(num_prompts)
    batches = num_responses(2, 1) ** (k * p)
    return (k, p, batches) if batches > budget else None


def _require_some_shape(opts: dict[str, Any], budget: int, how: str, *, fallback: bool = False) -> None:
    """:class:`impl.errors.InvalidArgument` when no shape fits ``budget`` (nothing could be checked).

    After the ``vmap`` fallback (``fallback=True``) the message names no Python parameter:
    the command line passes it on as its own one line.
    """
    over = smallest_over_budget(opts["group_sizes"], opts["num_prompts"], budget)
    if over is None:
        return
    k, p, batches = over
    smallest = f"the smallest shape, V=2, T=1, k={k}, P={p}, has {batches} batches"
    if fallback:
        raise InvalidArgument(
            f"no shape fits the batch budget of {budget} batches per problem of a loss called "
            f"once per batch ({how}): {smallest}; use smaller group sizes or fewer prompts"
        )
    raise InvalidArgument(
        f"Expected group_sizes and num_prompts with at least one shape within the batch "
        f"budget ({budget} batches per problem, {how}) but got group_sizes="
        f"{opts['group_sizes']}, num_prompts={opts['num_prompts']}: {smallest}; use smaller "
        "group sizes or fewer prompts"
    )


def _int_tuple(name: str, value: Any, low: int, high: int) -> tuple[int, ...]:
    try:
        items = tuple(value)
    except TypeError:
        raise InvalidArgument(
            f"Expected a sequence of integers but got {describe(name, value)}"
        ) from None
    if not items or any(
        isinstance(x, bool) or not isinstance(x, int | np.integer) or not low <= x <= high
        for x in items
    ):
        raise InvalidArgument(
            f"Expected a non-empty sequence of integers {low} <= x <= {high} but got {describe(name, value)}"
        )
    return tuple(sorted({int(x) for x in items}))


def _validate(
    fn: Any,
    group_sizes: Any,
    vocab_size: Any,
    max_len: Any,
    kl_coef: Any,
    off_policy: Any,
    num_prompts: Any,
    seed: Any,
    max_examples: Any,
    rtol: Any,
    atol: Any,
) -> dict[str, Any]:
    if not callable(fn):
        raise InvalidArgument(f"Expected a callable but got {describe('fn', fn)}")
    ks = _int_tuple("group_sizes", group_sizes, 1, MAX_GROUP_SIZE)
    prompts = _int_tuple("num_prompts", num_prompts, 1, MAX_NUM_PROMPTS)
    for name, value, low, high in (
        ("vocab_size", vocab_size, 2, MAX_VOCAB),
        ("max_len", max_len, 1, MAX_LEN_LIMIT),
        ("seed", seed, 0, MAX_SEED),
        ("max_examples", max_examples, 0, MAX_MAX_EXAMPLES),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | np.integer)
            or not low <= value <= high
        ):
            raise InvalidArgument(
                f"Expected an integer {low} <= {name} <= {high} but got {describe(name, value)}"
            )
    if (
        isinstance(kl_coef, bool)
        or not isinstance(kl_coef, int | float)
        or not (math.isfinite(kl_coef) and kl_coef >= 0)
    ):
        raise InvalidArgument(
            f"Expected a finite kl_coef >= 0 but got {describe('kl_coef', kl_coef)}"
        )
    if not isinstance(off_policy, bool):
        raise InvalidArgument(
            f"Expected off_policy=True or False but got {describe('off_policy', off_policy)}"
        )
    if rtol is not None and not (
        isinstance(rtol, float | int)
        and not isinstance(rtol, bool)
        and math.isfinite(rtol)
        and rtol > 0
    ):
        raise InvalidArgument(
            f"Expected rtol=None or a finite float > 0 but got {describe('rtol', rtol)}"
        )
    if isinstance(atol, bool) or not (
        isinstance(atol, float | int) and math.isfinite(atol) and atol >= 0
    ):
        raise InvalidArgument(f"Expected a finite atol >= 0 but got {describe('atol', atol)}")
    return {
        "group_sizes": ks,
        "num_prompts": prompts,
        "vocab_size": int(vocab_size),
        "max_len": int(max_len),
        "kl_coef": float(kl_coef),
        "off_policy": off_policy,
        "seed": int(seed),
        "max_examples": int(max_examples),
        "rtol": None if rtol is None else float(rtol),
        "atol": float(atol),
    }


FIELD_OPTIONS = ("tool_tokens", "sampling_mismatch", "values")
"""The options that add a field libraries pass to the batch (holes in the mask, the inference
engine's log-probs, a critic's values); a check's settings name them only when they are set."""


def _field_options(opts: dict[str, Any], tool_tokens: Any, sampling_mismatch: Any, values: Any) -> None:
    """Validate ``tool_tokens``, ``sampling_mismatch`` and ``values`` and record in ``opts`` those set.

    Only set options are recorded, so that the settings of every other check stay as they were.

    >>> opts: dict[str, Any] = {}
    >>> _field_options(opts, False, True, "exact"); opts
    {'sampling_mismatch': True, 'values': 'exact'}
    """
    for flag, value in (("tool_tokens", tool_tokens), ("sampling_mismatch", sampling_mismatch)):
        if not isinstance(value, bool):
            raise InvalidArgument(f"Expected {flag}=True or False but got {describe(flag, value)}")
        if value:
            opts[flag] = True
    if values not in (None, "random", "exact"):
        raise InvalidArgument(
            f"Expected values=None, 'random' or 'exact' but got {describe('values', values)}"
        )
    if values is not None:
        opts["values"] = values
