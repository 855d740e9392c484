"""Hypothesis profiles for the suite.

``fast`` (default) keeps the whole suite to a few minutes on 2 cores; ``thorough``
runs many more examples.  Select with ``IDA_VERIFY_PROFILE=thorough`` or
Hypothesis' own ``--hypothesis-profile thorough``.  Both are derandomised-free
but database-free, so a run is reproducible from the printed seed.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fast",
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("IDA_VERIFY_PROFILE", "fast"))
