r"""The library-neutral audit: configurations, the row each gets, and running them all.

A library module (:mod:`properties.audit.verl`) lists its configurations and says how to turn
one into a sequence loss; this module checks each one with
:func:`properties.check_sequence_loss` and returns one :class:`AuditRow` per configuration.
A configuration the sequence protocol cannot express (a critic's values, a learned reward
model, multi-turn tool calls, ...) carries ``not_checked``, the reason, and is listed with the
verdict ``"not checked"``: never dropped.

A library module is a module with

* ``LIBRARY`` (its name) and ``EXTRA`` (the extra of this package that installs it);
* ``version() -> str``: imports the library (raising :class:`ImportError` when it is absent)
  and returns its version;
* ``configurations() -> list[Configuration]``: the configuration space, read from the
  library itself;
* ``build(config) -> (loss_fn, check_kwargs)``: the loss for one configuration, built from the
  library's own functions, and the keyword arguments of ``check_sequence_loss`` it needs
  (``kl_coef``, ``off_policy``, ...).

:func:`run_audit` runs the configurations in a standard-library process pool (``spawn``), one
configuration per task: a configuration is built and checked in the worker, so only the
small frozen :class:`Configuration` and :class:`AuditRow` cross process boundaries.

>>> c = Configuration("verl", "loss:dro", (("policy_loss", "dro"),), not_checked="needs dro_beta")
>>> row = run_configuration(c, "0.0")
>>> row.verdict, row.cause
('not checked', 'needs dro_beta')
"""

from __future__ import annotations

import importlib
import math
import multiprocessing
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

LIBRARIES: dict[str, str] = {"verl": "properties.audit.verl"}
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

SCALE_FORMULAS: tuple[tuple[str, Callable[[int, int, int], float]], ...] = (
    ("1", lambda k, t, p: 1.0),
    ("(k-1)/k", lambda k, t, p: (k - 1) / k),
    ("k/(k-1)", lambda k, t, p: k / (k - 1)),
    ("k", lambda k, t, p: float(k)),
    ("1/T", lambda k, t, p: 1 / t),
    ("(k-1)/(kT)", lambda k, t, p: (k - 1) / (k * t)),
    ("1/(kT)", lambda k, t, p: 1 / (k * t)),
    ("P", lambda k, t, p: float(p)),
    ("kP/T", lambda k, t, p: k * p / t),
    ("(k-1)P/T", lambda k, t, p: (k - 1) * p / t),
)
"""Closed forms tried for a ``scaled`` row's constant ``c(k, T, P)`` (named when one fits every key)."""

SCALE_FORMULA_RTOL = 1e-6
"""Relative tolerance within which a measured constant matches a closed form."""


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
    ``T``, ``P`` where one of :data:`SCALE_FORMULAS` fits, else the measured values);
    ``cause`` one line (what makes a biased or scaled row so, :mod:`properties.audit.cause`;
    else the counterexample's reason, the error, or why not checked); ``detail`` the
    checker's own statement (the symptom); ``unchecked`` the shapes the checker could not
    reach within its budget.
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
            "report": self.report,
        }


def library_module(library: str) -> ModuleType:
    """The module of ``library`` (a key of :data:`LIBRARIES`); ``KeyError`` for an unknown one."""
    return importlib.import_module(LIBRARIES[library])


def constant_text(scale: Mapping[Any, float] | None) -> str:
    """A ``scaled`` row's constant: the closed form that fits every ``(k, T, P)``, else the values.

    >>> constant_text({(2, 1, 1): 0.5, (3, 2, 1): 0.6666666666666666})
    'c = (k-1)/k'
    >>> constant_text({(2, 1, 1, 2): 2.0, (3, 2, 1, 3): 3.0})  # the checker's (k, T, P, V) keys
    'c = k'
    >>> constant_text({(2, 1, 1): 0.3})
    'c = 0.3 at k=2, T=1, P=1'
    >>> constant_text(None)
    ''
    """
    if not scale:
        return ""
    keys = [k for k in scale if isinstance(k, tuple) and len(k) in (3, 4)]
    if len(keys) == len(scale) and len(keys) > 1:
        for text, formula in SCALE_FORMULAS:
            if all(
                math.isclose(scale[key], formula(*key[:3]), rel_tol=SCALE_FORMULA_RTOL)
                for key in keys
            ):
                return f"c = {text}"
    parts = [
        f"{value:.4g} at k={key[0]}, T={key[1]}, P={key[2]}"
        + (f", V={key[3]}" if len(key) == 4 else "")
        if isinstance(key, tuple) and len(key) in (3, 4)
        else f"{value:.4g} at {key}"
        for key, value in sorted(scale.items())
    ]
    shown = "; ".join(parts[:3]) + ("; ..." if len(parts) > 3 else "")
    return f"c = {shown}"


def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _counterexample_cause(cex: Any) -> str:
    """``E[g] is not 1.01 grad J on V=2, T=2, k=2, P=1 (best fit 0.71 grad J, residual 0.3 |grad J|)``.

    The constant is the one the reference problem of the same ``(k, T, P)`` fixes; the residual
    ``|E[g] - c grad J| / |grad J|`` of the best fit ``c`` says whether the direction is wrong
    (a residual) or only the scale varies from problem to problem (no residual).
    """
    import numpy as np

    shape = getattr(cex, "shape", None)
    where = shape.describe() if shape is not None else "the counterexample"
    if cex.multiple is None:
        return f"E[g] != 0 where grad J = 0 on {where}"
    norm = float(np.linalg.norm(cex.gradient))
    residual = float(np.linalg.norm(cex.residual)) / norm if norm > 0 else float("inf")
    return (
        f"E[g] is not {cex.reference_multiple:.4g} grad J on {where} "
        f"(best fit {cex.multiple:.4g} grad J, residual {residual:.2g} |grad J|)"
    )


def row_from_report(config: Configuration, version: str, report: Any, seconds: float) -> AuditRow:
    """An :class:`AuditRow` from a :class:`properties.sequence.SequenceReport`."""
    from properties.sequence.results import key_text

    verdict = str(report.verdict)
    constant = constant_text(report.scale) if verdict == "scaled" else ""
    if report.error is not None:
        cause = f"{report.error.kind}: {report.error.detail}"
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
    try:
        from properties.sequence.checker import check_sequence_loss

        loss_fn, kwargs = library_module(config.library).build(config)
        settings = {**AUDIT_SETTINGS, **kwargs}
        report = check_sequence_loss(loss_fn, name=config.name, **settings)
    except Exception as exc:  # the library or our glue failed before any verdict
        return AuditRow(
            config.library, version, config.name, config.axes, "error", "",
            _one_line(f"could not build the loss: {type(exc).__name__}: {exc}"),
            time.perf_counter() - start,
        )
    row = row_from_report(config, version, report, 0.0)
    from properties.audit.cause import row_cause

    found = row_cause(report, row.cause, constant=row.constant, unchecked=row.unchecked,
                      loss_fn=loss_fn, check_kwargs=settings, diagnose=diagnose,
                      axes=dict(config.axes))
    return replace(row, cause=found.cause, detail=found.detail,
                   seconds=time.perf_counter() - start)


def _worker_init(library: str) -> None:  # pragma: no cover - runs in the pool's children
    library_module(library).version()  # import the library once per worker, not per task


def run_audit(
    configs: Iterable[Configuration],
    version: str,
    jobs: int = 1,
    on_row: Callable[[AuditRow], None] | None = None,
    diagnose: bool = False,
) -> list[AuditRow]:
    """Check every configuration, ``jobs`` at a time, and return the rows in the given order.

    ``jobs == 1`` runs in this process; more runs a :class:`ProcessPoolExecutor` with the
    ``spawn`` start method (``fork`` would copy a parent holding PyTorch's thread pools).
    ``on_row`` is called with each row as it finishes (for a progress display).
    ``diagnose`` names each biased or scaled row's cause (in the worker that checked it).
    """
    todo = list(configs)
    if not todo:
        return []
    rows: dict[int, AuditRow] = {}
    if jobs <= 1:
        for i, config in enumerate(todo):
            rows[i] = run_configuration(config, version, diagnose)
            if on_row is not None:
                on_row(rows[i])
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=context,
            initializer=_worker_init,
            initargs=(todo[0].library,),
        ) as pool:
            futures = {
                pool.submit(run_configuration, c, version, diagnose): i for i, c in enumerate(todo)
            }
            from concurrent.futures import as_completed

            for future in as_completed(futures):
                i = futures[future]
                try:
                    rows[i] = future.result()
                except Exception as exc:  # a worker died (signal, out of memory)
                    c = todo[i]
                    rows[i] = AuditRow(
                        c.library, version, c.name, c.axes, "error", "",
                        _one_line(f"the worker failed: {type(exc).__name__}: {exc}"), 0.0,
                    )
                if on_row is not None:
                    on_row(rows[i])
    return [rows[i] for i in range(len(todo))]


__all__ = [
    "AUDIT_SETTINGS",
    "LIBRARIES",
    "NOT_CHECKED",
    "AuditRow",
    "Configuration",
    "constant_text",
    "library_module",
    "row_from_report",
    "run_audit",
    "run_configuration",
]
