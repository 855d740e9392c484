r"""The audit of a whole library: every configuration of the installed release, judged.

* :mod:`~properties.audit.core`: library-neutral: :class:`Configuration`, :class:`AuditRow`,
  running the configurations (here, in a process pool, or as Ray tasks);
* :mod:`~properties.audit.formula`: a scaled row's constant as a formula in k, T, P;
* :mod:`~properties.audit.groups`: the rows that agree;
* :mod:`~properties.audit.cause`: a row's one-line cause (from the diagnosis, opt-in with
  ``diagnose=True``/``--diagnose``) and its symptom (``detail``);
* :mod:`~properties.audit.verl`: verl's configuration space read from the library, and a loss
  per configuration built from verl's own functions;
* :mod:`~properties.audit.catalogue`: this package's own catalogue losses as a library.
* :mod:`~properties.audit.trl`: TRL's configuration space read from ``GRPOConfig`` and
  ``GRPOTrainer``, each configuration checked through TRL's own ``GRPOTrainer._compute_loss``
  with :func:`properties.check_trainer_loss` (``build`` returns ``checker="trainer"``).

A third library is one new module beside ``verl.py`` (``LIBRARY``, ``EXTRA``, ``version``,
``configurations``, ``build``) and one entry in :data:`~properties.audit.core.LIBRARIES`.
"""

from __future__ import annotations

from properties.audit.core import (
    LIBRARIES,
    NOT_CHECKED,
    AuditRow,
    Configuration,
    run_audit,
    run_configuration,
)

__all__ = [
    "LIBRARIES",
    "NOT_CHECKED",
    "AuditRow",
    "Configuration",
    "run_audit",
    "run_configuration",
]
