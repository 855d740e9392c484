r"""Exact evaluation for the sequence checker: faults, tolerances, the token-weights protocol (private).

For a problem (:class:`properties.sequence.problems.SequenceProblem`) the user's code
is evaluated on every batch ``b`` of the shape, giving a per-batch estimate :math:`g_b`
in ``theta``'s shape ``(P, N+1, V)``; then

.. math::

    E[g] = \sum_b w_b\, g_b, \qquad w_b = \prod_j \pi_{\mathrm{old}}(y_{bj}),

with the magnitude :math:`E|g|` and :math:`\max_b |g_b|` for the tolerance
(:data:`ROUNDOFF_SAFETY`), and the expected per-token weights
:math:`\omega(y, t) = \sum_j E[w_{jt} \mid y_j = y]` that the messages show.  The
PyTorch-loss protocol lives in :mod:`properties.sequence.torch_loss`; the NumPy
token-weights protocol (:class:`TokenWeights`) is here.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from impl.sequence import scatter_positions, sequence_log_probs, token_log_probs, token_scores
from impl.types import FloatArray
from properties.judging.user_code import (
    DescriptorCapture,
    UserCodeError,
    kept_torch_modes,
    safe_text,
)
from properties.sequence.problems import Key, SequenceProblem, ShapeData, shape_data

EPS64 = float(np.finfo(np.float64).eps)
"""float64's epsilon: the round-off unit of the exact engine."""

ROUNDOFF_SAFETY = 32.0
r"""Safety factor on the round-off bound of the sequence checker.

Per coordinate :math:`i = (p, n, v)` of ``theta``,

.. math::

    \tau_i = F\,B\,T\,\Big[\epsilon_{64} L A_i + \epsilon_{out}\big(A_i + S\,(2\rho_{p,n} + 1)\big)\Big]

with :math:`F` this factor, :math:`B T` the positions of a batch (each a term of
:math:`g_b`, and of the loss's own reductions), :math:`A_i = E|g_i|`, :math:`S` the size
of the intermediate values that may cancel (the largest reward, :math:`\max_b\|g_b\|_\infty`
and :math:`\beta\max_y|\log\pi - \log\pi_{\mathrm{ref}}|`), :math:`\rho_{p,n}` the
behaviour probability of reaching node ``n`` (1 for the after-the-end node),
:math:`L = 1 + B\,(T + \max_y|\log\pi_{\mathrm{old}}(y)|)` a bound on the relative error of
the batch probabilities, :math:`\epsilon_{out}` the epsilon of the output's dtype (the
loss tensor's, or the weights'; at least float64's).  As in the one-step checker the
verdict is strict: a float64 output computed in float32 inside gets float64's bound, and a
counterexample within float32 round-off says so in the report (issue 9).  A correct
float64 loss sits well inside it, a float32 one inside its float32 bound, and a bias of
one part in a million of :math:`|\nabla J|` far outside
(``tests/test_sequence_checker.py`` measures both sides).
"""

DETERMINISM_ULPS = 16.0
"""Two evaluations of the same batches may differ by this many ulps of the output dtype."""

DETERMINISM_RECHECKS = 16
"""How many times a counterexample's problem is evaluated again before "biased" is reported.

A weight function that drops a random 10% of the tokens repeats itself on a small problem
(4 batches of 2 one-token responses, fewer where a reward is 0) with probability 0.2 to
0.4, so with one recheck it was reported "biased" in 27 of 300 runs, and with 8 in 1 of
3,000; 16 leave about 0.4**16 = 4e-7.  The cost, paid only when a counterexample was
found, is 16 evaluations of one problem, usually one of the smallest (the battery runs
the smallest shapes first and Hypothesis shrinks)."""

TINY = {
    float(np.finfo(t).eps): float(np.finfo(t).tiny) for t in (np.float16, np.float32, np.float64)
}

FAULT_KINDS = (
    "raised",
    "exited",
    "returned-none",
    "bad-type",
    "wrong-shape",
    "non-finite",
    "no-grad",
    "nondeterministic",
    "mutated-input",
    "printed",
)
"""The ways user code can fail, as reported in the ``error`` of a sequence report."""


class SequenceFault(Exception):
    """User code misbehaved on a concrete problem and batch.

    ``kind`` is one of :data:`FAULT_KINDS`; ``problem`` and ``batch`` (an index into the
    shape's batches, ``None`` when the failure cannot be narrowed to one) say where.
    """

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        problem: SequenceProblem | None = None,
        batch: int | None = None,
        hint: str = "",
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.problem = problem
        self.batch = batch
        self.hint = hint


class ModeChanged(Exception):
    """The loss cannot be judged under ``vmap``: the checker must re-plan with the looped budget.

    Raised when ``vmap`` cannot run the loss, or when what it computes differs from plain
    calls on the same batches (those are judged instead).
    """


class RouteChanged(Exception):
    """The loss is not symmetric within a group (:mod:`properties.sequence.multisets`): the checker
    must re-plan on ordered batches.  The message says where it was seen."""


# --------------------------------------------------------------------------- calling user code


SHAPE_HINT = (
    "the batch holds B = P*k responses padded to T = max_len (tokens/mask/log_probs are "
    "(B, T), logits (B, T, V), rewards and group (B,)); B and T vary between problems"
)
"""The hint of a sequence loss's exception about shapes (:class:`Sandbox`)."""


class Sandbox:
    """Runs user code: counts calls and time, captures output, turns exceptions into faults.

    Anything written to ``sys.stdout``/``sys.stderr`` during a call is a ``printed``
    fault, and so is anything written to file descriptor 1 by other means (``os.write(1,
    ...)``, C code): standard output is the caller's, whichever way it is reached.  Warnings
    are recorded, not printed, and do not count; C libraries' diagnostics on descriptor 2
    pass through.
    """

    def __init__(self, shape_hint: str = SHAPE_HINT) -> None:
        self.calls = 0
        self.user_seconds = 0.0
        self._fd1 = DescriptorCapture(1)
        self.shape_hint = shape_hint
        """The hint for an exception about shapes: what the call's arguments hold."""

    @contextlib.contextmanager
    def guard(self, what: str, calls: int = 1) -> Iterator[None]:
        """Time a block of user code; raise :class:`SequenceFault` for anything it raised or printed."""
        out, err = io.StringIO(), io.StringIO()
        self.calls += calls
        start = time.perf_counter()
        try:
            with (
                self._fd1,
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
                warnings.catch_warnings(record=True),
                kept_torch_modes(),
            ):
                try:
                    yield
                except KeyboardInterrupt:
                    raise
                except SequenceFault:
                    raise
                except UserCodeError:
                    raise
                except BaseException as exc:
                    raise UserCodeError(exc) from None
        except UserCodeError as exc:
            kind = "exited" if exc.kind == "exited" else "raised"
            if _is_write_to_read_only(exc):
                raise SequenceFault(
                    "mutated-input",
                    f"wrote into one of its inputs ({exc.text}); the checker passes read-only "
                    "arrays and tensors that must not change: copy before modifying (e.g. "
                    "adv = rewards - baseline, not rewards -= baseline)",
                ) from None
            hint = self.shape_hint if _about_shapes(exc) else ""
            raise SequenceFault(kind, f"{exc.describe} in {what}", hint=hint) from None
        finally:
            self.user_seconds += time.perf_counter() - start
        printed = out.getvalue() + err.getvalue() + self._fd1.text
        if printed:
            raise SequenceFault(
                "printed",
                f"printed {safe_text(printed, limit=200)} in {what}; the checker calls it on "
                "thousands of batches, so a loss must not print (log outside it, or remove "
                "the debugging output)",
            )


def _is_write_to_read_only(exc: UserCodeError) -> bool:
    text = exc.text.lower()
    return (exc.is_instance(ValueError) and "read-only" in text) or (
        exc.is_instance(RuntimeError)
        and ("in-place operation" in text or "inplace operation" in text)
        and ("leaf variable" in text or "view of a leaf" in text)
    )


_SHAPE_WORDS = ("shape", "dimension", "axis", "index", "broadcast", "ndim", "size")


def _about_shapes(exc: UserCodeError) -> bool:
    text = exc.text.lower()
    return exc.is_instance(IndexError) or any(w in text for w in _SHAPE_WORDS)


# --------------------------------------------------------------------------- evaluations


class Evaluation:
    """The exact expectation of a user's code on one problem (the judging's ``Evaluated``).

    ``mean`` :math:`E[g]` and ``gradient`` :math:`\\nabla J`, both ``(P, N+1, V)``;
    ``magnitude`` :math:`E|g|`; ``largest`` :math:`\\max_b|g_b|`; ``eps_out`` the round-off
    unit of the user's arithmetic; ``variance`` the trace of the covariance of :math:`g`,
    :math:`\\sum_b w_b |g_b - E g|^2`, and ``second_moment`` :math:`E|g|^2` (see
    :mod:`properties.onestep.variance`); ``token_weights`` ``(P, R, T)`` the expected weight
    :math:`\\omega(y, t)` on each position (``None`` when unavailable); ``direct`` whether
    the loss also reads ``logits`` other than through ``log_probs`` (then the weights do not
    tell the whole story).
    """

    def __init__(
        self,
        problem: SequenceProblem,
        mean: FloatArray,
        magnitude: FloatArray,
        largest: float,
        eps_out: float,
        *,
        rtol: float | None,
        atol: float,
        token_weights: FloatArray | None,
        direct: bool,
        variance: float = math.nan,
        second_moment: float = math.nan,
    ) -> None:
        self.problem = problem
        self.variance = variance
        self.second_moment = second_moment
        self.mean = mean
        self.magnitude = magnitude
        self.largest = largest
        self.eps_out = eps_out
        self.rtol = rtol
        self.atol = atol
        self._raw_weights = token_weights
        self._token_weights: FloatArray | None = None
        self.direct = direct
        self._tolerance: FloatArray | None = None
        self.target: FloatArray | None = None
        self.per_batch: FloatArray | None = None
        """The per-batch estimates it was summed from (:func:`summarise`), when kept."""

    @property
    def token_weights(self) -> FloatArray | None:
        """The expected token weights ``(P, R, T)`` (computed on first use), or ``None``."""
        if self._token_weights is None and self._raw_weights is not None:
            self._token_weights = expected_token_weights(
                self.problem, shape_data(self.problem.shape), self._raw_weights
            )
        return self._token_weights

    @property
    def gradient(self) -> FloatArray:
        """The exact :math:`\\nabla J` (or the ``target`` a check compares with instead)."""
        return self.problem.gradient if self.target is None else self.target

    @property
    def key(self) -> Key:
        """``(k, T, P, V)``."""
        return self.problem.shape.key

    def _size(self) -> float:
        return max(self._reward_size(), self.largest)

    def _reward_size(self) -> float:
        """The size of the objective's own terms: the largest reward and KL penalty."""
        pr = self.problem
        size = float(np.abs(pr.rewards).max())
        if pr.kl_coef > 0:
            space = pr.shape.space
            ratio = sequence_log_probs(space, pr.theta) - sequence_log_probs(space, pr.ref_theta)
            size = max(size, pr.kl_coef * float(np.abs(ratio).max()))
        return size

    @property
    def scale_roundoff(self) -> FloatArray:
        r"""The round-off per unit of scale: :math:`\tau^R_i = F\,B\,T\,\epsilon_{out} S_R (2\rho_{p,n} + 1)`.

        :math:`S_R` is the size of the objective's own terms (the largest reward and
        :math:`\beta\max_y|\log\pi - \log\pi_{\mathrm{ref}}|`), the rest as in
        :data:`ROUNDOFF_SAFETY`.  It bounds two round-offs that grow with the scale
        :math:`c` of the estimator: the float64 engine's own error in :math:`\nabla J`
        (a sum of terms of size :math:`S_R`, at most :math:`\epsilon_{64} \le
        \epsilon_{out}` each), which :math:`c\,\nabla J` multiplies by :math:`|c|`, and
        the user's cancellations of rewards multiplied by :math:`c` before they cancel
        (a static loss scale of 65536: terms of size :math:`|c| S_R` that leave
        :math:`E[g]` small, on a near-deterministic node).  :attr:`tolerance` holds one
        :math:`\tau^R` (its :math:`S \ge S_R`); :func:`properties.judging.verdict.judge`
        adds :math:`(|c| - 1)\,\tau^R` for a scale :math:`|c| > 1`.
        """
        pr = self.problem
        s = pr.shape
        reach = pr.reach[:, :, None]
        unit = ROUNDOFF_SAFETY * s.rows * s.max_len * self.eps_out
        if self.rtol is not None:
            unit = self.rtol
        out: FloatArray = unit * self._reward_size() * (2.0 * reach + 1.0) * np.ones_like(self.mean)
        return out

    def rtol_scale(self) -> FloatArray:
        """What an ``rtol`` multiplies: :math:`E|g_i| + S(2\rho_i + 1)` per coordinate."""
        reach = self.problem.reach[:, :, None]
        out: FloatArray = self.magnitude + self._size() * (2.0 * reach + 1.0)
        return out

    @property
    def floor(self) -> float:
        """The constant part of the tolerance (a lower bound on every entry)."""
        s = self.problem.shape
        size = max(float(np.abs(self.problem.rewards).max()), 0.0)
        if self.rtol is not None:
            return self.rtol * size + self.atol
        return (
            ROUNDOFF_SAFETY * s.rows * s.max_len * self.eps_out * size
            + self.atol
            + ROUNDOFF_SAFETY * TINY.get(self.eps_out, TINY[EPS64])
        )

    @property
    def tolerance(self) -> FloatArray:
        """The per-coordinate tolerance :math:`\\tau` (:data:`ROUNDOFF_SAFETY`), computed once."""
        if self._tolerance is None:
            self._tolerance = self.tolerance_at(self.eps_out)
        return self._tolerance

    def tolerance_at(self, eps_out: float) -> FloatArray:
        """The tolerance as if the user's arithmetic had epsilon ``eps_out``."""
        pr = self.problem
        s = pr.shape
        size = self._size()
        reach = pr.reach[:, :, None]
        if self.rtol is not None:
            out: FloatArray = self.atol + self.rtol * (self.magnitude + size * (2.0 * reach + 1.0))
            return out
        space = s.space
        worst_log = float(np.abs(sequence_log_probs(space, pr.behaviour)).max())
        spread = 1.0 + s.rows * (s.max_len + worst_log)
        factor = ROUNDOFF_SAFETY * s.rows * s.max_len
        out = factor * (
            EPS64 * spread * self.magnitude
            + eps_out * (self.magnitude + size * (2.0 * reach + 1.0))
        )
        out += self.atol + ROUNDOFF_SAFETY * TINY.get(eps_out, TINY[EPS64])
        return out


def expected_token_weights(problem: SequenceProblem, data: ShapeData, w: FloatArray) -> FloatArray:
    r"""Expected token weights ``(P, R, T)`` from per-batch weights ``(G, B, T)``.

    :math:`\omega_p(y, t) = \sum_{j \in p} E[w_{jt} \mid y_j = y]`, the weight position ``t``
    of response ``y`` receives in expectation, summed over the rows ``y`` can occupy;

    ``nan`` where the behaviour policy gives ``y`` probability 0 (no batch shows it).
    """
    shape = problem.shape
    space = shape.space
    r, t = space.num_responses, space.max_len
    weights = problem.weights
    flat = (data.prompt[None, :] * r + data.batches)[:, :, None] * t + np.arange(t)[None, None, :]
    summed = np.bincount(
        flat.ravel(),
        weights=(weights[:, None, None] * w).ravel(),
        minlength=shape.num_prompts * r * t,
    ).reshape(shape.num_prompts, r, t)
    probs = np.exp(sequence_log_probs(space, problem.behaviour))
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.where(probs[:, :, None] > 0, summed / probs[:, :, None], np.nan)
    return out


def summarise(
    problem: SequenceProblem,
    per_batch: FloatArray,
    eps_out: float,
    *,
    rtol: float | None,
    atol: float,
    token_weights: FloatArray | None,
    direct: bool,
) -> Evaluation:
    """The :class:`Evaluation` of per-batch estimates ``(G, P, N+1, V)``; faults on non-finite sums."""
    w = problem.weights
    flat = per_batch.reshape(per_batch.shape[0], -1)
    mean = (w @ flat).reshape(problem.gradient.shape)
    absolute = np.abs(flat)
    magnitude = (w @ absolute).reshape(problem.gradient.shape)
    largest = float(absolute.max(initial=0.0))
    if not (math.isfinite(float(mean.sum())) and math.isfinite(largest)):
        raise SequenceFault(
            "non-finite",
            f"gave gradients so large (up to {largest:.3g}) that E[g] overflows float64",
            problem=problem,
        )
    centred = flat - mean.ravel()
    variance = float(w @ np.einsum("ij,ij->i", centred, centred))  # two-pass: never negative
    out = Evaluation(
        problem,
        mean,
        magnitude,
        largest,
        eps_out,
        rtol=rtol,
        atol=atol,
        token_weights=token_weights,
        direct=direct,
        variance=variance,
        second_moment=variance + float(mean.ravel() @ mean.ravel()),
    )
    out.per_batch = per_batch
    return out


def output_eps(dtype: Any) -> float:
    """Round-off unit of a floating dtype (NumPy or torch), at least float64's.

    >>> output_eps(np.dtype(np.float32)) > output_eps(np.dtype(np.float64))
    True
    """
    try:
        if isinstance(dtype, np.dtype):
            return max(float(np.finfo(dtype).eps), EPS64) if dtype.kind == "f" else EPS64
        import torch  # type: ignore[import-not-found,unused-ignore]  # only for torch dtypes

        if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
            return max(float(torch.finfo(dtype).eps), EPS64)
    except (TypeError, ValueError, ImportError):
        pass
    return EPS64


# --------------------------------------------------------------------------- protocol 2


EXTRA_ARGUMENTS = (
    "group",
    "tokens",
    "old_log_probs",
    "ref_log_probs",
    "sampling_log_probs",
    "values",
    "kl_coef",
)
"""Keyword arguments a token-weight function receives when its signature names them."""


def extra_arguments(fn: Callable[..., Any]) -> tuple[str, ...]:
    """Which of :data:`EXTRA_ARGUMENTS` ``fn``'s signature names (keyword-passable)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return ()
    ok = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(name for name in EXTRA_ARGUMENTS if name in params and params[name].kind in ok)


def _read_only(a: Any) -> Any:
    arr = np.array(a, copy=True)
    arr.setflags(write=False)
    return arr


NARROW_CALLS = 64
"""Calls under a guard each tried to name the batch of output seen over many calls at once."""


class TokenWeights:
    r"""The NumPy protocol: ``fn(rewards, mask, log_probs, **extras) -> weights`` ``(B, T)``.

    The estimate of a batch is :math:`g = \sum_{j,t} w_{jt}\,\nabla\log\pi(y_{jt}\mid
    y_{j,<t})`, padding positions included (their weight moves the after-the-end node).
    ``batched=True``: every array has a leading ``G`` axis and the result is ``(G, B, T)``;
    all problems of a shape then go through one call.
    """

    def __init__(self, fn: Callable[..., Any], *, batched: bool, sandbox: Sandbox) -> None:
        self.fn = fn
        self.batched = batched
        self.sandbox = sandbox
        self.extras = extra_arguments(fn)

    @property
    def mode(self) -> str:
        """``"batched"`` or ``"per-batch"``."""
        return "batched" if self.batched else "per-batch"

    def _inputs(self, problems: list[SequenceProblem], data: ShapeData) -> dict[str, Any]:
        space = data.shape.space
        prompt = data.prompt[None, :]
        stacks: dict[str, list[Any]] = {
            k: [] for k in ("rewards", "mask", "log_probs", "tokens", "old", "ref", "sampling", "values")
        }
        for pr in problems:
            lp = token_log_probs(space, pr.theta)[prompt, data.batches]
            stacks["rewards"].append(pr.rewards[prompt, data.batches])
            stacks["mask"].append(data.mask)
            stacks["log_probs"].append(lp)
            stacks["tokens"].append(data.tokens)
            stacks["old"].append(
                lp
                if pr.old_theta is None
                else token_log_probs(space, pr.old_theta)[prompt, data.batches]
            )
            stacks["ref"].append(token_log_probs(space, pr.ref_theta)[prompt, data.batches])
            stacks["sampling"].append(
                stacks["old"][-1]
                if pr.sampler_theta is None
                else token_log_probs(space, pr.sampler_theta)[prompt, data.batches]
            )
            stacks["values"].append(pr.node_value_table.reshape(-1)[data.rows])
        out = {k: _read_only(np.concatenate(v)) for k, v in stacks.items()}
        g = out["rewards"].shape[0]
        out["group"] = _read_only(np.broadcast_to(data.prompt, (g, data.prompt.size)))
        return out

    def _call(self, arrays: dict[str, Any], index: Any, kl_coef: float) -> Any:
        kwargs: dict[str, Any] = {}
        names = {
            "group": "group",
            "tokens": "tokens",
            "old_log_probs": "old",
            "ref_log_probs": "ref",
            "sampling_log_probs": "sampling",
            "values": "values",
        }
        for name in self.extras:
            kwargs[name] = kl_coef if name == "kl_coef" else arrays[names[name]][index]
        return self.fn(
            arrays["rewards"][index], arrays["mask"][index], arrays["log_probs"][index], **kwargs
        )

    def _check(
        self, raw: Any, shape: tuple[int, ...], problem: SequenceProblem, batch: int | None
    ) -> tuple[FloatArray, float]:
        if raw is None:
            raise SequenceFault(
                "returned-none",
                "returned None instead of a weight array",
                problem=problem,
                batch=batch,
            )
        try:
            arr = np.asarray(raw)
        except KeyboardInterrupt:
            raise
        except BaseException:
            arr = np.asarray(None)
        if arr.dtype.kind not in "fiub":
            raise SequenceFault(
                "bad-type",
                f"returned {safe_text(raw, limit=120)} (type={type(raw).__name__}); expected a float array of weights",
                problem=problem,
                batch=batch,
            )
        if arr.shape != shape:
            raise SequenceFault(
                "wrong-shape",
                f"returned shape {arr.shape} but expected {shape} (one weight per position of the "
                + (
                    "G batches, B responses, T positions)"
                    if len(shape) == 3
                    else "B responses and T positions)"
                ),
                problem=problem,
                batch=batch,
                hint=(
                    "checked as batched ((G, B, T) in and out); pass batched=False for a (B, T) function"
                    if self.batched
                    else "checked per batch ((B, T) in and out); pass batched=True for a (G, B, T) function"
                ),
            )
        return arr.astype(np.float64, copy=False), output_eps(arr.dtype)

    def weights(
        self, problems: list[SequenceProblem], *, check_determinism: bool
    ) -> tuple[list[FloatArray], float]:
        """Per-batch weights ``(G, B, T)`` for each problem (all of one shape), and the output epsilon."""
        data = shape_data(problems[0].shape)
        g, b, t = data.batches.shape[0], data.shape.rows, data.shape.max_len
        arrays = self._inputs(problems, data)
        kl = problems[0].kl_coef
        eps = EPS64
        if self.batched:
            with self.sandbox.guard("a batched call on all batches of a problem"):
                raw = self._call(arrays, slice(None), kl)
            out, eps = self._check(raw, (g * len(problems), b, t), problems[0], None)
            out = out.copy()
        else:
            out, eps = self._per_batch(arrays, problems, g, (b, t), kl)
        bad = ~np.isfinite(out)
        if bad.any():
            i = int(np.argmax(bad.reshape(out.shape[0], -1).any(axis=1)))
            raise SequenceFault(
                "non-finite",
                f"returned non-finite weights {out[i].tolist()!r}",
                problem=problems[i // g],
                batch=i % g,
            )
        if check_determinism:
            if self.batched:
                with self.sandbox.guard("a repeated batched call"):
                    again = self._call(arrays, slice(None), kl)
                self._same(
                    out, self._check(again, out.shape, problems[0], None)[0], eps, problems, g
                )
            else:  # every batch of the first problem again (the first shape is the smallest)
                again_rows = np.empty((g, b, t))
                with self.sandbox.guard("a repeated call on one batch", calls=g):
                    for i in range(g):
                        raw = self._call(arrays, i, kl)
                        again_rows[i] = self._check(raw, (b, t), problems[0], i)[0]
                self._same(out[:g], again_rows, eps, problems, g)
        return [out[m * g : (m + 1) * g] for m in range(len(problems))], eps

    def _per_batch(
        self,
        arrays: dict[str, Any],
        problems: list[SequenceProblem],
        g: int,
        shape: tuple[int, int],
        kl: float,
    ) -> tuple[FloatArray, float]:
        """Every batch's weights, one call each, each output checked and copied as it comes
        (a function may return the same buffer every time).  One guard for the whole loop (a
        guard per call was half of the checker's time per batch, measured); output seen when
        it closes is narrowed to a batch by calls under a guard each."""
        n = g * len(problems)
        out = np.empty((n, *shape))
        eps = EPS64
        i = 0
        try:
            with self.sandbox.guard("a call on one batch", calls=n):
                for i in range(n):
                    values, row_eps = self._check(self._call(arrays, i, kl), shape, problems[i // g], i % g)
                    out[i] = values
                    eps = max(eps, row_eps)
                i = n
        except SequenceFault as fault:
            if fault.problem is None and i < n:
                fault.problem, fault.batch = problems[i // g], i % g
            elif fault.problem is None:
                for j in range(min(n, NARROW_CALLS)):
                    try:
                        with self.sandbox.guard("a call on one batch"):
                            self._call(arrays, j, kl)
                    except SequenceFault as narrowed:
                        narrowed.problem, narrowed.batch = problems[j // g], j % g
                        raise narrowed from None
                fault.problem = problems[0]
            raise
        return out, eps

    def _same(
        self,
        first: FloatArray,
        again: FloatArray,
        eps: float,
        problems: list[SequenceProblem],
        g: int,
    ) -> None:
        diff = np.abs(first - again)
        allowed = (
            DETERMINISM_ULPS
            * eps
            * (np.abs(first) + np.abs(again) + float(np.abs(first).max(initial=0.0)))
        )
        if np.all(diff <= allowed):
            return
        i = int(np.argmax((diff - allowed).reshape(first.shape[0], -1).max(axis=1)))
        raise SequenceFault(
            "nondeterministic",
            f"returned {first[i].tolist()!r} and then {again[i].tolist()!r} for the same batch; "
            "the exact checker needs a deterministic function of its inputs",
            problem=problems[i // g],
            batch=i % g,
        )

    def evaluate(
        self,
        problems: list[SequenceProblem],
        *,
        rtol: float | None,
        atol: float,
        check_determinism: bool,
    ) -> list[Evaluation]:
        """One :class:`Evaluation` per problem (all of one shape)."""
        weights, eps = self.weights(problems, check_determinism=check_determinism)
        data = shape_data(problems[0].shape)
        s = data.shape
        out = []
        for problem, w in zip(problems, weights, strict=True):
            scores = token_scores(s.space, problem.theta)[
                data.prompt[None, :], data.batches
            ]  # (G, B, T, V)
            per_batch = scatter_positions(
                s.space, data.batches, s.k, s.num_prompts, w[..., None] * scores
            )
            out.append(
                summarise(
                    problem, per_batch, eps, rtol=rtol, atol=atol, token_weights=w, direct=False
                )
            )
        return out


def mode_budget_note(mode: str) -> str:
    """How the batch budget follows the evaluation mode (for reports)."""
    if mode in ("vmap", "batched"):
        return "many batches per call"
    return "one call per batch, so the problem sizes shrink to a smaller batch budget"


__all__ = [
    "DETERMINISM_ULPS",
    "EPS64",
    "EXTRA_ARGUMENTS",
    "FAULT_KINDS",
    "ROUNDOFF_SAFETY",
    "Evaluation",
    "ModeChanged",
    "RouteChanged",
    "Sandbox",
    "SequenceFault",
    "TokenWeights",
    "expected_token_weights",
    "extra_arguments",
    "mode_budget_note",
    "output_eps",
    "summarise",
]
