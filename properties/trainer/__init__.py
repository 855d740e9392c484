r"""The trainer checker: exact verdicts on a trainer's ``compute_loss(model, inputs)``.

* :mod:`~properties.trainer.model`: :class:`TabularCausalLM`, the sequence checker's tabular
  policy behind a Hugging Face causal LM's forward (prompt ids, left padding, positions);
* :mod:`~properties.trainer.evaluation`: the protocol ``fn(model, inputs) -> loss`` on every
  batch, the inputs (TRL's names) and the trainer's micro-batches and data-parallel ranks;
* :mod:`~properties.trainer.checker`: :func:`check_trainer_loss` and its ``assert_*`` forms;
* :mod:`~properties.trainer.diagnosis`: the diagnosis's ``protocol="trainer"`` (registered
  here, on import).

Floor: above :mod:`properties.sequence` (whose evaluation, judging and reports it reuses),
below :mod:`properties.claims`.  Imports torch only when a check runs.
"""

from __future__ import annotations

from properties.trainer import diagnosis as _diagnosis  # noqa: F401 - registers protocol="trainer"
from properties.trainer.checker import (
    assert_trainer_scaled,
    assert_trainer_unbiased,
    check_trainer_loss,
    trainer_expectation,
)

__all__ = [
    "assert_trainer_scaled",
    "assert_trainer_unbiased",
    "check_trainer_loss",
    "trainer_expectation",
]
