"""Hypothesis settings of the property-based fuzz tests
(tests/integration/test_fuzz_hostile_input.py).

They run with the integration tier rather than the unit tier: a property run
is compute-bound (a hundred examples per property), and importing Hypothesis
alone costs about a tenth of the unit tier's 2 s budget.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypothesis import settings

DEFAULT_FUZZ_EXAMPLES = 100  # per property, on every run of the integration tier (~3 s)
NIGHTLY_FUZZ_EXAMPLES = 5000  # HYPOTHESIS_PROFILE=nightly: about a minute


def fuzz_settings(env: Mapping[str, str] = os.environ) -> settings:
    """The Hypothesis settings of the property tests.

    ``HYPOTHESIS_PROFILE`` picks the profile: ``ci`` (the default) runs
    ``LEADFLOW_FUZZ_EXAMPLES`` examples per property (default
    :data:`DEFAULT_FUZZ_EXAMPLES`), no deadline and no example database; ``nightly``
    runs :data:`NIGHTLY_FUZZ_EXAMPLES` and keeps Hypothesis's example database
    (``.hypothesis/``: failures are replayed first next time)."""
    from hypothesis import HealthCheck
    from hypothesis import settings as hypothesis_settings

    raw = env.get("LEADFLOW_FUZZ_EXAMPLES", "").strip()
    examples = int(raw) if raw else DEFAULT_FUZZ_EXAMPLES
    if examples < 1:
        raise ValueError(f"LEADFLOW_FUZZ_EXAMPLES must be a positive number, not {raw!r}")
    hypothesis_settings.register_profile(
        "ci",
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    hypothesis_settings.register_profile(
        "nightly",
        max_examples=NIGHTLY_FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    return hypothesis_settings.get_profile(env.get("HYPOTHESIS_PROFILE", "ci"))
