r"""The one-step checker: exact verdicts on ``fn(logits, samples, rewards) -> gradient``.

* :mod:`~properties.onestep.checker`: :func:`check_estimator` and its report, message and
  ``assert_*`` forms;
* :mod:`~properties.onestep.problems`: the battery, exact evaluation and tolerances;
* :mod:`~properties.onestep.prompts`: several prompts pooled in one call (``num_prompts``);
* :mod:`~properties.onestep.variance` and :mod:`~properties.onestep.compare`: the exact
  variance and MSE of an estimator, and :func:`compare_estimators` against REINFORCE;
* :mod:`~properties.onestep.guard`: calling the user's estimator without trusting it.
"""

from __future__ import annotations

from properties.onestep.checker import (
    EstimatorCheckFailure,
    EstimatorReport,
    assert_scaled,
    assert_unbiased,
    check_estimator,
    expectation_of,
    from_torch_surrogate,
)
from properties.onestep.compare import Comparison, compare_estimators

__all__ = [
    "Comparison",
    "EstimatorCheckFailure",
    "EstimatorReport",
    "assert_scaled",
    "assert_unbiased",
    "check_estimator",
    "compare_estimators",
    "expectation_of",
    "from_torch_surrogate",
]
