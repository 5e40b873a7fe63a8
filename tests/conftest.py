"""Every test belongs to the tier of its folder: unit, integration or e2e.

Select a tier with ``-m unit`` (or ``pytest tests/unit``); the README's test
command runs all three. ``pytest tests/unit`` reads tests/unit/pytest.ini, not
this file: fixtures the unit tier needs go in tests/unit/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TIERS = ("unit", "integration", "e2e")
ROOT = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.path)).relative_to(ROOT).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
