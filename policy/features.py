"""Visitor context -> the features the policy conditions on. Pure.

A visitor falls into one *cell*: device, traffic source, hour of their local
day, and language. Cells are what the policy service counts outcomes by (so
fits run on sufficient statistics whose size does not grow with traffic), and
each cell maps to a fixed 0/1 feature vector (one-hot, first level of each
factor as the baseline) that the model's context slopes multiply.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from schemas.commands import VisitorContext

DEVICES = ("desktop", "mobile", "tablet", "unknown")
SOURCES = ("direct", "search", "paid", "social", "email", "other")
HOURS = ("night", "morning", "afternoon", "evening")
LANGUAGES = ("en", "other")

_SOCIAL = {"facebook", "fb", "instagram", "ig", "linkedin", "twitter", "x", "tiktok", "reddit"}
_SEARCH = {"google", "bing", "duckduckgo", "yahoo", "ecosia", "baidu", "yandex"}
_EMAIL = {"newsletter", "email", "mailchimp", "sendgrid", "brevo", "klaviyo"}
_PAID_MEDIUMS = {"cpc", "ppc", "paid", "paidsocial", "paid_social", "display", "cpm"}


class Cell(NamedTuple):
    device: str
    source: str
    hour: str
    language: str

    @property
    def key(self) -> str:
        return "|".join(self)


FEATURE_NAMES: tuple[str, ...] = (
    *(f"device={d}" for d in DEVICES[1:]),
    *(f"source={s}" for s in SOURCES[1:]),
    *(f"hour={h}" for h in HOURS[1:]),
    *(f"language={g}" for g in LANGUAGES[1:]),
)


def traffic_source(context: VisitorContext) -> str:
    source = context.utm_source.strip().lower()
    medium = context.utm_medium.strip().lower()
    if medium in _PAID_MEDIUMS:
        return "paid"
    if medium == "email" or source in _EMAIL:
        return "email"
    if source in _SOCIAL or medium == "social":
        return "social"
    if source in _SEARCH or medium == "organic":
        return "search"
    if not source and not context.referrer:
        return "direct"
    return "other"


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def hour_bucket(at: float, time_zone: str) -> str:
    zone = _zone(time_zone) if time_zone else None
    if zone is None:
        hour = time.gmtime(at).tm_hour
    else:
        from datetime import datetime

        hour = datetime.fromtimestamp(at, zone).hour
    return HOURS[hour // 6]


def cell_of(context: VisitorContext, at: float) -> Cell:
    device = context.device if context.device in DEVICES else "unknown"
    language = "en" if context.locale.lower().startswith("en") else "other"
    return Cell(device, traffic_source(context), hour_bucket(at, context.time_zone), language)


def cell_from_key(key: str) -> Cell:
    device, source, hour, language = key.split("|")
    if device not in DEVICES or source not in SOURCES or hour not in HOURS:
        raise ValueError(f"not a context cell: {key!r}")
    if language not in LANGUAGES:
        raise ValueError(f"not a context cell: {key!r}")
    return Cell(device, source, hour, language)


@functools.lru_cache(maxsize=1024)
def features(cell: Cell) -> npt.NDArray[np.float64]:
    """The cell's 0/1 feature vector, in FEATURE_NAMES order (read-only, cached)."""
    names = {
        f"device={cell.device}",
        f"source={cell.source}",
        f"hour={cell.hour}",
        f"language={cell.language}",
    }
    vector = np.array([1.0 if n in names else 0.0 for n in FEATURE_NAMES])
    vector.setflags(write=False)
    return vector


def all_cells() -> list[Cell]:
    return [Cell(d, s, h, g) for d in DEVICES for s in SOURCES for h in HOURS for g in LANGUAGES]
