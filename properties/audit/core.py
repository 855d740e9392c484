r"""The library-neutral audit: configurations, the row each gets, and running them all.

A library module (:mod:`properties.audit.verl`) lists its configurations and says how to turn
one into a sequence loss; this module checks each one with
:func:`properties.check_sequence_loss` (or :func:`properties.check_trainer_loss`, where the
configuration asks for it) and returns one :class:`AuditRow` per configuration.
A configuration the sequence protocol cannot express (a critic's values, a learned reward
model, multi-turn tool calls, ...) carries ``not_checked``, the reason, and is listed with the
verdict ``"not checked"``: never dropped.

A library module is a module with

* ``LIBRARY`` (its name) and ``EXTRA`` (the extra of this package that installs it);
* ``version() -> str``: imports the library (raising :class:`ImportError` when it is absent)
  and returns its version;
* ``configurations() -> list[Configuration]``: the configuration space, read from the
  library itself;
* optionally ``PRECISION = (dtype, reason)``: the precision the library's code computes in
  (``"float32"``, ...) and why (the file and class that fix it).  Every row is then judged
  once at that dtype's round-off tolerance (the checker's own rule:
  ``check_trainer_loss(precision=...)``, else :func:`precision_tolerance`), not strictly in
  float64, and says so (:attr:`AuditRow.precision`); without it rows are strict;
* ``build(config) -> (loss_fn, check_kwargs)``: the loss for one configuration, built from the
  library's own functions, and the keyword arguments of ``check_sequence_loss`` it needs
  (``kl_coef``, ``off_policy``, ...).  ``check_kwargs["checker"] = "trainer"`` asks for
  :func:`properties.check_trainer_loss` instead (``loss_fn(model, inputs)``, with its
  ``micro_batches``, ``dp_size``, ``advantages``, ``against``); a row judged
  ``against="one-call"`` says so at the start of its cause.

:func:`run_audit` runs the configurations here (``jobs=1``), in a standard-library process
pool (``spawn``), or as Ray tasks on a cluster (:class:`RayCluster`; Ray is imported only
then), one configuration per task: a configuration is built and checked in the worker, so
only the small frozen :class:`Configuration` and :class:`AuditRow` cross process boundaries,
and every runner gives the same rows in the same order (only the times differ).

>>> c = Configuration("verl", "loss:dro", (("policy_loss", "dro"),), not_checked="needs dro_beta")
>>> row = run_configuration(c, "0.0")
>>> row.verdict, row.cause
('not checked', 'needs dro_beta')
"""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from properties.audit.cause import one_line as _one_line

LIBRARIES: dict[str, str] = {
    "catalogue": "properties.audit.catalogue",
    "trl": "properties.audit.trl",
    "verl": "properties.audit.verl",
}
"""Each auditable library and the module that lists its configurations."""

NOT_CHECKED = "not checked"
"""The verdict of a configuration the protocol cannot express (its ``cause`` says why)."""

AUDIT_SETTINGS: dict[str, Any] = {
    "group_sizes": (2, 3, 4),
    "vocab_size": 3,
    "max_len": 3,
    "max_examples": 5,
    "seed": 0,
}
"""The sequence checker's settings for every configuration (a library may add ``kl_coef``,
``off_policy``): the default shapes (``k`` in 2..4, ``V`` up to 3, ``T`` up to 3, one prompt)
with the whole battery, and 5 Hypothesis problems instead of 30, because library code calls
``.item()`` and runs in the checker's one-batch-at-a-time mode (about 10 ms a batch)."""

@dataclass(frozen=True)
class Configuration:
    """One configuration of a library: its name, its axes, or why it is not checked.

    ``axes`` are ``(axis, value)`` pairs (``estimator``, ``policy_loss``, ``loss_agg_mode``,
    ``kl``, ``off_policy``, ...); ``not_checked`` is ``None`` for a configuration the audit
    checks, else a one-line reason.
    """

    library: str
    name: str
    axes: tuple[tuple[str, str], ...]
    not_checked: str | None = None

    def axis(self, name: str, default: str = "") -> str:
        """The value of one axis.

        >>> Configuration("x", "n", (("estimator", "grpo"),)).axis("estimator")
        'grpo'
        """
        return dict(self.axes).get(name, default)


@dataclass(frozen=True)
class AuditRow:
    """The verdict on one configuration.

    ``verdict`` is the sequence checker's (``unbiased``, ``scaled``, ``biased``, ``error``) or
    ``"not checked"``; ``constant`` the scale of a ``scaled`` row (a closed form in ``k``,
    ``T``, ``P`` where :func:`properties.audit.formula.fit_formula` finds one, else the measured
    values);
    ``cause`` one line (what makes a biased or scaled row so, :mod:`properties.audit.cause`;
    else the counterexample's reason, the error, or why not checked); ``detail`` the
    checker's own statement (the symptom); ``unchecked`` the shapes the checker could not
    reach within its budget; ``precision`` the precision the row was judged at, with its
    tolerance and reason, when the library declares one (``PRECISION``; empty: strict float64).
    """

    library: str
    version: str
    name: str
    axes: tuple[tuple[str, str], ...]
    verdict: str
    constant: str
    cause: str
    seconds: float
    unchecked: tuple[str, ...] = ()
    report: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    detail: str = ""
    precision: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields (the checker's full report under ``report``)."""
        return {
            "library": self.library,
            "version": self.version,
            "name": self.name,
            "axes": dict(self.axes),
            "verdict": self.verdict,
            "constant": self.constant,
            "cause": self.cause,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
            "unchecked": list(self.unchecked),
            "precision": self.precision,
            "report": self.report,
        }


def library_module(library: str) -> ModuleType:
    """The module of ``library`` (a key of :data:`LIBRARIES`); ``KeyError`` for an unknown one."""
    return importlib.import_module(LIBRARIES[library])


def constant_text(scale: Mapping[Any, float] | None) -> str:
    """A ``scaled`` row's constant: the formula in k, T, P that fits every key, else the values.

    The formula is :func:`properties.audit.formula.fit_formula`'s; without one, the first
    three per-key values (and ``...`` when there are more).

    >>> constant_text({(2, 1, 1): 0.5, (3, 1, 1): 2 / 3, (3, 2, 1): 2 / 3})
    'c = (k-1)/k at P=1'
    >>> constant_text({(2, 1, 1): 0.3})
    'c = 0.3 at k=2, T=1, P=1'
    >>> constant_text({(2, 1, 1, 2): 0.5, (4, 2, 1, 3): 0.375})  # keys (k, T, P, V)
    'c = (k-1)/(kT) at P=1'
    >>> constant_text(None)
    ''
    """
    from properties.audit.formula import fit_formula
    from properties.sequence.results import key_text

    if not scale:
        return ""
    formula = fit_formula(scale)
    if formula is not None:
        return formula.describe()
    parts = [f"{value:.4g} at {key_text(key)}" for key, value in sorted(scale.items())]
    shown = "; ".join(parts[:3]) + ("; ..." if len(parts) > 3 else "")
    return f"c = {shown}"


SAME_DIRECTION = 1e-6
"""A counterexample whose best-fit residual is below this fraction of ``|grad J|`` has ``E[g]``
along ``grad J``: only the scale is wrong (it differs from the reference problem's)."""


def _counterexample_cause(cex: Any) -> str:
    """What a counterexample shows, in words.

    The constant ``c`` is the one the reference problem of the same ``(k, T, P)`` fixes; the
    residual ``|E[g] - m grad J| / |grad J|`` of the best fit ``m`` says whether the direction
    is wrong, or only the scale varies from problem to problem (below :data:`SAME_DIRECTION`):

    >>> from types import SimpleNamespace as NS
    >>> shape = NS(describe=lambda: "S")
    >>> _counterexample_cause(NS(shape=shape, multiple=0.2247, reference_multiple=0.5,
    ...                          gradient=[1.0, 0.0], residual=[0.0, 0.0]))
    'E[g] = 0.2247 grad J on S but 0.5 grad J on the reference problem: the scale depends on the problem'
    >>> _counterexample_cause(NS(shape=shape, multiple=0.0, reference_multiple=0.1952,
    ...                          gradient=[1.0, 0.0], residual=[0.0, 0.0]))
    'E[g] = 0 on S although grad J is not (0.1952 grad J on the reference problem)'
    >>> _counterexample_cause(NS(shape=shape, multiple=0.71, reference_multiple=1.01,
    ...                          gradient=[1.0, 0.0], residual=[0.0, 0.3]))
    'E[g] is not 1.01 grad J on S: off the direction of grad J by 0.3 |grad J| (best fit 0.71 grad J)'
    """
    import numpy as np

    shape = getattr(cex, "shape", None)
    where = shape.describe() if shape is not None else "the counterexample"
    if cex.multiple is None:
        return f"E[g] != 0 where grad J = 0 on {where}"
    norm = float(np.linalg.norm(cex.gradient))
    residual = float(np.linalg.norm(cex.residual)) / norm if norm > 0 else float("inf")
    if residual <= SAME_DIRECTION and abs(cex.multiple) <= SAME_DIRECTION:
        return (
            f"E[g] = 0 on {where} although grad J is not ({cex.reference_multiple:.4g} grad J on "
            "the reference problem)"
        )
    if residual <= SAME_DIRECTION:
        return (
            f"E[g] = {cex.multiple:.4g} grad J on {where} but {cex.reference_multiple:.4g} grad J "
            "on the reference problem: the scale depends on the problem"
        )
    return (
        f"E[g] is not {cex.reference_multiple:.4g} grad J on {where}: off the direction of grad J "
        f"by {residual:.2g} |grad J| (best fit {cex.multiple:.4g} grad J)"
    )


def row_from_report(config: Configuration, version: str, report: Any, seconds: float) -> AuditRow:
    """An :class:`AuditRow` from a :class:`properties.sequence.SequenceReport`."""
    from properties.sequence.results import key_text

    verdict = str(report.verdict)
    constant = constant_text(report.scale) if verdict == "scaled" else ""
    if report.error is not None:
        kind, detail = report.error.kind, report.error.detail
        cause = detail if detail.startswith(kind) else f"{kind}: {detail}"  # not "raised: raised ..."
    elif report.counterexample is not None:
        cause = _counterexample_cause(report.counterexample)
    elif verdict == "scaled":
        cause = "E[g] is a constant multiple of grad J"
    else:
        cause = "E[g] = grad J"
    run = getattr(report, "run", None)
    if report.error is None and report.counterexample is None and run is not None:
        mode = "one batch at a time" if run.mode == "loop" else run.mode
        cause += (
            f" on all {report.problems_checked} problems of {len(run.shapes)} shapes "
            f"(up to {run.batch_budget} batches each, {mode})"
        )
    note = getattr(report.counterexample, "roundoff", None)
    if note is not None:  # the strict verdict stands; the note says what it is at that precision
        at = constant_text(note.scale) if note.verdict == "scaled" else ""
        shape = getattr(report.counterexample, "shape", None)
        where = f" on {shape.describe()}" if shape is not None else ""
        cause = (
            f"at {note.dtype} precision: {note.verdict}" + (f", {at}" if at else "")
            + f"; the float64 counterexample{where} is off by {note.relative_residual:.2g} "
            f"|grad J|, within {note.dtype} round-off"
        )
    unchecked = tuple(key_text(k) for k in run.unchecked) if run is not None else ()
    if unchecked:
        cause += f"; not checked: {', '.join(unchecked)}"
    return AuditRow(
        library=config.library,
        version=version,
        name=config.name,
        axes=config.axes,
        verdict=verdict,
        constant=constant,
        cause=_one_line(cause),
        seconds=seconds,
        unchecked=unchecked,
        report=report.to_dict(),
    )


def precision_tolerance(dtype: str, settings: Mapping[str, Any]) -> tuple[float, float]:
    """``(rtol, atol)`` that accept ``dtype``'s round-off on the largest batch ``settings`` ask for.

    The checker's own rule (:func:`properties.sequence.run.roundoff_tolerance`, the one of its
    round-off note) on ``B T = max k * max P * max_len`` positions (``P`` from ``num_prompts``,
    else the trainer checker's default (1, 2) or the sequence checker's 1), fixed before the
    run: for the sequence checker.  The trainer checker applies the same rule itself on the
    largest batch it evaluates (``check_trainer_loss(precision=...)``).  A bias below
    ``rtol |grad J|`` (per coordinate, relative to the sizes that may cancel) is not seen.

    >>> rtol, atol = precision_tolerance("float32", {"group_sizes": (2, 4), "max_len": 2, "checker": "trainer"})
    >>> rtol, f"{atol:.2g}"
    (7e-05, '3.8e-37')
    """
    from properties.sequence.run import ROUNDOFF_DTYPES, roundoff_tolerance
    from properties.trainer.checker import DEFAULT_NUM_PROMPTS

    eps = dict(ROUNDOFF_DTYPES)[dtype]
    default = DEFAULT_NUM_PROMPTS if settings.get("checker") == "trainer" else (1,)
    prompts = settings.get("num_prompts") or default
    positions = max(settings["group_sizes"]) * max(prompts) * int(settings["max_len"])
    return roundoff_tolerance(eps, positions, float(settings.get("atol", 0.0)))


def precision_text(dtype: str, rtol: float, atol: float, reason: str) -> str:
    """How a row judged at a declared precision says so.

    >>> precision_text("float32", 7e-05, 3.8e-37, "the head accumulates in float32")
    'float32: rtol 7e-05, atol 3.8e-37 (the head accumulates in float32)'
    """
    return f"{dtype}: rtol {rtol:.2g}, atol {atol:.2g} ({reason})"


def _checker(name: str) -> Callable[..., Any]:
    """The checker a configuration asks for: ``"sequence"`` (``check_sequence_loss(fn(batch))``,
    the default) or ``"trainer"`` (``check_trainer_loss(fn(model, inputs))``, with its
    ``micro_batches``, ``dp_size``, ``advantages``, ``against``, ``temperature``).

    >>> _checker("trainer").__name__
    'check_trainer_loss'
    """
    if name == "trainer":
        from properties.trainer.checker import check_trainer_loss

        return check_trainer_loss
    if name != "sequence":
        raise ValueError(f"unknown checker {name!r} (expected 'sequence' or 'trainer')")
    from properties.sequence.checker import check_sequence_loss

    return check_sequence_loss


def run_configuration(config: Configuration, version: str, diagnose: bool = False) -> AuditRow:
    """Build and check one configuration (in this process); never raises for library faults.

    A configuration whose loss cannot even be built gets ``error`` with the exception.
    ``diagnose`` also runs the diagnosis on a biased or scaled row, to name its cause.
    """
    if config.not_checked is not None:
        return AuditRow(
            config.library, version, config.name, config.axes, NOT_CHECKED, "",
            _one_line(config.not_checked), 0.0,
        )
    start = time.perf_counter()
    precision = dtype = ""
    try:
        module = library_module(config.library)
        loss_fn, kwargs = module.build(config)
        settings = {**AUDIT_SETTINGS, **kwargs}
        declared: tuple[str, str] | None = getattr(module, "PRECISION", None)
        if "rtol" in settings:  # a configuration's own tolerance wins
            declared = None
        name = settings.pop("checker", "sequence")
        if declared is not None:  # judged once at that precision
            if name == "trainer":  # the checker's rule on the batches it evaluates
                settings["precision"] = declared[0]
            else:  # on the largest batch asked for (fixed before the run)
                settings["rtol"], settings["atol"] = precision_tolerance(declared[0], settings)
        report = _checker(name)(loss_fn, name=config.name, **settings)
        if declared is not None:
            dtype, used = declared[0], report.settings
            precision = precision_text(dtype, float(used["rtol"]), float(used["atol"]), declared[1])
    except Exception as exc:  # the library or our glue failed before any verdict
        return AuditRow(
            config.library, version, config.name, config.axes, "error", "",
            _one_line(f"could not build the loss: {type(exc).__name__}: {exc}"),
            time.perf_counter() - start, precision=precision,
        )
    row = dataclasses.replace(row_from_report(config, version, report, 0.0), precision=precision)
    from properties.audit.cause import row_cause

    found = row_cause(report, row.cause, constant=row.constant, unchecked=row.unchecked,
                      loss_fn=loss_fn, check_kwargs=settings, diagnose=diagnose,
                      axes=dict(config.axes))
    row = dataclasses.replace(row, cause=found.cause, detail=found.detail,
                              seconds=time.perf_counter() - start)
    if dtype:
        seen = getattr(getattr(report, "run", None), "dtypes", None)
        unseen = f" ({dtype} was declared but not seen in the loss)" if seen and dtype not in seen else ""
        row = dataclasses.replace(row, cause=_one_line(f"at {dtype} precision{unseen}: {row.cause}"))
    if settings.get("against") == "one-call":
        row = dataclasses.replace(row, cause=_one_line(f"against one call (M=D=1): {row.cause}"))
    return row


# --------------------------------------------------------------------------- runners
#
# Where the configurations run: here (one at a time), in a process pool, or as Ray tasks.
# Each runner calls ``done(i, row)`` once per configuration ``todo[i]``, in any order;
# :func:`run_audit` puts the rows back in the given order, so every runner gives the same
# list.

Done = Callable[[int, AuditRow], None]
"""``done(i, row)``: the row of ``todo[i]`` is ready."""


def _failed_row(config: Configuration, version: str, exc: BaseException) -> AuditRow:
    """The row of a configuration whose worker died (signal, out of memory, lost node)."""
    return AuditRow(
        config.library, version, config.name, config.axes, "error", "",
        _one_line(f"the worker failed: {type(exc).__name__}: {exc}"), 0.0,
    )


def _worker_init(library: str) -> None:  # pragma: no cover - runs in the pool's children
    try:
        library_module(library).version()  # import the library once per worker, not per task
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group while the workers import: the parent says so
        # in one line; the pool would print each worker's "Exception in initializer" traceback
        os._exit(130)


def _run_here(todo: list[Configuration], version: str, done: Done, diagnose: bool = False) -> None:
    for i, config in enumerate(todo):
        done(i, run_configuration(config, version, diagnose))


def _run_pool(
    todo: list[Configuration], version: str, jobs: int, done: Done, diagnose: bool = False
) -> None:
    """A :class:`ProcessPoolExecutor` with the ``spawn`` start method (``fork`` would copy a
    parent holding PyTorch's thread pools)."""
    from concurrent.futures import as_completed

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_worker_init,
        initargs=(todo[0].library,),
    ) as pool:
        futures = {
            pool.submit(run_configuration, c, version, diagnose): i for i, c in enumerate(todo)
        }
        try:
            for future in as_completed(futures):
                i = futures[future]
                try:
                    row = future.result()
                except Exception as exc:  # a worker died
                    row = _failed_row(todo[i], version, exc)
                done(i, row)
        except BaseException:
            # interrupted (Ctrl-C, SIGTERM, a failing callback): the workers stop now, not after
            # their configurations (a killed parent left them running as orphans)
            for process in multiprocessing.active_children():
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def run_audit(
    configs: Iterable[Configuration],
    version: str,
    jobs: int = 1,
    on_row: Callable[[AuditRow], None] | None = None,
    ray: RayCluster | None = None,
    diagnose: bool = False,
) -> list[AuditRow]:
    """Check every configuration, ``jobs`` at a time, and return the rows in the given order.

    ``jobs == 1`` runs in this process; more runs a process pool (:func:`_run_pool`);
    ``ray`` runs them as Ray tasks instead (:class:`RayCluster`; ``jobs`` then bounds the
    tasks in flight).  Each runner gives the same rows in the same order (only ``seconds``
    differ).  ``on_row`` is called with each row as it finishes (for a progress display).
    Raises :class:`RayUnavailable` when ``ray`` is given and no cluster can be used.
    """
    todo = list(configs)
    if not todo:
        return []
    rows: dict[int, AuditRow] = {}

    def done(i: int, row: AuditRow) -> None:
        rows[i] = row
        if on_row is not None:
            on_row(row)

    if ray is not None:
        _run_ray(todo, version, ray, jobs, done, diagnose)
    elif jobs <= 1:
        _run_here(todo, version, done, diagnose)
    else:
        _run_pool(todo, version, jobs, done, diagnose)
    return [rows[i] for i in range(len(todo))]


# --------------------------------------------------------------------------- Ray (imported lazily)

RAY_EXTRA = "ray"
"""The extra of this package that installs Ray (verl's own dependencies include it)."""

RAY_CONNECT_TIMEOUT = 30.0
"""Seconds to wait for a Ray cluster to answer before giving up (``ray.init`` itself would
retry an unreachable address for minutes)."""

RAY_LOCAL_OBJECT_STORE = 200 * 1024**2
"""Bytes of object store for a local Ray instance (the rows are small; Ray's default is 30 % of
the machine's memory)."""


class RayUnavailable(Exception):
    """Ray is missing, or no cluster answered at the address: one line saying which."""


@dataclass(frozen=True)
class RayCluster:
    """Where to run the configurations as Ray tasks.

    ``address`` is what ``ray.init`` takes (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:PORT"``);
    ``None`` starts a local Ray instance with ``num_cpus`` CPUs (``None``: all), shut down at
    the end.  A process already connected to Ray (``ray.is_initialized()``) uses that
    connection and keeps it.  The cluster's workers must be able to import this package and
    the audited library (on a local instance they inherit this process's environment).
    """

    address: str | None = None
    num_cpus: int | None = None
    connect_timeout: float = RAY_CONNECT_TIMEOUT


def _probe(address: str, timeout: float) -> None:
    """Fail fast where nothing listens at ``HOST:PORT`` (``ray.init`` would wait for minutes).

    >>> _probe("no-port-here", 1.0)
    Traceback (most recent call last):
    ...
    properties.audit.core.RayUnavailable: --ray 'no-port-here': expected auto, HOST:PORT or ray://HOST:PORT
    """
    import socket

    hostport = address.split("://", 1)[1] if "://" in address else address
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"--ray {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayUnavailable(f"cannot reach a Ray cluster at {address}: {exc}") from None


_CONNECT_CHILD = """
import logging, sys
import ray
try:
    ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(3)
ray.shutdown()
"""
"""Connect to the address once in a child process: the probe :func:`_ray_connect` can kill."""


def _probe_in_child(address: str, timeout: float) -> None:
    """Connect once in a child process, killed after ``timeout`` seconds.

    An address that accepts connections but never answers as Ray makes ``ray.init`` retry for
    minutes, from threads that cannot be stopped and that log each retry on stderr: the child
    takes that, and its stdout carries the one-line reason of a refusal.
    """
    import subprocess
    import sys

    where = f"the Ray cluster at {address}"
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CONNECT_CHILD, address], capture_output=True, text=True,
            timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise RayUnavailable(f"{where} did not answer within {timeout:g} s") from None
    if done.returncode != 0:
        reason = (done.stdout.strip() or done.stderr.strip() or f"exit status {done.returncode}")
        raise RayUnavailable(_one_line(f"cannot use {where}: {reason.splitlines()[-1]}"))


def _ray_connect(cluster: RayCluster) -> tuple[Any, bool]:
    """Import Ray and connect; return ``(ray, whether to shut down at the end)``.

    An address is first tried with a plain TCP connection (:func:`_probe`) and then by
    connecting once in a child process (:func:`_probe_in_child`), each within
    :attr:`RayCluster.connect_timeout`, so that no address can hang the audit.
    """
    import logging

    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(
            f"ray is not installed ({exc}); install it with: pip install 'ida-verify[{RAY_EXTRA}]'"
        ) from None
    if ray.is_initialized():
        return ray, False
    address = cluster.address
    if address is not None:
        if address not in ("auto", "local"):
            _probe(address, cluster.connect_timeout)
        _probe_in_child(address, cluster.connect_timeout)
    kwargs: dict[str, Any] = {
        "address": address or "local",
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
    }
    if address is None:
        kwargs["num_cpus"] = cluster.num_cpus
        kwargs["object_store_memory"] = RAY_LOCAL_OBJECT_STORE
    where = "a local Ray instance" if address is None else f"the Ray cluster at {address}"
    try:
        ray.init(**kwargs)
    except Exception as exc:
        raise RayUnavailable(_one_line(f"cannot use {where}: {type(exc).__name__}: {exc}")) from None
    return ray, True


def _ray_task(config: Configuration, version: str, diagnose: bool = False) -> AuditRow:  # pragma: no cover - in Ray
    """A Ray task: as a pool's worker, import the library before the clock starts."""
    if config.not_checked is None and config.library not in _IMPORTED:
        _worker_init(config.library)
        _IMPORTED.add(config.library)
    return run_configuration(config, version, diagnose)


_IMPORTED: set[str] = set()
"""The libraries this Ray worker has imported (a worker runs many tasks)."""


def _run_ray(
    todo: list[Configuration],
    version: str,
    cluster: RayCluster,
    jobs: int,
    done: Done,
    diagnose: bool = False,
) -> None:
    """One Ray task (1 CPU, no retry, as a pool's task) per configuration, ``jobs`` in flight."""
    ray, owned = _ray_connect(cluster)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
        waiting = list(enumerate(todo))
        running: dict[Any, int] = {}
        limit = max(1, jobs)
        while waiting or running:
            while waiting and len(running) < limit:
                i, config = waiting.pop(0)
                running[task.remote(config, version, diagnose)] = i
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                i = running.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception as exc:  # the task's worker died, or the node was lost
                    row = _failed_row(todo[i], version, exc)
                done(i, row)
    finally:
        if owned:
            ray.shutdown()


__all__ = [
    "AUDIT_SETTINGS",
    "LIBRARIES",
    "NOT_CHECKED",
    "RAY_CONNECT_TIMEOUT",
    "RAY_EXTRA",
    "AuditRow",
    "Configuration",
    "RayCluster",
    "RayUnavailable",
    "constant_text",
    "library_module",
    "precision_text",
    "precision_tolerance",
    "row_from_report",
    "run_audit",
    "run_configuration",
]
