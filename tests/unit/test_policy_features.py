"""Visitor context -> context cell -> feature vector."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import pytest

from policy.features import (
    CELL_LABELS,
    CELLS,
    DEVICES,
    FEATURE_NAMES,
    HOURS,
    LANGUAGES,
    SOURCES,
    Cell,
    all_cells,
    cell_from_key,
    cell_from_labels,
    cell_index,
    cell_of,
    features,
    hour_bucket,
    labels,
    local_hour,
)
from schemas.commands import VisitorContext
from services.traffic import traffic_source


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("utm_source", "utm_medium", "referrer", "expected"),
    [
        ("", "", "", "direct"),
        ("", "", "https://news.example.org/", "other"),
        ("google", "", "", "search"),
        (" Bing ", "", "", "search"),
        ("", "organic", "", "search"),
        ("google", "cpc", "", "paid"),
        ("facebook", "Paid_Social", "", "paid"),
        ("anything", "display", "", "paid"),
        ("newsletter", "", "", "email"),
        ("acme", "email", "", "email"),
        ("facebook", "", "", "social"),
        ("LinkedIn", "", "", "social"),
        ("acme", "social", "", "social"),
        ("partner-site", "referral", "https://partner.example.com/", "other"),
        ("partner-site", "", "", "other"),
    ],
)
def test_traffic_sources(utm_source: str, utm_medium: str, referrer: str, expected: str) -> None:
    context = VisitorContext(utm_source=utm_source, utm_medium=utm_medium, referrer=referrer)
    assert traffic_source(context) == expected
    assert cell_of(context, 0.0).source == expected


@pytest.mark.parametrize(
    ("when", "time_zone", "hour", "bucket"),
    [
        ("2026-01-15T12:00:00", "UTC", 12, "afternoon"),
        ("2026-01-15T12:00:00", "", 12, "afternoon"),
        ("2026-01-15T05:59:59", "UTC", 5, "night"),
        ("2026-01-15T06:00:00", "UTC", 6, "morning"),
        ("2026-01-15T23:30:00", "UTC", 23, "evening"),
        ("2026-01-15T12:00:00", "America/New_York", 7, "morning"),  # EST, -5
        ("2026-07-15T12:00:00", "America/New_York", 8, "morning"),  # EDT, -4
        ("2026-01-15T04:30:00", "Europe/Berlin", 5, "night"),  # CET, +1
        ("2026-07-15T04:30:00", "Europe/Berlin", 6, "morning"),  # CEST, +2
        ("2026-01-15T12:29:59", "Asia/Kolkata", 17, "afternoon"),  # +5:30
        ("2026-01-15T12:30:00", "Asia/Kolkata", 18, "evening"),
        ("2026-01-15T12:14:59", "Asia/Kathmandu", 17, "afternoon"),  # +5:45
        ("2026-01-15T12:15:00", "Asia/Kathmandu", 18, "evening"),
        ("2026-01-15T20:00:00", "Pacific/Kiritimati", 10, "morning"),  # +14, next day
        ("2026-01-15T12:00:00", "Not/AZone", 12, "afternoon"),  # unknown: UTC
        ("2026-01-15T12:00:00", "America", 12, "afternoon"),  # a folder, not a zone
        ("2026-01-15T12:00:00", "../../etc/passwd", 12, "afternoon"),
        ("2026-01-15T12:00:00", "/etc/localtime", 12, "afternoon"),
        ("2026-01-15T12:00:00", "Europe/", 12, "afternoon"),
        ("2026-01-15T12:00:00", "UTC\x00", 12, "afternoon"),
        ("2026-01-15T12:00:00", "x" * 5000, 12, "afternoon"),
    ],
)
def test_hour_buckets_in_the_visitors_time_zone(
    when: str, time_zone: str, hour: int, bucket: str
) -> None:
    assert local_hour(at(when), time_zone) == hour
    assert hour_bucket(at(when), time_zone) == bucket
    assert cell_of(VisitorContext(time_zone=time_zone), at(when)).hour == bucket


def test_hours_before_1970_and_at_second_fractions() -> None:
    assert local_hour(-1.0, "UTC") == 23
    assert local_hour(at("2026-01-15T05:59:59") + 0.999, "UTC") == 5


@pytest.mark.parametrize(
    ("locale", "language"),
    [
        ("en", "en"),
        ("en-US", "en"),
        ("EN-gb", "en"),
        ("en_AU", "en"),
        ("de-DE", "other"),
        ("fr", "other"),
        ("", "other"),
        ("pt-BR", "other"),
    ],
)
def test_languages(locale: str, language: str) -> None:
    assert cell_of(VisitorContext(locale=locale), 0.0).language == language


@pytest.mark.parametrize("device", [*DEVICES, "smartwatch", ""])
def test_devices_outside_the_known_ones_are_unknown(device: str) -> None:
    context = VisitorContext(device=cast(Any, device))
    assert cell_of(context, 0.0).device == (device if device in DEVICES else "unknown")


def test_cells_are_numbered_and_cell_of_is_their_lookup() -> None:
    assert len(CELLS) == len(DEVICES) * len(SOURCES) * len(HOURS) * len(LANGUAGES) == 192
    assert all_cells() == list(CELLS)
    assert len(set(CELLS)) == len(CELLS)
    context = VisitorContext(device="tablet", utm_source="google", locale="de", time_zone="UTC")
    when = at("2026-03-01T20:00:00")
    assert CELLS[cell_index(context, when)] == cell_of(context, when)
    assert cell_of(context, when) == Cell("tablet", "search", "evening", "other")


def test_feature_vectors_are_one_hot_per_factor_against_the_first_level() -> None:
    assert len(FEATURE_NAMES) == 3 + 5 + 3 + 1
    assert not features(Cell("desktop", "direct", "night", "en")).any()
    for cell in CELLS:
        x = features(cell)
        on = {FEATURE_NAMES[i] for i in np.flatnonzero(x)}
        expected = {
            f"{name}={value}"
            for name, value, levels in zip(
                Cell._fields, cell, (DEVICES, SOURCES, HOURS, LANGUAGES), strict=True
            )
            if value != levels[0]
        }
        assert on == expected
        assert set(x.tolist()) <= {0.0, 1.0}
        assert not x.flags.writeable


def test_cell_keys_and_labels_round_trip() -> None:
    for cell, logged in zip(CELLS, CELL_LABELS, strict=True):
        assert cell_from_key(cell.key) == cell
        assert labels(cell) == logged
        assert cell_from_labels(logged) == cell
    assert labels(Cell("mobile", "paid", "night", "en")) == (
        "device=mobile",
        "source=paid",
        "hour=night",
        "language=en",
    )


@pytest.mark.parametrize(
    "key", ["", "mobile|paid|night", "mobile|paid|night|en|x", "phone|paid|night|en"]
)
def test_bad_cell_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="not a context cell"):
        cell_from_key(key)


@pytest.mark.parametrize(
    "logged",
    [
        (),
        ("device=mobile", "source=paid", "hour=night"),
        ("source=paid", "device=mobile", "hour=night", "language=en"),
        ("device=mobile", "source=paid", "hour=noon", "language=en"),
        ("device=mobile", "source=paid", "hour=night", "language"),
    ],
)
def test_bad_cell_labels_are_refused(logged: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="not a context cell"):
        cell_from_labels(logged)
