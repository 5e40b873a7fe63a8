"""``--from``/``--to`` values (services/timerange.py): unix seconds or ISO 8601,
UTC unless the value says otherwise, and a refusal argparse can show."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest

from services.timerange import parse_since


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, sec, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("1764115200", 1_764_115_200.0),
        ("1764115200.25", 1_764_115_200.25),
        ("0", 0.0),
        ("-5", -5.0),
        ("1e9", 1e9),
        (" 42 ", 42.0),  # float() strips the spaces a shell may leave
    ],
)
def test_unix_seconds_are_taken_as_they_are(raw: str, seconds: float) -> None:
    assert parse_since(raw) == seconds


def test_a_date_is_its_midnight_in_utc() -> None:
    assert parse_since("2025-11-26") == utc(2025, 11, 26)


@pytest.mark.parametrize(
    "raw", ["2025-11-26T01:02:03", "2025-11-26T01:02:03Z", "2025-11-26T01:02:03+00:00"]
)
def test_a_time_without_an_offset_or_with_z_is_utc(raw: str) -> None:
    assert parse_since(raw) == utc(2025, 11, 26, 1, 2, 3)


def test_an_offset_in_the_value_is_honoured() -> None:
    """01:02:03 at +02:00 is 23:02:03 UTC the day before."""
    assert parse_since("2025-11-26T01:02:03+02:00") == utc(2025, 11, 25, 23, 2, 3)
    assert parse_since("2025-11-26T01:02:03-05:30") == utc(2025, 11, 26, 6, 32, 3)


def test_fractions_of_a_second_and_a_space_separator_are_accepted() -> None:
    assert parse_since("2025-11-26T01:02:03.5Z") == utc(2025, 11, 26, 1, 2, 3) + 0.5
    assert parse_since("2025-11-26 01:02") == utc(2025, 11, 26, 1, 2)


def test_the_result_does_not_depend_on_the_local_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A naive value is UTC, not the analyst's local time."""
    import time

    if not hasattr(time, "tzset"):
        pytest.skip("no time.tzset on this platform")
    before = parse_since("2025-06-01T12:00:00")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_since("2025-06-01T12:00:00") == before == utc(2025, 6, 1, 12)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    "raw", ["", "yesterday", "2025-13-01", "2025-11-26T25:00", "26/11/2025", "12:00"]
)
def test_anything_else_is_refused_naming_the_value(raw: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse_since(raw)
    message = str(info.value)
    assert repr(raw) in message
    assert "unix seconds or an ISO 8601 date/time" in message
    assert isinstance(info.value.__cause__, ValueError)


def test_as_an_argparse_type_a_bad_value_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser(prog="leadflow replay")
    parser.add_argument("--from", dest="since", type=parse_since)
    assert parser.parse_args(["--from", "2025-11-26"]).since == utc(2025, 11, 26)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--from", "soon"])
    assert info.value.code == 2
    assert "--from 'soon': expected unix seconds" in capsys.readouterr().err


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "NaN"])
def test_a_number_that_is_not_a_time_is_refused(raw: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a time"):
        parse_since(raw)
