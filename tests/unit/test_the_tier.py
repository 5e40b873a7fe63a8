"""The unit tier's own set-up (tests/unit/conftest.py) leaves the tests a normal
interpreter: the garbage collector it pauses while collecting runs again."""

from __future__ import annotations

import gc


def test_the_garbage_collector_runs_during_the_tests() -> None:
    assert gc.isenabled()
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
