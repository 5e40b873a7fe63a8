"""LEADFLOW_GC_GEN0: the young generation's threshold a service sets at start."""

from __future__ import annotations

import pytest

from services.limits import GC_GEN0_DEFAULT, collector_threshold


def test_the_default_and_a_given_threshold() -> None:
    assert collector_threshold({}) == GC_GEN0_DEFAULT == 50_000
    assert collector_threshold({"LEADFLOW_GC_GEN0": " 700 "}) == 700


@pytest.mark.parametrize("raw", ["99", "10000001", "-5", "5e4", "many"])
def test_a_threshold_out_of_range_or_not_a_number_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="LEADFLOW_GC_GEN0 must be a whole number"):
        collector_threshold({"LEADFLOW_GC_GEN0": raw})
