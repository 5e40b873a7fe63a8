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
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

UNIT_INI = Path(__file__).with_name("pytest.ini")


def bytecode_cache_dir(env: Mapping[str, str] = os.environ) -> Path | None:
    """Where this run keeps bytecode, or None to leave Python's choice alone."""
    if not sys.dont_write_bytecode or sys.pycache_prefix is not None:
        return None  # Python writes bytecode already (or where it was told to)
    if env.get("LEADFLOW_TEST_BYTECODE_CACHE", "1").strip().lower() in {"0", "no", "off", "false"}:
        return None
    cache_home = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "leadflow" / "pycache"


# No cyclic garbage collection while the tier collects: importing the modules under
# test and building 1,500 items allocates enough to trigger full collections that find
# nothing to free (collection 0.71 -> 0.63 s median of 8, alternating). It is enabled
# again, over a frozen heap, before the first test runs (pytest_collection_finish).
gc.disable()
_CACHE = bytecode_cache_dir()
if _CACHE is not None:
    sys.pycache_prefix = str(_CACHE)
    sys.dont_write_bytecode = False


# Libraries whose import alone costs 30 to 110 ms of collection each: a module under
# test that needs them (an aiohttp resolver, a Kafka client, a Redis client) is tested
# in tests/integration, or imports them lazily. Checked after collection.
HEAVY_IMPORTS = ("aiohttp", "aiokafka", "redis")


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.inipath != UNIT_INI:
        gc.enable()  # disabled while collecting (above), whichever tiers run
        return
    # What collection made (modules, test items, fixtures' definitions) lives until the
    # end: out of the collector's sight, a full collection during the run walks only what
    # the tests allocate (it walked everything, 30-50 ms a time, several times a run).
    gc.freeze()
    gc.enable()
    heavy = [name for name in HEAVY_IMPORTS if name in sys.modules]
    if heavy:
        raise pytest.UsageError(
            f"the unit tier imported {', '.join(heavy)} while collecting: the tier's budget is"
            " 2 s, and these cost 30-110 ms each to import; test what needs them in"
            " tests/integration, or import them lazily in the module under test"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.inipath != UNIT_INI:
        return  # tests/conftest.py marks every tier
    for item in items:
        item.add_marker(pytest.mark.unit)
