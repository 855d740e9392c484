"""What running ``ida-verify check`` in a child process costs (issue 9).

Prints, each as the best of ``REPEATS`` interleaved runs (wall time and CPU time, the latter
including child processes, as it barely depends on how loaded the machine is):

1. the machine's load (``uptime``), so the figures can be read against it;
2. whole commands, wall time: ``ida-verify check catalogue:reinforce`` and a per-group
   NumPy REINFORCE in a file, isolated (the command line as it is) against the same check
   run in the command's own process (what the command line did before);
3. child start-up by start method (spawn, forkserver, fork): one isolated check of
   ``catalogue:reinforce`` with ``max_examples=0`` minus the same check in-process;
4. the per-call cost of the timing wrapper (:class:`properties.cli.isolation.TimedCall`), alone
   and as a share of a per-group check in-process.

Run: ``PYTHONPATH=. python benchmarks/bench_isolation.py [REPEATS]``.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from impl.catalogue import get
from properties.cli.isolation import TimedCall, run_isolated
from properties.cli.request import CheckRequest, Limits
from properties.cli.state import _STATE_SIZE
from properties.onestep.checker import check_estimator

ROOT = Path(__file__).resolve().parents[1]

PER_GROUP_FILE = """
import numpy as np


def reinforce(logits, samples, rewards):
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return np.mean(rewards[:, None] * (np.eye(p.size)[samples] - p), axis=0)
"""

IN_PROCESS = """
import sys
from pathlib import Path
from properties.onestep.checker import check_estimator
target, ks, batched = sys.argv[1], tuple(int(k) for k in sys.argv[2].split(",")), sys.argv[3] == "1"
head, _, attr = target.rpartition(":")
if head == "catalogue":
    from impl.catalogue import get
    fn = get(attr).fn
else:
    import importlib.util
    spec = importlib.util.spec_from_file_location("user", head)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, attr)
print(check_estimator(fn, group_sizes=ks, batched=batched, name=attr).message)
"""


Times = tuple[float, float]
"""``(wall seconds, CPU seconds)``; CPU time includes finished child processes."""


def measure(run: Callable[[], Any]) -> Times:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu, start = time.process_time(), time.perf_counter()
    run()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    children = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, time.process_time() - cpu + children


def best_of_interleaved(runs: list[Callable[[], Any]], repeats: int) -> list[Times]:
    """Best wall and best CPU time of each run, the runs alternating so that load hits all."""
    times: list[list[Times]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, seen in zip(runs, times, strict=True):
            seen.append(measure(run))
    return [(min(w for w, _ in seen), min(c for _, c in seen)) for seen in times]


def command(argv: list[str]) -> Callable[[], None]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run() -> None:
        subprocess.run(argv, cwd=ROOT, env=env, check=False, capture_output=True)

    return run


def whole_commands(repeats: int, user_file: Path) -> None:
    print("\n2. Whole commands (best of the repeats; wall and CPU seconds, CPU including children):")
    py = sys.executable
    cases = [
        ("catalogue:reinforce (batched, k=1..4)", "catalogue:reinforce", "1,2,3,4", "1"),
        ("per-group file estimator (k=2,3,4)", f"{user_file}:reinforce", "2,3,4", "0"),
    ]
    for label, target, ks, batched in cases:
        isolated, inproc = best_of_interleaved(
            [
                command([py, "-m", "properties.cli", "check", target, "--group-sizes", ks]),
                command([py, "-c", IN_PROCESS, target, ks, batched]),
            ],
            repeats,
        )
        print(
            f"   {label:<38} in-process {inproc[0]:5.2f} s wall {inproc[1]:5.2f} s CPU;  "
            f"isolated {isolated[0]:5.2f} s wall {isolated[1]:5.2f} s CPU;  "
            f"cost {isolated[0] - inproc[0]:+.2f} s wall {isolated[1] - inproc[1]:+.2f} s CPU"
        )


def start_methods(repeats: int) -> None:
    print("\n3. Child start-up and teardown by start method (isolated minus in-process; "
          "catalogue:reinforce, battery only; best of the repeats):")
    fn = get("reinforce").fn
    kwargs = {"group_sizes": (1, 2, 3, 4), "seed": 0, "max_examples": 0, "batched": True}
    check_estimator(fn, name="warm-up", **kwargs)
    request = CheckRequest(kind="estimator", target="catalogue:reinforce", name="reinforce", kwargs=kwargs)
    methods = [m for m in ("spawn", "forkserver", "fork") if m in multiprocessing.get_all_start_methods()]
    runs: list[Callable[[], Any]] = [lambda: check_estimator(fn, name="reinforce", **kwargs)]
    for method in methods:
        runs.append(lambda m=method: run_isolated(request, Limits(), start_method=m))
    times = best_of_interleaved(runs, repeats)
    inproc = times[0]
    print(f"   in-process check: {inproc[0]:.3f} s wall, {inproc[1]:.3f} s CPU")
    for method, (wall, cpu) in zip(methods, times[1:], strict=True):
        # a forkserver's children are the server's, not ours: their CPU time is not visible here
        cpu_text = "   n/a" if method == "forkserver" else f"{cpu - inproc[1]:+.3f} s"
        print(
            f"   {method:<10} isolated {wall:6.3f} s wall;  start-up and teardown "
            f"{wall - inproc[0]:+.3f} s wall {cpu_text} CPU"
        )


def per_call(repeats: int, user_file: Path) -> None:
    print("\n4. Per-call cost of the timing wrapper (best of the repeats, runs interleaved):")
    state = multiprocessing.get_context("spawn").RawArray(ctypes.c_double, _STATE_SIZE)
    # the per-group pattern: the same logits, a new row view of samples/rewards every call
    logits, samples, rewards = np.zeros(4), np.zeros((8, 3), dtype=np.int64), np.zeros((8, 3))

    def noop(a: Any, b: Any, c: Any) -> Any:
        return a

    timed = TimedCall(noop, state)
    calls = 200_000
    (raw, _), (wrapped, _) = best_of_interleaved(
        [
            lambda: [noop(logits, samples[i & 7], rewards[i & 7]) for i in range(calls)],
            lambda: [timed(logits, samples[i & 7], rewards[i & 7]) for i in range(calls)],
        ],
        repeats,
    )
    per_call_seconds = (wrapped - raw) / calls
    print(f"   wrapper alone: {per_call_seconds * 1e9:.0f} ns per call "
          f"(the same call unwrapped: {raw / calls * 1e9:.0f} ns)")

    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_user", user_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = module.reinforce
    kw: dict[str, Any] = {"group_sizes": (2, 3, 4), "max_examples": 100, "batched": False}
    report = check_estimator(fn, **kw)
    timed_fn = TimedCall(fn, state)
    (_, bare), (_, with_wrapper) = best_of_interleaved(
        [lambda: check_estimator(fn, **kw), lambda: check_estimator(timed_fn, **kw)], repeats
    )
    calls = report.estimator_calls
    print(
        f"   per-group check of a NumPy REINFORCE ({calls} calls, {report.estimator_seconds:.2f} s "
        f"inside the estimator): {bare:.2f} s CPU; the wrapper's {calls} calls cost "
        f"{per_call_seconds * calls:.3f} s = {100 * per_call_seconds * calls / bare:.1f}% of it"
    )
    print(
        f"   (the same check wrapped, measured directly: {with_wrapper:.2f} s CPU, "
        f"{100 * (with_wrapper - bare) / bare:+.1f}%: a difference of two noisy timings)"
    )


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    print(f"1. Machine: {os.cpu_count()} cores; uptime: {uptime}")
    print(f"   Python {sys.version.split()[0]}, {repeats} repeats per figure")
    with tempfile.TemporaryDirectory() as tmp:
        user_file = Path(tmp) / "per_group.py"
        user_file.write_text(PER_GROUP_FILE)
        whole_commands(repeats, user_file)
        start_methods(repeats)
        per_call(repeats, user_file)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    print(f"\nuptime after: {uptime}")


if __name__ == "__main__":
    main()
