r"""The PyTorch-loss protocol of the sequence checker: every batch in a few calls (private).

For the problems of one shape (all ``M`` of them at once) the logits every position reads
are gathered from ``theta`` into leaves ``X`` of shape ``(G', B, T, V)`` (``G' <=``
:data:`CHUNK_ELEMENTS` ``/ (B T V)`` batches per leaf; one leaf when it fits), the token
log-probabilities ``log_softmax(X).gather(tokens)`` are computed from them, and the user's
loss is evaluated on every batch by ``torch.func.vmap`` over the leading axis.  One
backward of the sum of the losses gives every batch's gradient with respect to its own
logits (batches do not interact), which a scatter-add by node index turns into per-batch
gradients with respect to ``theta``; the gradient with respect to ``log_probs`` gives the
per-token weights shown in reports.

**Fallback.**  If ``vmap`` cannot run the loss (data-dependent Python control flow,
``.item()``, boolean-mask indexing, in-place updates of unbatched tensors, random
numbers, ...) or gives a different result from plain calls on the same batches, the loss
is called once per batch instead (each call on views ``X[g]``; still one backward per leaf),
and the checker shrinks the problems to the smaller batch budget of that mode.  The
reason is reported.

Before either, one plain call on one batch (the *probe*) checks that the loss returns a
finite scalar tensor with a gradient, records the floating dtypes it computes in (for the
round-off note of a counterexample: the tolerance follows the loss's own dtype) and times
it; ``vmap``'s results on two batches are compared with plain calls.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch  # type: ignore[import-not-found,unused-ignore]  # this module is imported lazily
from torch.overrides import TorchFunctionMode

from impl.sequence import greedy_tokens, node_log_probs, token_log_probs
from impl.types import FloatArray
from properties.judging.user_code import safe_text
from properties.sequence.batch import SequenceBatch
from properties.sequence.evaluation import (
    DETERMINISM_ULPS,
    EPS64,
    Evaluation,
    ModeChanged,
    Sandbox,
    SequenceFault,
    output_eps,
    summarise,
)
from properties.sequence.problems import SequenceProblem, ShapeData, shape_data

CHUNK_ELEMENTS = 1 << 21
"""Largest number of logits (``G' B T V``) in one leaf (and so in one ``vmap`` call): 16 MiB."""

DIRECT_TOLERANCE = 1e-9
"""The loss "reads the logits directly" when ``dL/dX`` differs from what ``dL/dlog_probs``
alone implies by more than this, relative to ``max|dL/dX|`` (round-off is ~1e-15)."""


TORCH_THREADS = 1
"""Intra-op threads while the checker runs (restored afterwards).  Its tensors are small
(at most :data:`CHUNK_ELEMENTS`): on the shared 2-core machine one thread was 3x (large
chunks) to 40x (small ones) faster than two, which wait on each other."""


@contextlib.contextmanager
def torch_threads() -> Iterator[None]:
    """Run with :data:`TORCH_THREADS` intra-op threads, restoring the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


NARROW_ATTEMPTS = 64
"""Plain calls tried to name the batch of a write seen over many batches at once."""


class _DtypeSpy(TorchFunctionMode):
    """Records the floating dtypes of every tensor a torch function returns."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: set[Any] = set()

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        self._collect(out)
        return out

    def _collect(self, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            if out.dtype.is_floating_point:
                self.dtypes.add(out.dtype)
        elif isinstance(out, tuple | list):
            for item in out:
                self._collect(item)


_MUTABLE = (
    "tokens",
    "mask",
    "rewards",
    "old_log_probs",
    "ref_log_probs",
    "group",
    "greedy_tokens",
    "table",
)


class _Inputs:
    """NumPy sources of every batch's tensors, for all problems of one shape (stacked)."""

    def __init__(self, problems: list[SequenceProblem], data: ShapeData) -> None:
        s = data.shape
        space = s.space
        prompt = data.prompt[None, :]
        g = data.batches.shape[0]
        self.g = g
        self.problems = problems
        xs, rewards, old, ref, lps, probs, greedy, tables = [], [], [], [], [], [], [], []
        for pr in problems:
            flat = pr.theta.reshape(-1, s.vocab_size)
            xs.append(flat[data.rows])
            rewards.append(pr.rewards[prompt, data.batches])
            node_lp = node_log_probs(pr.theta).reshape(-1, s.vocab_size)
            lp = node_lp[data.rows, data.tokens]
            lps.append(lp)
            probs.append(np.exp(node_lp)[data.rows])
            old.append(
                lp
                if pr.old_theta is None
                else token_log_probs(space, pr.old_theta)[prompt, data.batches]
            )
            ref.append(token_log_probs(space, pr.ref_theta)[prompt, data.batches])
            greedy.append(
                np.broadcast_to(greedy_tokens(space, pr.theta), (g, s.num_prompts, s.max_len))
            )
            tables.append(np.broadcast_to(pr.rewards, (g, *pr.rewards.shape)))
        m = len(problems)
        self.x = np.concatenate(xs)
        self.lp = torch.from_numpy(np.concatenate(lps))
        self.p = torch.from_numpy(np.concatenate(probs))
        self.arrays: dict[str, Any] = {
            "tokens": np.broadcast_to(data.tokens, (m, *data.tokens.shape)).reshape(
                m * g, s.rows, s.max_len
            ),
            "mask": np.broadcast_to(data.mask, (m, *data.mask.shape)).reshape(
                m * g, s.rows, s.max_len
            ),
            "rewards": np.concatenate(rewards),
            "old_log_probs": np.concatenate(old),
            "ref_log_probs": np.concatenate(ref),
            "greedy_tokens": np.concatenate(greedy),
            "table": np.concatenate(tables),
        }
        self.group = data.prompt
        self.lookup = torch.tensor(space.lookup)
        self.powers = torch.tensor(
            space.vocab_size ** np.arange(s.max_len - 1, -1, -1, dtype=np.int64)
        )
        self.shape = s
        self.used = [False]

    def tensors(self, lo: int, hi: int) -> dict[str, Any]:
        """Fresh tensors for batches ``lo..hi-1``, and private copies to compare them with later."""
        out = {}
        self.copies: dict[str, Any] = {}
        for name, a in self.arrays.items():
            given = np.array(a[lo:hi])
            out[name] = torch.from_numpy(given)
            self.copies[name] = torch.from_numpy(given.copy())
        out["group"] = torch.from_numpy(self.group.copy())
        self.copies["group"] = torch.from_numpy(self.group.copy())
        return out

    def changed(self, given: dict[str, Any], copies: dict[str, Any]) -> list[str]:
        """Names of the tensors written in place: a bumped version counter (even a write that
        kept the values, ``rewards -= 0``) or values that differ from the private copies."""
        names = []
        for name in _MUTABLE:
            t, src = given[name], copies[name]
            if t._version != 0 or tuple(t.shape) != tuple(src.shape) or not torch.equal(t, src):
                names.append(name)
        return names

    def locate(self, i: int) -> tuple[SequenceProblem, int]:
        """The problem and batch index (within the shape) of stacked batch ``i``."""
        return self.problems[i // self.g], i % self.g


def _reward_fn(
    table: Any, lookup: Any, powers: Any, vocab_size: int, used: list[bool]
) -> Callable[[Any, Any], Any]:
    """``reward_fn(tokens (m, T), group (m,)) -> (m,)``: a lookup in the prompt's reward table.

    Token arrays that are not valid padded responses score ``nan`` (the loss then fails
    as non-finite, naming the call).
    """

    def reward_fn(tokens: Any, group: Any) -> Any:
        used[0] = True
        tok = torch.as_tensor(tokens).long()
        grp = torch.as_tensor(group).long()
        in_range = ((tok >= 0) & (tok < vocab_size)).all(-1)
        idx = lookup[(tok.clamp(0, vocab_size - 1) * powers).sum(-1)]
        values = table[grp, idx.clamp(min=0)]
        return torch.where(in_range & (idx >= 0), values, torch.full_like(values, float("nan")))

    return reward_fn


def _make_batch(
    t: dict[str, Any], x: Any, lp: Any, inputs: _Inputs, kl_coef: float
) -> SequenceBatch:
    s = inputs.shape
    return SequenceBatch(
        logits=x,
        log_probs=lp,
        tokens=t["tokens"],
        mask=t["mask"],
        rewards=t["rewards"],
        old_log_probs=t["old_log_probs"],
        ref_log_probs=t["ref_log_probs"],
        group=t["group"],
        greedy_tokens=t["greedy_tokens"],
        reward_fn=_reward_fn(t["table"], inputs.lookup, inputs.powers, s.vocab_size, inputs.used),
        num_prompts=s.num_prompts,
        group_size=s.k,
        vocab_size=s.vocab_size,
        max_len=s.max_len,
        kl_coef=kl_coef,
    )


class _TokenLogProbs(torch.autograd.Function):  # type: ignore[misc,unused-ignore]
    r"""``log_softmax(X).gather(tokens)`` with its values and ``softmax(X)`` precomputed per node.

    Forward returns the precomputed values; backward is
    :math:`\partial/\partial X_v = g\,(\delta_{v,y} - \pi_v)`.  The same function of ``X``
    as ``torch.log_softmax(X, -1).gather(-1, tokens)``, ten times faster on a last axis of
    2 to 4 tokens (measured), where the generic kernel is dominated by per-row overhead.
    """

    @staticmethod
    def forward(ctx: Any, x: Any, values: Any, probs: Any, tokens: Any) -> Any:
        ctx.save_for_backward(probs, tokens)
        return values.clone()

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:
        probs, tokens = ctx.saved_tensors
        out = -grad.unsqueeze(-1) * probs
        out.scatter_add_(-1, tokens.unsqueeze(-1), grad.unsqueeze(-1))
        return out, None, None, None


def _log_probs(x: Any, inputs: _Inputs, lo: int, hi: int, tokens: Any) -> Any:
    return _TokenLogProbs.apply(x, inputs.lp[lo:hi], inputs.p[lo:hi], tokens)  # type: ignore[no-untyped-call]


class TorchLoss:
    """A user's ``loss_fn(batch) -> scalar`` behind the sandbox, evaluated on every batch.

    ``mode`` is ``"vmap"`` until the loss turns out not to support it (then ``"loop"``, with
    ``fallback_reason``); ``probe_seconds`` is the time of one plain call on one batch;
    ``dtypes`` the floating dtypes seen during the probe.
    """

    def __init__(
        self, loss_fn: Callable[..., Any], *, sandbox: Sandbox, use_vmap: bool = True
    ) -> None:
        self.fn = loss_fn
        self.sandbox = sandbox
        self.mode = "vmap" if use_vmap else "loop"
        self.fallback_reason: str | None = None if use_vmap else "vmap disabled by the caller"
        self.probed = False
        self.probe_seconds: float | None = None
        self.dtypes: set[str] = set()
        self.eps_internal = EPS64
        self.vmap_calls = 0
        self.batches_evaluated = 0
        self.direct = False
        self.used = [False]

    # -- one plain call ---------------------------------------------------------
    def _plain(
        self, inputs: _Inputs, i: int, kl_coef: float, *, spy: bool = False
    ) -> tuple[Any, Any, Any]:
        """Loss, dL/dX ``(B, T, V)`` and dL/dlog_probs ``(B, T)`` of stacked batch ``i`` alone."""
        problem, b = inputs.locate(i)
        t = inputs.tensors(i, i + 1)
        copies = inputs.copies
        t1 = {name: (v[0] if name != "group" else v) for name, v in t.items()}
        x = torch.tensor(inputs.x[i : i + 1], requires_grad=True)
        lp = _log_probs(x, inputs, i, i + 1, t["tokens"])
        lp_before = lp.detach().clone()
        batch = _make_batch(t1, x[0], lp[0], inputs, kl_coef)
        spy_mode = _DtypeSpy() if spy else None
        try:
            start = time.perf_counter()
            with self.sandbox.guard("a plain call on one batch"):
                if spy_mode is not None:
                    with spy_mode:
                        out = self.fn(batch)
                else:
                    out = self.fn(batch)
            elapsed = time.perf_counter() - start
        except SequenceFault as fault:
            fault.problem, fault.batch = problem, b
            raise
        self._check_mutation(inputs, t, copies, i, lp, lp_before, single=True)
        loss = self._check_loss(out, problem, b, ())
        gx, glp = self._grads(loss, x, lp, problem, b)
        if spy_mode is not None:
            self.probe_seconds = elapsed
            self.dtypes = {str(d).replace("torch.", "") for d in spy_mode.dtypes}
            self.eps_internal = max([EPS64, *(output_eps(d) for d in spy_mode.dtypes)])
            self.direct = _reads_logits_directly(
                x.detach().numpy(), t["tokens"].numpy(), gx.numpy(), glp.numpy()
            )
        return loss.detach(), gx[0], glp[0]

    def _check_batch_mutation(
        self,
        inputs: _Inputs,
        t: dict[str, Any],
        copies: dict[str, Any],
        lo: int,
        hi: int,
        lp: Any,
        lp_before: Any,
        kl_coef: float,
    ) -> None:
        """:meth:`_check_mutation` after a call on batches ``lo..hi``; on a write, call the
        first few of them one by one so that the fault names a batch whose call writes."""
        try:
            self._check_mutation(inputs, t, copies, lo, lp, lp_before, single=False)
        except SequenceFault:
            for i in range(lo, min(hi, lo + NARROW_ATTEMPTS)):
                self._plain(inputs, i, kl_coef)
            raise

    def _check_mutation(
        self,
        inputs: _Inputs,
        t: dict[str, Any],
        copies: dict[str, Any],
        lo: int,
        lp: Any,
        lp_before: Any,
        *,
        single: bool,
    ) -> None:
        changed = inputs.changed(t, copies)
        if lp._version != 0 or not torch.equal(lp.detach(), lp_before):
            changed.append("log_probs")
        if changed:
            problem, b = inputs.locate(lo)
            which = " and ".join(
                f"batch.{n}" if n != "table" else "the reward table (via reward_fn)"
                for n in changed
            )
            raise SequenceFault(
                "mutated-input",
                f"changed {which} in place; a loss must not modify the batch it is given "
                "(copy first: adv = batch.rewards - baseline, not batch.rewards -= baseline)",
                problem=problem,
                batch=b if single else None,
            )

    def _check_loss(
        self, out: Any, problem: SequenceProblem, b: int | None, batch_shape: tuple[int, ...]
    ) -> Any:
        if out is None:
            raise SequenceFault(
                "returned-none", "returned None instead of a loss tensor", problem=problem, batch=b
            )
        if not isinstance(out, torch.Tensor):
            raise SequenceFault(
                "bad-type",
                f"returned {safe_text(out, limit=120)} (type={type(out).__name__}) instead of a scalar "
                "tensor; a Python number or NumPy value carries no gradient: return the loss tensor",
                problem=problem,
                batch=b,
            )
        per = tuple(out.shape[len(batch_shape) :])
        if (
            tuple(out.shape[: len(batch_shape)]) != batch_shape
            or int(np.prod(per, dtype=np.int64)) != 1
        ):
            raise SequenceFault(
                "wrong-shape",
                f"returned a tensor of shape {per} instead of a scalar; reduce the loss to one "
                "number (e.g. .mean() or .sum())",
                problem=problem,
                batch=b,
            )
        if not out.dtype.is_floating_point:
            raise SequenceFault(
                "bad-type",
                f"returned a {out.dtype} tensor; a loss must be floating-point",
                problem=problem,
                batch=b,
            )
        if not out.requires_grad:
            raise SequenceFault(
                "no-grad",
                "returned a loss with no gradient path to the policy (it does not require grad): "
                "it was computed from detached tensors, .item()/.tolist() values or NumPy, so "
                "minimising it cannot move the policy",
                problem=problem,
                batch=b,
            )
        values = out.detach().reshape(-1)
        if not bool(torch.isfinite(values.sum())) and not bool(torch.isfinite(values).all()):
            j = int((~torch.isfinite(values)).nonzero()[0, 0])
            raise SequenceFault(
                "non-finite",
                f"returned the non-finite loss {float(values[j])!r}",
                problem=problem,
                batch=b if b is not None else j,
                hint=(
                    "batch.reward_fn returns nan for token arrays that are not valid padded responses "
                    "(it was called)"
                    if self.used[0]
                    else ""
                ),
            )
        return out.reshape(batch_shape)

    def _grads(
        self, loss: Any, x: Any, lp: Any, problem: SequenceProblem, b: int | None
    ) -> tuple[Any, Any]:
        try:
            with self.sandbox.guard("the backward pass of the loss"):
                gx, glp = torch.autograd.grad(loss.sum(), (x, lp), allow_unused=True)
        except SequenceFault as fault:
            fault.problem, fault.batch = problem, b
            raise
        gx = torch.zeros_like(x) if gx is None else gx.detach()
        glp = torch.zeros_like(lp) if glp is None else glp.detach()
        if not bool(torch.isfinite(gx.sum())):
            rows = gx.reshape(gx.shape[0], -1) if gx.dim() == 4 else gx.reshape(1, -1)
            bad = ~torch.isfinite(rows).all(dim=1)
            if bool(bad.any()):
                j = int(bad.nonzero()[0, 0])
                raise SequenceFault(
                    "non-finite",
                    "has a non-finite gradient (e.g. a log or division at 0, or a ratio that overflows)",
                    problem=problem,
                    batch=b if b is not None else j,
                )
        return gx, glp

    # -- many batches -------------------------------------------------------------
    def _vmapped(self, inputs: _Inputs, lo: int, hi: int, kl_coef: float) -> tuple[Any, Any, Any]:
        t = inputs.tensors(lo, hi)
        copies = inputs.copies
        group = t.pop("group")
        x = torch.from_numpy(inputs.x[lo:hi]).requires_grad_()
        lp = _log_probs(x, inputs, lo, hi, t["tokens"])
        lp_before = lp.detach().clone()
        names = list(t)

        def one(xb: Any, lpb: Any, *rest: Any) -> Any:
            tb = dict(zip(names, rest, strict=True))
            tb["group"] = group
            return self.fn(_make_batch(tb, xb, lpb, inputs, kl_coef))

        problem, _ = inputs.locate(lo)
        try:
            with self.sandbox.guard("a vmap call over many batches", calls=1):
                out = torch.func.vmap(one, randomness="error")(x, lp, *(t[n] for n in names))
        except SequenceFault as fault:
            if fault.kind in ("raised", "exited"):
                raise ModeChanged(fault.detail) from None
            fault.problem = problem
            raise
        self.vmap_calls += 1
        t["group"] = group
        self._check_batch_mutation(inputs, t, copies, lo, hi, lp, lp_before, kl_coef)
        if not isinstance(out, torch.Tensor):
            raise ModeChanged(f"vmap returned {type(out).__name__}")
        try:
            loss = self._check_loss(out, problem, None, (hi - lo,))
        except SequenceFault as fault:
            if fault.batch is not None:
                fault.problem, fault.batch = inputs.locate(lo + fault.batch)
            raise
        gx, glp = self._grads(loss, x, lp, problem, None)
        return loss.detach(), gx, glp

    def _looped(self, inputs: _Inputs, lo: int, hi: int, kl_coef: float) -> tuple[Any, Any, Any]:
        t = inputs.tensors(lo, hi)
        copies = inputs.copies
        x = torch.from_numpy(inputs.x[lo:hi]).requires_grad_()
        lp = _log_probs(x, inputs, lo, hi, t["tokens"])
        lp_before = lp.detach().clone()
        losses: list[Any] = []
        columns = {name: (v.unbind(0) if name != "group" else None) for name, v in t.items()}
        views = [
            {name: (col[i] if col is not None else t["group"]) for name, col in columns.items()}
            for i in range(hi - lo)
        ]
        xs, lps = x.unbind(0), lp.unbind(0)
        batches = [_make_batch(views[i], xs[i], lps[i], inputs, kl_coef) for i in range(hi - lo)]
        fn = self.fn
        append = losses.append
        try:
            # one guard for the whole loop (redirecting output per call would double its cost)
            with self.sandbox.guard("a call on one batch", calls=hi - lo):
                for batch in batches:
                    append(fn(batch))
        except SequenceFault as fault:
            fault.problem, fault.batch = inputs.locate(lo + len(losses))
            raise
        for i, out in enumerate(losses):
            if not (
                isinstance(out, torch.Tensor)
                and out.numel() == 1
                and out.requires_grad
                and out.dtype.is_floating_point
            ):
                self._check_loss(out, *inputs.locate(lo + i), ())
        self._check_batch_mutation(inputs, t, copies, lo, hi, lp, lp_before, kl_coef)
        stacked = torch.stack([out.reshape(()) for out in losses])
        try:
            loss = self._check_loss(stacked, inputs.locate(lo)[0], None, (hi - lo,))
        except SequenceFault as fault:
            if fault.batch is not None:
                fault.problem, fault.batch = inputs.locate(lo + fault.batch)
            raise
        gx, glp = self._grads(loss, x, lp, *inputs.locate(lo))
        return loss.detach(), gx, glp

    def _probe(self, inputs: _Inputs, kl_coef: float, hi: int) -> None:
        """The first plain call, then (vmap mode) vmap against plain calls on two batches."""
        self._plain(inputs, 0, kl_coef, spy=True)
        self.probed = True
        if self.mode != "vmap":
            return
        try:
            loss, gx, _glp = self._vmapped(inputs, 0, hi, kl_coef)
        except ModeChanged as exc:
            self._fallback(f"torch.func.vmap could not run it: {exc}")
        for i in sorted({0, hi - 1}):
            pl, pgx, _ = self._plain(inputs, i, kl_coef)
            if not (_close(pl, loss[i]) and _close(pgx, gx[i])):
                self._fallback(
                    "under torch.func.vmap it gave a different loss or gradient than plain calls on "
                    "the same batch (it must depend on something vmap changes, e.g. global state "
                    "or the batch dimension)"
                )

    def _fallback(self, reason: str) -> None:
        self.mode = "loop"
        self.fallback_reason = reason
        raise ModeChanged(reason)

    def evaluate(
        self,
        problems: list[SequenceProblem],
        *,
        rtol: float | None,
        atol: float,
        check_determinism: bool,
    ) -> list[Evaluation]:
        """One :class:`Evaluation` per problem (all of one shape); raises :class:`ModeChanged` on a fallback."""
        data = shape_data(problems[0].shape)
        inputs = _Inputs(problems, data)
        inputs.used = self.used
        s = data.shape
        kl = problems[0].kl_coef
        total = inputs.x.shape[0]
        chunk = max(1, CHUNK_ELEMENTS // (s.rows * s.max_len * s.vocab_size))
        if not self.probed:
            self._probe(inputs, kl, min(chunk, total))
        run = self._vmapped if self.mode == "vmap" else self._looped
        losses, gxs, glps = [], [], []
        for lo in range(0, total, chunk):
            hi = min(total, lo + chunk)
            try:
                loss, gx, glp = run(inputs, lo, hi, kl)
            except ModeChanged as exc:
                self._fallback(f"torch.func.vmap could not run it: {exc}")
            losses.append(loss)
            gxs.append(gx)
            glps.append(glp)
            if check_determinism and lo == 0:
                again = run(inputs, lo, hi, kl)
                self._same((loss, gx), (again[0], again[1]), inputs, lo)
        self.batches_evaluated += total
        gx_all = torch.cat(gxs) if len(gxs) > 1 else gxs[0]
        glp_all = (torch.cat(glps) if len(glps) > 1 else glps[0]).numpy()
        per_batch = _scatter(data, gx_all, len(problems))
        # the tolerance follows the loss's own dtype (issue 9: the verdict stays strict); the
        # dtypes seen inside the loss only feed the round-off note of a counterexample
        eps = max(output_eps(x.dtype) for x in losses)
        out = []
        for m, problem in enumerate(problems):
            sl = slice(m * inputs.g, (m + 1) * inputs.g)
            out.append(
                summarise(
                    problem,
                    per_batch[sl],
                    eps,
                    rtol=rtol,
                    atol=atol,
                    token_weights=-glp_all[sl],
                    direct=self.direct,
                )
            )
        return out

    def _same(
        self, first: tuple[Any, Any], again: tuple[Any, Any], inputs: _Inputs, lo: int
    ) -> None:
        for a, b in zip(first, again, strict=True):
            if _close(a, b):
                continue
            diff = (a - b).abs().reshape(a.shape[0], -1).amax(dim=1)
            j = int(diff.argmax())
            problem, batch = inputs.locate(lo + j)
            raise SequenceFault(
                "nondeterministic",
                f"gave a different {'loss' if a.dim() == 1 else 'gradient'} when called again on the "
                f"same batch ({float(first[0][j])!r} then {float(again[0][j])!r}); the exact checker "
                "needs a deterministic function of the batch (no random numbers, no state kept "
                "between calls)",
                problem=problem,
                batch=batch,
            )


def _close(a: Any, b: Any) -> bool:
    a64 = a.detach().to(torch.float64)
    b64 = b.detach().to(torch.float64)
    if a64.shape != b64.shape:
        return False
    eps = max(output_eps(a.dtype), output_eps(b.dtype))
    scale = float(a64.abs().max()) if a64.numel() else 0.0
    allowed = DETERMINISM_ULPS * eps * (a64.abs() + b64.abs() + scale)
    return bool(((a64 - b64).abs() <= allowed).all())


def _scatter(data: ShapeData, gx: Any, problems: int) -> FloatArray:
    """``(M G, B, T, V)`` logit gradients -> ``-(M G, P, N+1, V)`` theta gradients (sum by node).

    The estimate is the *negative* gradient of the loss (a loss is minimised).
    """
    s = data.shape
    total = gx.shape[0]
    block = s.num_prompts * s.space.num_rows
    rows = np.broadcast_to(data.rows, (problems, *data.rows.shape)).reshape(
        (total, *data.rows.shape[1:])
    )
    index = torch.from_numpy((np.arange(total)[:, None, None] * block + rows).reshape(-1))
    out = torch.zeros(total * block, s.vocab_size, dtype=gx.dtype).index_add_(
        0, index, gx.reshape(-1, s.vocab_size)
    )
    result: FloatArray = (
        (-out).numpy().reshape(total, s.num_prompts, s.space.num_rows, s.vocab_size)
    )
    return result


def _reads_logits_directly(x: FloatArray, tokens: Any, gx: FloatArray, glp: FloatArray) -> bool:
    """Whether ``dL/dX`` has more than the part through ``log_probs`` (checked on the probe batch)."""
    shifted = x - x.max(axis=-1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=-1, keepdims=True)
    onehot = np.eye(x.shape[-1])[np.asarray(tokens)]
    implied = glp[..., None] * (onehot - p)
    scale = float(np.abs(gx).max(initial=0.0))
    return bool(np.abs(gx - implied).max(initial=0.0) > DIRECT_TOLERANCE * max(scale, 1e-300))


__all__ = [
    "CHUNK_ELEMENTS",
    "DIRECT_TOLERANCE",
    "TORCH_THREADS",
    "ModeChanged",
    "TorchLoss",
    "torch_threads",
]
