"""The unit tier's conftest.

Under tests/unit/pytest.ini (``pytest tests/unit``) the rootdir is this folder
and tests/conftest.py is not read, so the tier's marker is added here; under
pyproject.toml (``pytest``, ``pytest -m unit``) tests/conftest.py adds it.

Bytecode: when ``PYTHONDONTWRITEBYTECODE`` is set (as on the dev machines and
in the Docker image) and no ``PYTHONPYCACHEPREFIX`` is, every run would compile
the project's modules and rewrite the test modules' assertions again: about as
long as running the tests. The tier keeps their bytecode outside the working
tree instead, in ``$XDG_CACHE_HOME/leadflow/pycache`` (``~/.cache`` by
default), so nothing is written next to the sources. Python checks each cached
file against its source's modification time and size, as always.
``LEADFLOW_TEST_BYTECODE_CACHE=0`` turns this off.

Fuzzing: the tier's property tests (test_fuzz_hostile_input.py) take their
Hypothesis settings from :func:`fuzz_settings`: the ``unit`` profile, a small
budget of :data:`UNIT_FUZZ_EXAMPLES` examples per property (``LEADFLOW_FUZZ_EXAMPLES=N``
for another number), or ``HYPOTHESIS_PROFILE=nightly`` for the full budget of
:data:`NIGHTLY_FUZZ_EXAMPLES`. Hypothesis is imported only when a test module
asks, so collecting a single other file does not pay for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from hypothesis import settings

UNIT_INI = Path(__file__).with_name("pytest.ini")


def bytecode_cache_dir(env: Mapping[str, str] = os.environ) -> Path | None:
    """Where this run keeps bytecode, or None to leave Python's choice alone."""
    if not sys.dont_write_bytecode or sys.pycache_prefix is not None:
        return None  # Python writes bytecode already (or where it was told to)
    if env.get("LEADFLOW_TEST_BYTECODE_CACHE", "1").strip().lower() in {"0", "no", "off", "false"}:
        return None
    cache_home = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "leadflow" / "pycache"


_CACHE = bytecode_cache_dir()
if _CACHE is not None:
    sys.pycache_prefix = str(_CACHE)
    sys.dont_write_bytecode = False


UNIT_FUZZ_EXAMPLES = 10  # per property, on every run of the tier
NIGHTLY_FUZZ_EXAMPLES = 5000  # HYPOTHESIS_PROFILE=nightly: about a minute


def fuzz_settings(env: Mapping[str, str] = os.environ) -> settings:
    """The Hypothesis settings of the unit tier's property tests.

    ``HYPOTHESIS_PROFILE`` picks the profile: ``unit`` (the default) runs
    ``LEADFLOW_FUZZ_EXAMPLES`` examples per property (default
    :data:`UNIT_FUZZ_EXAMPLES`), no deadline and no example database; ``nightly``
    runs :data:`NIGHTLY_FUZZ_EXAMPLES` and keeps Hypothesis's example database
    (``.hypothesis/``: failures are replayed first next time)."""
    from hypothesis import HealthCheck
    from hypothesis import settings as hypothesis_settings

    raw = env.get("LEADFLOW_FUZZ_EXAMPLES", "").strip()
    examples = int(raw) if raw else UNIT_FUZZ_EXAMPLES
    if examples < 1:
        raise ValueError(f"LEADFLOW_FUZZ_EXAMPLES must be a positive number, not {raw!r}")
    hypothesis_settings.register_profile(
        "unit",
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
    return hypothesis_settings.get_profile(env.get("HYPOTHESIS_PROFILE", "unit"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.inipath != UNIT_INI:
        return  # tests/conftest.py marks every tier
    for item in items:
        item.add_marker(pytest.mark.unit)
