"""Library log floods are cut to a burst per window; Leadflow's own logs never are."""

from __future__ import annotations

import logging

from services.logs import RepeatFilter, configure_logging


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_flood_of_one_message_is_cut_to_the_burst() -> None:
    clock = Clock()
    repeats = RepeatFilter(burst=3, window=10.0, clock=clock)
    passed = [
        repeats.filter(record("aiokafka", "Unable connect to node with id %s: %s", 1, i))
        for i in range(50)
    ]
    assert passed == [True] * 3 + [False] * 47


def test_the_first_record_after_the_window_says_how_many_were_dropped() -> None:
    clock = Clock()
    repeats = RepeatFilter(burst=3, window=10.0, clock=clock)
    for i in range(10):
        repeats.filter(record("aiokafka", "Unable connect %s", i))
    clock.now += 10.0
    after = record("aiokafka", "Unable connect %s", 99)
    assert repeats.filter(after)
    assert after.suppressed == 7  # type: ignore[attr-defined]
    quiet = record("aiokafka", "Unable connect %s", 100)
    assert repeats.filter(quiet) and not hasattr(quiet, "suppressed")


def test_different_messages_and_levels_have_their_own_budget() -> None:
    repeats = RepeatFilter(burst=1, window=10.0, clock=Clock())
    assert repeats.filter(record("aiokafka", "a"))
    assert not repeats.filter(record("aiokafka", "a"))
    assert repeats.filter(record("aiokafka", "b"))
    assert repeats.filter(record("aiokafka", "a", level=logging.WARNING))
    assert repeats.filter(record("faust.worker", "a"))


def test_leadflows_own_loggers_are_never_filtered() -> None:
    repeats = RepeatFilter(burst=1, window=10.0, clock=Clock())
    for name in ("app.processor", "gateway.app", "projector.runner", "app.policy"):
        assert all(repeats.filter(record(name, "command rejected")) for _ in range(20))


def test_many_distinct_messages_do_not_grow_without_bound() -> None:
    clock = Clock()
    repeats = RepeatFilter(burst=1, window=1.0, clock=clock)
    for i in range(RepeatFilter.MAX_KEYS * 3):
        clock.now += 0.01
        assert repeats.filter(record("faust", f"value {i}"))
    assert len(repeats._spells) <= RepeatFilter.MAX_KEYS


def test_the_services_log_handler_carries_the_filter() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("warning")
        assert [type(f) for h in root.handlers for f in h.filters] == [RepeatFilter]
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
