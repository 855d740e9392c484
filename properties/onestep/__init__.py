r"""The one-step checker: exact verdicts on ``fn(logits, samples, rewards) -> gradient``.

* :mod:`~properties.onestep.checker`: :func:`check_estimator` and its report, message and
  ``assert_*`` forms;
* :mod:`~properties.onestep.problems`: the battery, exact evaluation and tolerances;
* :mod:`~properties.onestep.prompts`: several prompts pooled in one call (``num_prompts``);
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

__all__ = [
    "EstimatorCheckFailure",
    "EstimatorReport",
    "assert_scaled",
    "assert_unbiased",
    "check_estimator",
    "expectation_of",
    "from_torch_surrogate",
]
