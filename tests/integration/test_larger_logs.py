"""The unit tier's properties on larger logs and more seeds.

The unit tier checks each of these on a log just large enough to hold every
kind of event (a few dozen conversations, two seeds); here the same checks run
on the sizes they were first written for, and on more seeds, where a rarer
interleaving has a chance to show up.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.test_report_fold import fold_agrees_with_the_read_model


@pytest.mark.parametrize("seed", [3, 11, 17, 29])
def test_the_report_fold_agrees_with_the_read_models_funnel(seed: int) -> None:
    asyncio.run(fold_agrees_with_the_read_model(400, seed))
