r"""The sequence checker: exact verdicts on token-level policy-gradient losses of LLM RL.

* :mod:`~properties.sequence.batch`: :class:`SequenceBatch`, what a loss receives, and its
  conventions (EOS, padding, masks);
* :mod:`~properties.sequence.problems`: shapes within the batch budget, the battery,
  Hypothesis problems;
* :mod:`~properties.sequence.evaluation`: exact evaluation over every batch, faults,
  tolerances, the NumPy token-weights protocol;
* :mod:`~properties.sequence.torch_loss`: the PyTorch-loss protocol (every batch in a few calls);
* :mod:`~properties.sequence.checker`: :func:`check_sequence_loss`,
  :func:`check_token_weights`, their report, message and ``assert_*`` forms;
* :mod:`~properties.sequence.variance` and :mod:`~properties.sequence.compare`: the exact
  variance of a loss, and :func:`compare_sequence_losses` against REINFORCE.
"""

from __future__ import annotations

from properties.sequence.batch import SequenceBatch
from properties.sequence.checker import (
    SequenceReport,
    assert_sequence_scaled,
    assert_sequence_unbiased,
    check_sequence_loss,
    check_token_weights,
    sequence_expectation,
)
from properties.sequence.compare import compare_sequence_losses
from properties.sequence.variance import sequence_moments

__all__ = [
    "SequenceBatch",
    "SequenceReport",
    "assert_sequence_scaled",
    "assert_sequence_unbiased",
    "check_sequence_loss",
    "check_token_weights",
    "compare_sequence_losses",
    "sequence_expectation",
    "sequence_moments",
]
