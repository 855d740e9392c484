"""Hypothesis strategies, a property for every claim, the claims ledger and the estimator checker.

The public surface:

* :func:`check_estimator` / :func:`assert_unbiased` / :func:`assert_scaled`: exact
  verdicts on a user's REINFORCE-style estimator (:class:`EstimatorReport`).
* :func:`compare_estimators`: several estimators on the same problems, with their exact
  variance and mean squared error relative to plain REINFORCE (:class:`Comparison`;
  :func:`write_compare_report` draws it as an HTML page); :func:`compare_sequence_losses`
  the same for sequence losses and token weights.
* :func:`from_torch_surrogate`: adapt a PyTorch surrogate loss into an estimator.
* :func:`check_sequence_loss` / :func:`check_token_weights` (and ``assert_sequence_*``):
  the same verdicts for token-level policy-gradient losses over sequences
  (:class:`SequenceBatch`, :class:`SequenceReport`).
* :func:`check_trainer_loss` (and ``assert_trainer_*``): the same verdicts for a trainer's
  ``compute_loss(model, inputs)``, run on a tabular causal LM with TRL's inputs,
  micro-batches and data-parallel ranks (:mod:`properties.trainer`).
* :func:`run_claim` / :func:`run_claims`: the claims ledger (:class:`ClaimResult`).
* :func:`write_report` / :func:`write_check_report` / :func:`write_sequence_report`: the ledger, or one estimator's
  verdict, as an HTML page with figures (needs the ``report`` extra, matplotlib).
* :mod:`properties.strategies`: Hypothesis strategies for your own tests.
"""

from __future__ import annotations

from properties._version import __version__
from properties.claims import CLAIM_IDS, ClaimResult, RunConfig, run_claim, run_claims
from properties.onestep.checker import (
    EstimatorCheckFailure,
    EstimatorReport,
    assert_scaled,
    assert_unbiased,
    check_estimator,
    from_torch_surrogate,
)
from properties.onestep.compare import Comparison, compare_estimators
from properties.report.compare_page import write_compare_report
from properties.report.page import write_check_report, write_report
from properties.report.sequence_page import write_sequence_report
from properties.sequence.batch import SequenceBatch
from properties.sequence.checker import (
    SequenceReport,
    assert_sequence_scaled,
    assert_sequence_unbiased,
    check_sequence_loss,
    check_token_weights,
)
from properties.sequence.compare import compare_sequence_losses
from properties.trainer.checker import (
    assert_trainer_scaled,
    assert_trainer_unbiased,
    check_trainer_loss,
)

__all__ = [
    "CLAIM_IDS",
    "ClaimResult",
    "Comparison",
    "EstimatorCheckFailure",
    "EstimatorReport",
    "RunConfig",
    "SequenceBatch",
    "SequenceReport",
    "__version__",
    "assert_scaled",
    "assert_sequence_scaled",
    "assert_sequence_unbiased",
    "assert_trainer_scaled",
    "assert_trainer_unbiased",
    "assert_unbiased",
    "check_estimator",
    "check_sequence_loss",
    "check_token_weights",
    "check_trainer_loss",
    "compare_estimators",
    "compare_sequence_losses",
    "from_torch_surrogate",
    "run_claim",
    "run_claims",
    "write_check_report",
    "write_compare_report",
    "write_report",
    "write_sequence_report",
]
