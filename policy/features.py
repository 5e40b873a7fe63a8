"""Visitor context -> the features the policy conditions on. Pure.

A visitor falls into one *cell*: device, traffic source, hour of their local
day, and language. Cells are what the policy service counts outcomes by (so
fits run on sufficient statistics whose size does not grow with traffic), and
each cell maps to a fixed 0/1 feature vector (one-hot, first level of each
factor as the baseline) that the model's context slopes multiply.

* device: ``desktop``, ``mobile``, ``tablet``, anything else ``unknown``;
* source (:func:`traffic_source`, UTM values case-insensitive): a paid medium
  (``cpc``, ``ppc``, ``paid``, ``paidsocial``, ``paid_social``, ``display``,
  ``cpm``) is ``paid``; medium ``email`` or an email source is ``email``; a
  social source or medium ``social`` is ``social``; a search engine or medium
  ``organic`` is ``search``; no UTM source and no referrer is ``direct``; the
  rest ``other``;
* hour: the visitor's local hour (their IANA ``time_zone``; UTC when it is
  empty or unknown) in four 6-hour buckets from midnight: ``night`` (0-5),
  ``morning`` (6-11), ``afternoon`` (12-17), ``evening`` (18-23);
* language: ``en`` when the locale starts with ``en`` (any case), else ``other``.

The cells are numbered (:data:`CELLS`, :func:`cell_index`) so that the policy
can precompute everything per cell; :func:`cell_of` is ``CELLS[cell_index(...)]``.

Answers: besides its cell, a decision can be conditioned on the answers the
visitor gave *before* it (:func:`earlier_answers`: by default every earlier
answer of the conversation, the ``(question node id, button id)`` pairs of
``DecisionPoint.answers`` without the press that reached the decision point
itself). Each answer is a 0/1 feature named ``answer:{node id}={button id}``
(:func:`answer_label`; flow identifiers never contain ``:`` or ``=``): 1 when the
visitor gave that answer at least once before the decision. Which answers a
decision point's posterior knows is listed per point in the snapshot
(``PointPosterior.answers``); a decision logs its cell's labels first, then the
labels of the known answers it was conditioned on (:func:`split_labels`).

Context interactions: a *pair* feature is the product of two cell features of
different factors (:data:`PAIR_NAMES`, ``device=mobile*source=paid``: 1 for a
visitor on a mobile from paid traffic), 50 in all. Like the cell's one-hots
they are a function of the cell, so a decision conditioned on them logs nothing
more than the cell's labels; which pairs a decision point's posterior knows is
listed per point in the snapshot (``PointPosterior.pairs``, format v4).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from schemas.commands import VisitorContext
from services.traffic import SOURCES as SOURCES
from services.traffic import traffic_source

DEVICES = ("desktop", "mobile", "tablet", "unknown")
HOURS = ("night", "morning", "afternoon", "evening")
LANGUAGES = ("en", "other")


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

FACTOR_LEVELS: tuple[tuple[str, ...], ...] = (DEVICES, SOURCES, HOURS, LANGUAGES)
"""The factors in Cell and FEATURE_NAMES order; the first level of each is the baseline."""

PAIR_SEPARATOR = "*"


def _factor_of(name: str) -> str:
    return name.partition("=")[0]


FEATURE_FACTORS: tuple[int, ...] = tuple(
    Cell._fields.index(_factor_of(name)) for name in FEATURE_NAMES
)
"""Each cell feature's factor, as an index into FACTOR_LEVELS (and Cell's fields)."""

PAIR_INDICES: tuple[tuple[int, int], ...] = tuple(
    (i, j)
    for i in range(len(FEATURE_NAMES))
    for j in range(i + 1, len(FEATURE_NAMES))
    if _factor_of(FEATURE_NAMES[i]) != _factor_of(FEATURE_NAMES[j])
)
"""Each pair feature's two cell features (indices into FEATURE_NAMES), in PAIR_NAMES order."""

PAIR_NAMES: tuple[str, ...] = tuple(
    f"{FEATURE_NAMES[i]}{PAIR_SEPARATOR}{FEATURE_NAMES[j]}" for i, j in PAIR_INDICES
)
"""The context interactions: every product of two cell features of different factors."""

PAIR_INDEX: dict[str, int] = {name: p for p, name in enumerate(PAIR_NAMES)}

CELLS: tuple[Cell, ...] = tuple(
    Cell(d, s, h, g) for d in DEVICES for s in SOURCES for h in HOURS for g in LANGUAGES
)
"""Every cell, numbered: device, then source, hour and language vary fastest last."""

_DEVICE_INDEX = {d: i for i, d in enumerate(DEVICES)}
_SOURCE_INDEX = {s: i for i, s in enumerate(SOURCES)}
_UNKNOWN_DEVICE = _DEVICE_INDEX["unknown"]
_PER_DEVICE = len(SOURCES) * len(HOURS) * len(LANGUAGES)
_PER_SOURCE = len(HOURS) * len(LANGUAGES)
_PER_HOUR = len(LANGUAGES)


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    """The zone, or None for a name that is not one (the visitor's browser sent it)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def local_hour(at: float, time_zone: str) -> int:
    """The hour (0-23) of the Unix time ``at`` in ``time_zone`` (UTC if unknown)."""
    zone = _zone(time_zone) if time_zone else None
    if zone is None:
        return int(at // 3600.0 % 24.0)
    return datetime.fromtimestamp(at, zone).hour


def hour_bucket(at: float, time_zone: str) -> str:
    return HOURS[local_hour(at, time_zone) // 6]


def cell_index(context: VisitorContext, at: float) -> int:
    """The number of the visitor's cell in :data:`CELLS` (the policy's hot path)."""
    device = _DEVICE_INDEX.get(context.device, _UNKNOWN_DEVICE)
    source = _SOURCE_INDEX[traffic_source(context)]
    language = 0 if context.locale.lower().startswith("en") else 1
    hour = local_hour(at, context.time_zone) // 6
    return device * _PER_DEVICE + source * _PER_SOURCE + hour * _PER_HOUR + language


def cell_of(context: VisitorContext, at: float) -> Cell:
    return CELLS[cell_index(context, at)]


def cell_from_key(key: str) -> Cell:
    parts = key.split("|")
    if len(parts) != 4:
        raise ValueError(f"not a context cell: {key!r}")
    device, source, hour, language = parts
    if device not in DEVICES or source not in SOURCES or hour not in HOURS:
        raise ValueError(f"not a context cell: {key!r}")
    if language not in LANGUAGES:
        raise ValueError(f"not a context cell: {key!r}")
    return Cell(device, source, hour, language)


def labels(cell: Cell) -> tuple[str, ...]:
    """How a decision logs its cell (``EdgeChosen.features``): ``device=mobile``, ..."""
    return tuple(f"{name}={value}" for name, value in zip(Cell._fields, cell, strict=True))


CELL_LABELS: tuple[tuple[str, ...], ...] = tuple(labels(c) for c in CELLS)


ANSWER_PREFIX = "answer:"


def answer_label(node_id: str, button_id: str) -> str:
    """The feature name of an earlier answer: ``answer:{node id}={button id}``."""
    return f"{ANSWER_PREFIX}{node_id}={button_id}"


def earlier_answers(
    answers: Sequence[tuple[str, str]], node_id: str, button_id: str
) -> Sequence[tuple[str, str]]:
    """The answers given before the decision at ``(node_id, button_id)``: the
    decider passes every answer of the conversation including the press that
    reached the decision point, last; that one is dropped (it is the same for
    every decision of the point, so it tells nothing). A caller that passes only
    the earlier ones (``POST /decide``) gets them back unchanged, unless the last
    one is an earlier press of the same button (a flow that loops back)."""
    if answers and answers[-1] == (node_id, button_id):
        return answers[:-1]
    return answers


def split_labels(logged: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``EdgeChosen.features`` as (the cell's labels, the answer labels after them)."""
    n = len(logged)
    while n > 0 and logged[n - 1].startswith(ANSWER_PREFIX):
        n -= 1
    return tuple(logged[:n]), tuple(logged[n:])


def cell_from_labels(logged: Sequence[str]) -> Cell:
    """The cell of ``labels(cell)`` as logged in ``EdgeChosen.features`` (answer
    labels after it, if any, are not part of the cell); ValueError else."""
    logged, _ = split_labels(logged)
    if len(logged) != len(Cell._fields):
        raise ValueError(f"not a context cell's labels: {tuple(logged)!r}")
    values = []
    for name, label in zip(Cell._fields, logged, strict=True):
        prefix, _, value = label.partition("=")
        if prefix != name:
            raise ValueError(f"not a context cell's labels: {tuple(logged)!r}")
        values.append(value)
    return cell_from_key("|".join(values))


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


def pair_features(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The pair features (PAIR_NAMES order) of cell features ``x`` (FEATURE_NAMES
    order): ``x[i] * x[j]`` for each pair; ``x`` may be a batch, rows last axis."""
    first = np.array([i for i, _ in PAIR_INDICES], dtype=np.intp)
    second = np.array([j for _, j in PAIR_INDICES], dtype=np.intp)
    out: npt.NDArray[np.float64] = x[..., first] * x[..., second]
    return out


@functools.lru_cache(maxsize=1024)
def cell_pairs(cell: Cell) -> npt.NDArray[np.float64]:
    """The cell's 0/1 pair features, in PAIR_NAMES order (read-only, cached)."""
    vector = pair_features(features(cell))
    vector.setflags(write=False)
    return vector


def all_cells() -> list[Cell]:
    return list(CELLS)
