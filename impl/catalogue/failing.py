"""One-step estimators whose expected verdict is ``error``, and those biased only through the
round-off of a coarser dtype."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from impl import estimators as _ref
from impl.catalogue.entry import (
    EMA_DECAY,
    LOGIT_CLAMP,
    NOISE_STD,
    PERCENT,
    REWARD_CLIP,
    TOP_K_SOFTMAX,
)
from impl.catalogue.estimators import _need_k2, _onehot, _reinforce_float32, _rw
from impl.policy import group_gradient, softmax
from impl.types import FloatArray, Gradient, Logits, Rewards, Samples

# --------------------------------------------------------------------------- error


def _raises_value_error(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    raise ValueError("estimator not implemented for tabular policies")


def _returns_none(logits: Logits, samples: Samples, rewards: Rewards) -> Any:
    group_gradient(logits, samples, _rw(samples, rewards))  # computed, never returned
    return None


def _wrong_shape(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    # "the gradient sums to zero, so the last coordinate is redundant"
    out: Gradient = _ref.reinforce(logits, samples, rewards)[:, :-1]
    return out


def _nan_on_negative(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.exp(np.log(r))  # rewards "in log space": NaN for r < 0
    return group_gradient(logits, samples, w)


def _nondeterministic(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    g = _ref.reinforce(logits, samples, rewards)
    rng = np.random.default_rng()  # the bug: a fresh unseeded generator per call
    out: Gradient = g + NOISE_STD * rng.standard_normal(g.shape)
    return out


def _mutates_rewards(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    r -= r.mean(axis=-1, keepdims=True)  # in place: the caller's rewards change
    return group_gradient(logits, samples, r)


def _in_place_sort(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    x, r = np.asarray(samples), _rw(samples, rewards)
    order = np.argsort(r, axis=-1, kind="stable")
    x[...] = np.take_along_axis(x, order, axis=-1)  # consistent, but in place
    r[...] = np.take_along_axis(r, order, axis=-1)
    return _ref.reinforce(logits, x, r)


def _per_group_only(logits: Logits, samples: Samples, rewards: Rewards) -> Any:
    # written for samples (k,) -> (n,): the sum over axis 0 eats the batch axis too
    r = _rw(samples, rewards)
    p = softmax(logits)
    score = _onehot(samples, p.size) - p
    return (r[..., None] * score).reshape(-1, p.size).sum(axis=0) / r.shape[-1]


def _rloo_unguarded(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    k = r.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        loo = (r.sum(axis=-1, keepdims=True) - r) / np.float64(k - 1)  # 0/0 at k = 1
    return group_gradient(logits, samples, r - loo)


def _batch_mean_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    return group_gradient(logits, samples, r - r.mean())  # the mean over the whole batch


def _detects_full_enumeration(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    g = _ref.reinforce(logits, samples, rewards)
    b, k = np.shape(samples)
    if b == softmax(logits).size ** k:  # "this must be the test harness"
        return g
    out: Gradient = -g
    return out


def _softmax_without_max(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    theta = np.asarray(logits, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        e = np.exp(theta)  # no max subtraction: inf past theta ~ 709, 0 below -745
        p = e / e.sum()
    out: Gradient = np.einsum("bk,bkn->bn", r, _onehot(samples, theta.size) - p) / r.shape[-1]
    return out


def _returns_integer(logits: Logits, samples: Samples, rewards: Rewards) -> Any:
    return np.rint(_ref.reinforce(logits, samples, rewards)).astype(np.int64)


def _reinforce_float16(logits: Logits, samples: Samples, rewards: Rewards) -> Any:
    with np.errstate(over="ignore"):
        return _ref.reinforce(logits, samples, rewards).astype(np.float16)


def _calls_sys_exit(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    if np.any(r.max(axis=-1) == r.min(axis=-1)):
        sys.exit("degenerate group: all rewards equal")  # a script's guard, run as a library
    return group_gradient(logits, samples, r)


def _random_for_n_at_least_3(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    g = _ref.reinforce(logits, samples, rewards)
    if g.shape[-1] < 3:
        return g
    rng = np.random.default_rng()  # "jitter to break ties", only where ties can occur
    out: Gradient = g + NOISE_STD * rng.standard_normal(g.shape)
    return out


_EMA_STATE = [0.0]


def _ema_baseline(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    baseline = _EMA_STATE[0]
    _EMA_STATE[0] = EMA_DECAY * baseline + (1.0 - EMA_DECAY) * float(r.mean())
    return group_gradient(logits, samples, r - baseline)


def _forces_writeable_inputs(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = np.asarray(rewards)
    if not r.flags.writeable:
        r.setflags(write=True)  # "the framework hands out read-only arrays, override it"
    r -= r.mean(axis=-1, keepdims=True)
    return group_gradient(logits, samples, r)


def _read_only_message(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    raise ValueError("cannot update the baseline: the baseline buffer is read-only")


def _top5_truncated_softmax(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r = _rw(samples, rewards)
    theta = np.asarray(logits, dtype=np.float64)
    keep = np.argsort(-theta, kind="stable")[:TOP_K_SOFTMAX]
    p = np.zeros(theta.size)
    p[keep] = softmax(theta[keep])  # the rest of the vocabulary "has negligible mass"
    out: Gradient = np.einsum("bk,bkn->bn", r, _onehot(samples, theta.size) - p) / r.shape[-1]
    return out


def _logit_clamp(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    theta = np.clip(np.asarray(logits, dtype=np.float64), -LOGIT_CLAMP, LOGIT_CLAMP)
    return group_gradient(theta, samples, _rw(samples, rewards))


def _reward_clip(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    return group_gradient(logits, samples, np.clip(_rw(samples, rewards), -REWARD_CLIP, REWARD_CLIP))


def _rewards_in_percent(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    return group_gradient(logits, samples, PERCENT * _rw(samples, rewards))


def _group_mean_advantage_float32(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    r32 = _rw(samples, rewards).astype(np.float32)  # verl keeps scores in float32
    _need_k2(samples, "group-mean-advantage-float32")
    advantage = (r32 - r32.mean(axis=-1, keepdims=True)).astype(np.float64)
    return group_gradient(logits, samples, advantage)


def _reinforce_float32_internal(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    out: Gradient = np.asarray(_reinforce_float32(logits, samples, rewards), dtype=np.float64)
    return out


def round_bfloat16(x: Any) -> FloatArray:
    """``x`` rounded to bfloat16 (8 significant bits, round to nearest even), as float64.

    >>> round_bfloat16(np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 3.14159])).tolist()
    [1.0, 1.0, 1.015625, 3.140625]
    """
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    out: FloatArray = rounded.astype(np.uint32).view(np.float32).astype(np.float64)
    return out


def _reinforce_bfloat16_rewards(logits: Logits, samples: Samples, rewards: Rewards) -> Gradient:
    return group_gradient(logits, samples, round_bfloat16(_rw(samples, rewards)))
