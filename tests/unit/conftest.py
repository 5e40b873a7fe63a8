"""The unit tier's conftest.

Under tests/unit/pytest.ini (``pytest tests/unit``) the rootdir is this folder
and tests/conftest.py is not read, so the tier's marker is added here; under
pyproject.toml (``pytest``, ``pytest -m unit``) tests/conftest.py adds it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT_INI = Path(__file__).with_name("pytest.ini")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.inipath != UNIT_INI:
        return  # tests/conftest.py marks every tier
    for item in items:
        item.add_marker(pytest.mark.unit)
