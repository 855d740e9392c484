"""Benchmark the sequence checker: time to verdict, enumeration sizes, cost of the exact sum, vmap vs fallback.

Run:  PYTHONPATH=. python benchmarks/bench_sequence.py [--seed 0] [--entries a,b] [--skip-catalogue]

Sections printed:

1. **Time to verdict** for every entry of :mod:`impl.sequence_catalogue` (its own check
   settings), or for a few built-in losses when that module is absent: verdict against the
   expected one (a "scaled" verdict must also get every constant right), seconds, and the
   evaluation mode.  Then the median and maximum seconds separately for the biased entries
   (time to catch), the correct ones (unbiased or scaled: time to certify) and the error ones.
   Targets (issue 8): median under 2 s for a biased loss, under 10 s to certify a correct one.
2. **Enumeration**: for the default settings, every shape ``(V, T, k, P)`` the battery runs,
   with its responses ``R`` per prompt, batches ``G = R**(kP)`` and token positions ``G B T``.
3. **Cost of the exact sum**: on each default shape, one exact evaluation of a problem (all
   ``G`` batches through ``vmap``, one backward, the scatter to theta and the weighted sums)
   against one plain call of the loss (forward and backward) on one batch of the same shape:
   the ratio says how many plain calls the exact sum costs.
4. **vmap vs fallback**: the same shapes evaluated with the loss called once per batch
   (``vmap`` off), and a whole check of a loss that ``vmap`` can run against its twin that
   it cannot (the fallback plans smaller problems).
5. **The one-call-per-batch fallback, before and after** (issue 16 item 4; needs
   ``--baseline DIR``, a checkout of the old code, e.g. ``git worktree add --detach DIR
   <commit>``): on :data:`LOOPED_SHAPE`, microseconds per batch of one ``_looped`` chunk (all
   ``G`` batches, one backward) for a few losses, the *floor* (the same loss called on
   prebuilt batches, one backward: what the user's code costs) and our *overhead* (the
   difference); the same for per-batch token weights (``check_token_weights``, ``batched=False``)
   and, in total, for two trainer losses (``check_trainer_loss``'s path, whose model is
   ours), and batches per second in a whole fallback check.  Old and new code run in child
   processes, alternately, :data:`LOOPED_ROUNDS` times; the minimum over rounds is shown, with
   the load average before and after.  Times are CPU seconds of the measuring process
   (``time.process_time``; torch runs on one thread), less disturbed by other processes than
   wall-clock times on a shared machine.
6. **The multiset route** (issue 15, "Widen the region"; issue 16 item 4): per path, the
   default shapes covered on ordered batches only ("before") and with the multiset route
   ("after"), then whole checks of a few losses on both routes, back to back in this run:
   seconds, batches evaluated per second and shapes evaluated.  Targets: the fallback covers
   the 17 default shapes vmap covered on ordered batches (it covered 14) and vmap all 18;
   the batches evaluated per second stay within 20% of the ordered route's (the route adds
   no cost per batch); a whole check in the fallback within 4x its ordered time (it
   evaluates up to 6x more shapes' batches).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# BENCH_CODE_ROOT: the checkout whose code a child process of section 5 measures
sys.path.insert(0, os.environ.get("BENCH_CODE_ROOT") or str(Path(__file__).resolve().parents[1]))

import torch

from properties.sequence.checker import (
    DEFAULT_GROUP_SIZES,
    DEFAULT_MAX_LEN,
    DEFAULT_VOCAB_SIZE,
    SequenceReport,
    check_sequence_loss,
    check_token_weights,
)
from properties.sequence.evaluation import Sandbox, TokenWeights
from properties.sequence.problems import (
    MAX_BATCHES_VECTORISED,
    battery,
    plan_shapes,
)
from properties.sequence.torch_loss import TorchLoss, torch_threads

SCALE_RTOL = 1e-6
"""A measured constant is "right" within this relative error of the catalogue's formula."""

PLAIN_REPEATS = 20
"""Plain calls timed per shape (the median is reported)."""


# --------------------------------------------------------------------------- fallback entries


def _seqsum(b: Any) -> Any:
    return (b.log_probs * b.mask).sum(-1)


def reinforce(b: Any) -> Any:
    return -(b.rewards * _seqsum(b)).mean()


def rloo(b: Any) -> Any:
    r = b.rewards.view(b.num_prompts, b.group_size)
    base = (r.sum(-1, keepdim=True) - r) / (b.group_size - 1)
    return -((r - base).reshape(-1) * _seqsum(b)).mean()


def rloo_not_vmappable(b: Any) -> Any:
    """RLOO behind a data-dependent branch: torch.func.vmap cannot run it."""
    if float(b.rewards.abs().sum()) >= 0.0:
        return rloo(b)
    return 2 * rloo(b)  # never taken


def group_mean(b: Any) -> Any:
    r = b.rewards.view(b.num_prompts, b.group_size)
    return -((r - r.mean(-1, keepdim=True)).reshape(-1) * _seqsum(b)).mean()


def token_mean(b: Any) -> Any:
    return -(b.rewards * _seqsum(b) / b.mask.sum(-1)).mean()


def grpo_std(b: Any) -> Any:
    r = b.rewards.view(b.num_prompts, b.group_size)
    a = ((r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + 1e-4)).reshape(-1)
    return -(a * _seqsum(b) / b.mask.sum(-1)).mean()


def ppo_clip(b: Any) -> Any:
    r = b.rewards.view(b.num_prompts, b.group_size)
    adv = (r - (r.sum(-1, keepdim=True) - r) / (b.group_size - 1)).reshape(-1)[:, None]
    ratio = torch.exp(b.log_probs - b.old_log_probs)
    obj = torch.minimum(ratio * adv, ratio.clamp(0.8, 1.2) * adv)
    return -(obj * b.mask).sum(-1).mean()


def mask_padding(b: Any) -> Any:
    return -(b.rewards * b.log_probs.sum(-1)).mean()


class _Entry:
    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        expected: str,
        scale: Callable[[int, int, int], float] | None,
    ) -> None:
        self.name, self.fn, self.expected, self.scale = name, fn, expected, scale
        self.protocol = "loss"
        self.kwargs: dict[str, Any] = {}


FALLBACK_ENTRIES = [
    _Entry("reinforce", reinforce, "unbiased", None),
    _Entry("rloo", rloo, "unbiased", None),
    _Entry("ppo-clip-on-policy", ppo_clip, "unbiased", None),
    _Entry("group-mean", group_mean, "scaled", lambda k, t, p: (k - 1) / k),
    _Entry("token-mean", token_mean, "biased", None),
    _Entry("grpo-std", grpo_std, "biased", None),
    _Entry("mask-counts-padding", mask_padding, "biased", None),
]


def _entries(names: list[str] | None) -> tuple[str, list[Any]]:
    try:
        from impl import sequence_catalogue  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        source, entries = (
            "built-in sample losses (impl.sequence_catalogue not found)",
            list(FALLBACK_ENTRIES),
        )
    else:
        cat = sequence_catalogue.SEQUENCE_CATALOGUE
        items = list(cat.values()) if isinstance(cat, dict) else list(cat)
        source, entries = f"impl.sequence_catalogue ({len(items)} entries)", items
    if names:
        entries = [e for e in entries if e.name in names]
    return source, entries


def _kwargs(entry: Any) -> dict[str, Any]:
    out = dict(getattr(entry, "kwargs", {}) or {})
    if not out and hasattr(entry, "settings"):
        out = entry.settings.checker_kwargs(entry.protocol)
    return out


def _right(entry: Any, report: SequenceReport) -> bool:
    if report.verdict != entry.expected:
        return False
    if entry.expected == "scaled" and entry.scale is not None and report.scale is not None:
        return all(
            abs(c - entry.scale(*key[:3])) <= SCALE_RTOL * abs(entry.scale(*key[:3]))
            for key, c in report.scale.items()
        )
    return True


def section_catalogue(seed: int, names: list[str] | None) -> None:
    source, entries = _entries(names)
    print(f"== 1. time to verdict, {source}, seed={seed}")
    times: dict[str, list[float]] = {"biased": [], "correct": [], "error": []}
    wrong = []
    for e in entries:
        check = check_sequence_loss if e.protocol == "loss" else check_token_weights
        start = time.perf_counter()
        report = check(e.fn, seed=seed, **_kwargs(e))
        seconds = time.perf_counter() - start
        ok = _right(e, report)
        if not ok:
            wrong.append(e.name)
        bucket = (
            "biased" if e.expected == "biased" else "error" if e.expected == "error" else "correct"
        )
        times[bucket].append(seconds)
        mode = report.run.mode if report.run is not None else "?"
        print(
            f"  {'ok ' if ok else 'XX '} {e.name:40s} {e.protocol:7s} expected {e.expected:9s} "
            f"got {report.verdict:9s} {seconds:7.2f} s  {mode}"
        )
    print(
        f"  right: {len(entries) - len(wrong)}/{len(entries)}"
        + (f"; WRONG: {', '.join(wrong)}" if wrong else "")
    )
    for bucket, label, target in (
        ("biased", "biased (time to catch)", 2.0),
        ("correct", "unbiased or scaled (time to certify)", 10.0),
        ("error", "error", None),
    ):
        xs = times[bucket]
        if not xs:
            continue
        goal = (
            ""
            if target is None
            else f"  (target: median < {target:g} s: {'met' if statistics.median(xs) < target else 'MISSED'})"
        )
        print(
            f"  {label:38s} n={len(xs):3d}  median {statistics.median(xs):6.2f} s  max {max(xs):6.2f} s{goal}"
        )


def section_enumeration() -> list[Any]:
    shapes = plan_shapes(
        DEFAULT_GROUP_SIZES,
        (1, 2),
        DEFAULT_VOCAB_SIZE,
        DEFAULT_MAX_LEN,
        budget=MAX_BATCHES_VECTORISED,
    )
    print(
        f"== 2. enumeration per problem (group sizes {DEFAULT_GROUP_SIZES}, num_prompts (1, 2), "
        f"V <= {DEFAULT_VOCAB_SIZE}, T <= {DEFAULT_MAX_LEN}, budget {MAX_BATCHES_VECTORISED} batches)"
    )
    print(f"  {'shape':24s} {'responses R':>11s} {'batches G':>10s} {'positions G*B*T':>16s}")
    for s in shapes:
        print(
            f"  {s.describe():24s} {s.space.num_responses:>11d} {s.num_batches:>10d} "
            f"{s.num_batches * s.rows * s.max_len:>16d}"
        )
    return shapes


def _plain_seconds(loss: Callable[..., Any], evaluator: TorchLoss, problem: Any) -> float:
    from properties.sequence.problems import shape_data
    from properties.sequence.torch_inputs import Inputs as _Inputs

    inputs = _Inputs([problem], shape_data(problem.shape))
    inputs.used = [False]
    times = []
    for i in range(PLAIN_REPEATS):
        start = time.perf_counter()
        evaluator._plain(inputs, i % inputs.x.shape[0], problem.kl_coef)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _evaluate_seconds(evaluator: TorchLoss, problem: Any, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        evaluator.evaluate([problem], rtol=None, atol=0.0, check_determinism=False)
        times.append(time.perf_counter() - start)
    return min(times)


def section_cost(shapes: list[Any]) -> None:
    print(
        "== 3. cost of the exact sum (one problem, all G batches) against one plain call on one batch"
    )
    print(
        f"  {'loss':10s} {'shape':24s} {'G':>6s} {'exact sum':>10s} {'plain call':>11s} {'ratio':>7s} "
        f"{'per batch':>10s} {'loop mode':>10s}"
    )
    for name, loss in (("rloo", rloo), ("ppo-clip", ppo_clip)):
        for s in shapes:
            if s.num_batches < 200 and s is not shapes[-1]:
                continue
            problem = battery(s, kl_coef=0.0, off_policy=False)[1]
            vm = TorchLoss(loss, sandbox=Sandbox())
            vm.evaluate([problem], rtol=None, atol=0.0, check_determinism=False)  # probe, warm-up
            exact = _evaluate_seconds(vm, problem)
            plain = _plain_seconds(loss, vm, problem)
            looped = ""
            if s.num_batches <= 2401:
                lp = TorchLoss(loss, sandbox=Sandbox(), use_vmap=False)
                lp.evaluate([problem], rtol=None, atol=0.0, check_determinism=False)
                looped = f"{_evaluate_seconds(lp, problem, repeats=1):9.3f}s"
            print(
                f"  {name:10s} {s.describe():24s} {s.num_batches:>6d} {exact:9.4f}s {plain * 1e3:9.3f}ms "
                f"{exact / plain:7.1f} {exact / s.num_batches * 1e6:8.1f}us {looped:>10s}"
            )


def section_fallback(seed: int) -> None:
    print("== 4. a whole check: vmap against the per-batch fallback (same RLOO loss)")
    for name, loss in (
        ("rloo (vmap)", rloo),
        ("rloo behind a data-dependent branch", rloo_not_vmappable),
    ):
        start = time.perf_counter()
        report = check_sequence_loss(loss, seed=seed)
        seconds = time.perf_counter() - start
        assert report.run is not None
        print(
            f"  {name:38s} {report.verdict:9s} {seconds:6.2f} s  mode={report.run.mode}  "
            f"shapes={len(report.run.shapes)}  budget={report.run.batch_budget} batches  "
            f"calls={report.estimator_calls}  problems={report.problems_checked}"
        )


LOOPED_SHAPE = (3, 3, 2, 1)
"""``(V, T, k, P)`` of section 5: ``G = 225`` batches, the largest ``V = 3, T = 3`` shape of the
fallback's budget."""

LOOPED_ROUNDS = 3
"""Alternate rounds of old and new code in section 5 (the minimum is shown: the machine is shared)."""

LOOPED_REPEATS = 7
"""Chunks timed per loss and round in a child of section 5 (the minimum is kept)."""


def free_loss(b: Any) -> Any:
    """The cheapest loss: one op, so that its time per batch is nearly all the checker's."""
    return b.log_probs.sum()


def _floor_seconds(fn: Callable[..., Any], inputs: Any, g: int) -> float:
    """The user's code alone on ``g`` prebuilt batches: the calls and one backward of their sum
    (CPU seconds of this process, like every time of section 5: the machine is shared).  The
    batches are built as cheaply as we know (one ``unbind`` per field, no reshape node for a 0-d
    loss), so that the floor holds only what the loss's own ops cost."""
    from properties.sequence.torch_inputs import log_probs, make_batch

    t = inputs.tensors(0, g)
    x = torch.from_numpy(inputs.x[:g]).requires_grad_()
    lp = log_probs(x, inputs, 0, g, t["tokens"])
    cols = {n: (v.unbind(0) if n != "group" else None) for n, v in t.items()}
    xs, lps = x.unbind(0), lp.unbind(0)
    batches = [
        make_batch({n: (c[i] if c is not None else t["group"]) for n, c in cols.items()}, xs[i], lps[i], inputs, 0.0)
        for i in range(g)
    ]
    gc.disable()  # the floor is the user's code alone, without the collector's pauses
    try:
        start = time.process_time()
        out = [fn(b) for b in batches]
        stacked = torch.stack([o if o.dim() == 0 else o.reshape(()) for o in out])
        torch.autograd.grad(stacked.sum(), (x, lp), allow_unused=True)
        return time.process_time() - start
    finally:
        gc.enable()


def _chunk_seconds(evaluator: Any, inputs: Any, g: int) -> float:
    start = time.process_time()
    evaluator._looped(inputs, 0, g, 0.0)
    return time.process_time() - start


def measure_looped(seed: int) -> dict[str, float]:
    """Section 5's child: microseconds per batch (``<loss>``, ``<loss> floor``) and a whole check."""
    from impl import trainer_catalogue
    from properties.sequence.problems import Shape, shape_data
    from properties.sequence.torch_inputs import Inputs
    from properties.trainer.checker import check_trainer_loss
    from properties.trainer.evaluation import TrainerInputs, TrainerLoss

    shape = Shape(*LOOPED_SHAPE)
    problem = battery(shape, kl_coef=0.0, off_policy=False)[1]
    out: dict[str, float] = {}
    with torch_threads():
        for name, fn in LOOPED_LOSSES:
            ev = TorchLoss(fn, sandbox=Sandbox(), use_vmap=False)
            ev.evaluate([problem], rtol=None, atol=0.0, check_determinism=False)  # probe, warm-up
            inputs = Inputs([problem], shape_data(shape))
            inputs.used = [False]
            g = inputs.x.shape[0]
            out[name] = min(_chunk_seconds(ev, inputs, g) for _ in range(LOOPED_REPEATS)) / g * 1e6
            out[f"{name} floor"] = (
                min(_floor_seconds(fn, inputs, g) for _ in range(LOOPED_REPEATS)) / g * 1e6
            )
        reinforce_fn = trainer_catalogue.get("trainer-reinforce").fn
        for name, split in (("trainer-reinforce", (1, 1)), ("trainer-reinforce M=2 D=2", (2, 2))):
            tl = TrainerLoss(reinforce_fn, sandbox=Sandbox(), micro_batches=split[0], dp_size=split[1], use_vmap=False)
            tl.evaluate([problem], rtol=None, atol=0.0, check_determinism=False)
            tin = TrainerInputs([problem], shape_data(shape))
            tin.used = [False]
            g = tin.x.shape[0]
            out[name] = min(_chunk_seconds(tl, tin, g) for _ in range(LOOPED_REPEATS)) / g * 1e6
    weigher = TokenWeights(reinforce_weights, batched=False, sandbox=Sandbox())
    problems = battery(shape, kl_coef=0.0, off_policy=False)[:4]
    g = shape.num_batches * len(problems)
    out["token weights"] = min(_weights_seconds(weigher, problems) for _ in range(LOOPED_REPEATS)) / g * 1e6
    out["token weights floor"] = min(_weights_floor(problems) for _ in range(LOOPED_REPEATS)) / g * 1e6
    start = time.process_time()
    report = check_sequence_loss(rloo_not_vmappable, seed=seed)
    out["check seconds"] = time.process_time() - start
    out["check calls"] = float(report.estimator_calls)
    def reinforce_item(model: Any, inputs: Any) -> Any:
        float(inputs["rewards"].sum())  # vmap cannot run it: the fallback
        return reinforce_fn(model, inputs)

    start = time.process_time()
    report = check_trainer_loss(reinforce_item, seed=seed, group_sizes=(2,), num_prompts=(1,))
    out["trainer check seconds"] = time.process_time() - start
    out["trainer check calls"] = float(report.estimator_calls)
    return out


def reinforce_weights(rewards: Any, mask: Any, log_probs: Any) -> Any:
    """REINFORCE's token weights (the NumPy protocol, one batch per call)."""
    return rewards[:, None] * mask / rewards.shape[0]


def _weights_seconds(weigher: Any, problems: list[Any]) -> float:
    start = time.process_time()
    weigher.weights(problems, check_determinism=False)
    return time.process_time() - start


def _weights_floor(problems: list[Any]) -> float:
    """The weight function alone on every batch's arrays (built beforehand)."""
    from properties.sequence.problems import shape_data

    data = shape_data(problems[0].shape)
    rows = [
        (pr.rewards[data.prompt, batch], data.mask[i], data.mask[i])
        for pr in problems
        for i, batch in enumerate(data.batches)
    ]
    start = time.process_time()
    for r, m, lp in rows:
        reinforce_weights(r, m, lp)
    return time.process_time() - start


LOOPED_LOSSES: list[tuple[str, Callable[..., Any]]] = [
    ("free (one op)", free_loss),
    ("reinforce", reinforce),
    ("rloo + float()", rloo_not_vmappable),
    ("grpo-std", grpo_std),
    ("ppo-clip", ppo_clip),
]
"""Section 5's sequence losses, each forced into the fallback (``vmap`` off)."""


def _child(root: str, seed: int) -> dict[str, float]:
    env = {**os.environ, "BENCH_CODE_ROOT": root, "PYTHONPATH": root}
    done = subprocess.run(
        [sys.executable, __file__, "--measure-looped", "--seed", str(seed)],
        env=env, capture_output=True, text=True, check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def section_looped(baseline: str, seed: int) -> None:
    here = str(Path(__file__).resolve().parents[1])
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for _ in range(LOOPED_ROUNDS):
        runs["before"].append(_child(baseline, seed))
        runs["after"].append(_child(here, seed))
    load_after = os.getloadavg()
    best = {k: {key: min(r[key] for r in rs) for key in rs[0]} for k, rs in runs.items()}
    b, a = best["before"], best["after"]
    print(
        f"== 5. the one-call-per-batch fallback, V, T, k, P = {LOOPED_SHAPE}: before ({baseline}) "
        f"and after ({here}); min of {LOOPED_ROUNDS} alternate rounds; load average "
        f"{' '.join(f'{x:.2f}' for x in load_before)} before, {' '.join(f'{x:.2f}' for x in load_after)} after"
    )
    print(
        f"  {'loss (us per batch)':28s} {'floor':>7s} {'before':>8s} {'after':>8s} "
        f"{'overhead before':>16s} {'after':>7s} {'ratio':>6s} {'batches/s before':>17s} {'after':>7s}"
    )
    for name, _ in LOOPED_LOSSES:
        floor = min(b[f"{name} floor"], a[f"{name} floor"])
        ob, oa = b[name] - floor, a[name] - floor
        print(
            f"  {name:28s} {floor:7.1f} {b[name]:8.1f} {a[name]:8.1f} {ob:16.1f} {oa:7.1f} "
            f"{ob / max(oa, 1e-9):6.1f} {1e6 / b[name]:17.0f} {1e6 / a[name]:7.0f}"
        )
    floor = min(b["token weights floor"], a["token weights floor"])
    ob, oa = b["token weights"] - floor, a["token weights"] - floor
    print(
        f"  {'token weights (batched=False)':28s} {floor:7.1f} {b['token weights']:8.1f} "
        f"{a['token weights']:8.1f} {ob:16.1f} {oa:7.1f} {ob / max(oa, 1e-9):6.1f} "
        f"{1e6 / b['token weights']:17.0f} {1e6 / a['token weights']:7.0f}"
    )
    for name in ("trainer-reinforce", "trainer-reinforce M=2 D=2"):
        print(
            f"  {name:28s} {'':>7s} {b[name]:8.1f} {a[name]:8.1f} {'':>16s} {'':>7s} "
            f"{b[name] / a[name]:6.1f} {1e6 / b[name]:17.0f} {1e6 / a[name]:7.0f}  (total ratio)"
        )
    for label, key in (
        ("check_sequence_loss(rloo + float())", "check"),
        ("check_trainer_loss(reinforce + float(), k=2, P=1)", "trainer check"),
    ):
        print(
            f"  whole {label}: {b[key + ' seconds']:.2f} s before, {a[key + ' seconds']:.2f} s after "
            f"CPU ({b[key + ' calls']:.0f} and {a[key + ' calls']:.0f} calls: "
            f"{b[key + ' calls'] / b[key + ' seconds']:.0f} and {a[key + ' calls'] / a[key + ' seconds']:.0f} "
            "calls per second)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--entries", default="", help="comma-separated catalogue names (default: all)"
    )
    parser.add_argument("--skip-catalogue", action="store_true")
    parser.add_argument(
        "--baseline", default="", help="a checkout of the old code: adds section 5 (before/after)"
    )
    parser.add_argument("--only-looped", action="store_true", help="run section 5 alone")
    parser.add_argument("--measure-looped", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--multiset-only", action="store_true", help="section 6 only")
    args = parser.parse_args()
    if args.multiset_only:
        section_multiset(args.seed)
        return
    if args.measure_looped:
        print(json.dumps(measure_looped(args.seed)))
        return
    if args.only_looped:
        if not args.baseline:
            parser.error("--only-looped needs --baseline DIR")
        section_looped(args.baseline, args.seed)
        return
    names = [n for n in args.entries.split(",") if n] or None
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads available (the checker uses 1)"
    )
    if not args.skip_catalogue:
        section_catalogue(args.seed, names)
    shapes = section_enumeration()
    with torch_threads():
        section_cost([s for s in shapes if s.num_prompts == 1])
    section_fallback(args.seed)
    if args.baseline:
        section_looped(args.baseline, args.seed)
    section_multiset(args.seed)


MULTISET_LOSSES = (
    ("rloo", "rloo", True),
    ("group-mean", "group_mean", True),
    ("ppo-clip", "ppo_clip", True),
    ("token-mean (biased)", "token_mean", True),
    ("rloo, no vmap", "rloo_not_vmappable", False),
    ("group-mean, no vmap", "group_mean", False),
    ("token-mean, no vmap", "token_mean", False),
)
"""``(label, loss, vmap)`` of the whole checks timed on both routes."""

MULTISET_CATALOGUE = ("rloo-verl-dict-loop", "dr-grpo-trl", "ppo-clip-off-policy", "w-rloo-multi-prompt")
"""Catalogue entries timed on both routes (their own settings)."""


def _ordered_only() -> Any:
    """A context in which checks take ordered batches only (the checker before the route)."""
    import properties.sequence.checker as checker

    class _Ordered(checker.Route):
        def __init__(self) -> None:
            super().__init__()
            self.multiset = False

    @contextlib.contextmanager
    def patched() -> Any:
        before = checker.Route
        checker.Route = _Ordered  # type: ignore[misc]
        try:
            yield
        finally:
            checker.Route = before  # type: ignore[misc]

    return patched()


def section_multiset(seed: int) -> None:
    from properties.sequence.problems import (
        LOOPED_EXTRA_VOCAB_BATCHES,
        MAX_BATCHES_LOOPED,
        MULTISET_BATCHES_LOOPED,
        MULTISET_BATCHES_VECTORISED,
    )

    print("== 6. the multiset route: shapes covered per path, whole checks before (ordered) and after")
    args = (DEFAULT_GROUP_SIZES, (1,), DEFAULT_VOCAB_SIZE, DEFAULT_MAX_LEN)
    plans = {
        ("vmap", "ordered"): plan_shapes(*args, budget=MAX_BATCHES_VECTORISED),
        ("vmap", "multiset"): plan_shapes(*args, budget=MULTISET_BATCHES_VECTORISED, multiset=True),
        ("fallback", "ordered"): plan_shapes(
            *args, budget=MAX_BATCHES_LOOPED, extra_vocab_budget=LOOPED_EXTRA_VOCAB_BATCHES
        ),
        ("fallback", "multiset"): plan_shapes(*args, budget=MULTISET_BATCHES_LOOPED, multiset=True),
    }
    total = len(args[0]) * (DEFAULT_VOCAB_SIZE - 1) * DEFAULT_MAX_LEN
    for (path, route), shapes in plans.items():
        print(
            f"  {path:8s} {route:8s} {len(shapes):2d}/{total} default shapes (P=1), "
            f"{sum(s.cost for s in shapes):6d} batches evaluated per problem set, "
            f"largest {max(s.num_batches for s in shapes)} ordered batches"
        )
    base = {s.key for s in plans[("vmap", "ordered")]}
    covered = base <= {s.key for s in plans[("fallback", "multiset")]}
    print(f"  target: the fallback covers the {len(base)} shapes vmap covered: {'met' if covered else 'MISSED'}")
    print(
        f"  {'loss':22s} {'route':8s} {'verdict':9s} {'seconds':>8s} {'batches':>8s} "
        f"{'batches/s':>10s} {'shapes':>6s}"
    )
    rates: dict[tuple[str, str], float] = {}
    seconds_of: dict[tuple[str, str], float] = {}
    for label, attr, _ in MULTISET_LOSSES:
        loss = globals()[attr]
        if label.endswith("no vmap") and attr != "rloo_not_vmappable":
            loss = _no_vmap(loss)
        for route in ("ordered", "multiset"):
            context = _ordered_only() if route == "ordered" else contextlib.nullcontext()
            with context:
                start = time.perf_counter()
                report = check_sequence_loss(loss, seed=seed)
                seconds = time.perf_counter() - start
            assert report.run is not None
            batches = report.run.batches_evaluated
            rates[(label, route)] = batches / seconds
            seconds_of[(label, route)] = seconds
            print(
                f"  {label:22s} {route:8s} {report.verdict:9s} {seconds:8.2f} {batches:8d} "
                f"{batches / seconds:10.0f} {len(report.run.shapes):6d}"
            )
    for name in MULTISET_CATALOGUE:
        _, found = _entries([name])
        for entry in found:
            check = check_sequence_loss if entry.protocol == "loss" else check_token_weights
            for route in ("ordered", "multiset"):
                context = _ordered_only() if route == "ordered" else contextlib.nullcontext()
                with context:
                    start = time.perf_counter()
                    report = check(entry.fn, seed=seed, **_kwargs(entry))
                    seconds = time.perf_counter() - start
                assert report.run is not None
                print(
                    f"  {name[:22]:22s} {route:8s} {report.verdict:9s} {seconds:8.2f} "
                    f"{'':8s} {'':10s} {len(report.run.shapes):6d}  ({report.run.mode}, "
                    f"right: {_right(entry, report)})"
                )
    for label, _, vmap in MULTISET_LOSSES:
        ratio = rates[(label, "multiset")] / rates[(label, "ordered")]
        slower = seconds_of[(label, "multiset")] / seconds_of[(label, "ordered")]
        goal = "" if vmap else f"; whole check x{slower:.2f} (target <= 4: {'met' if slower <= 4 else 'MISSED'})"
        print(
            f"  {label:22s} batches/s multiset/ordered = {ratio:.2f} "
            f"(target >= 0.8: {'met' if ratio >= 0.8 else 'MISSED'}){goal}"
        )


def _no_vmap(loss: Callable[..., Any]) -> Callable[..., Any]:
    """The loss behind ``.item()``: ``torch.func.vmap`` cannot run it (the fallback path)."""

    def wrapped(b: Any) -> Any:
        _ = float(b.rewards.sum().item())
        return loss(b)

    wrapped.__name__ = f"{loss.__name__}_no_vmap"
    return wrapped


if __name__ == "__main__":
    main()
