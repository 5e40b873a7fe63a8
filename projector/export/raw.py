"""Events as orjson-decoded objects, checked just enough to be exported fast.

Building a frozen dataclass per event (the generic :mod:`schemas.codec` path)
was 70% of an export's time. The export reads the objects directly instead
(:mod:`projector.export.raw_columns`); what makes that safe is checked here
for every object: it is a JSON object of a known event type and version.
Anything else is handed to the generic decoder, whose error (with where the
record is) stops the export. Field types are checked by Arrow when the
columns are built; should that fail, the batch is decoded the generic way to
name the record (:func:`decode`).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson

from projector.export.errors import Place, unreadable
from schemas.codec import MessageError
from schemas.events import EVENTS, Event

Obj = dict[str, Any]

KNOWN_VERSIONS: dict[str, int] = {
    cls.__dataclass_fields__["type"].default: cls.__dataclass_fields__["v"].default
    for cls in typing.get_args(Event)
}


KNOWN: frozenset[tuple[str, int]] = frozenset(KNOWN_VERSIONS.items())  # (type, v)


@dataclass(frozen=True, slots=True)
class RawBatch:
    """Event objects of selected conversations, and where each was read."""

    objs: list[Obj]
    places: list[Place]


def loads(data: bytes, place: Place) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise unreadable(place, MessageError(f"not valid JSON ({exc})")) from exc


def check(obj: Any, place: Place) -> Obj:
    """``obj`` if it is an event of a type and version this reader knows; else
    the generic decoder's reason, as :class:`UnreadableLog`."""
    if type(obj) is dict and (obj.get("type"), obj.get("v")) in KNOWN:
        return obj
    try:
        EVENTS.decode_obj(obj)
    except MessageError as exc:
        raise unreadable(place, exc) from exc
    raise unreadable(place, MessageError("not an event"))  # pragma: no cover


def explain(obj: Any, place: Place, exc: Exception) -> NoReturn:
    """Raise the generic decoder's reason why ``obj`` failed the fast path;
    ``exc`` itself if the generic decoder finds nothing wrong."""
    try:
        EVENTS.decode_obj(obj)
    except MessageError as reason:
        raise unreadable(place, reason) from exc
    raise exc


def decode(batch: RawBatch) -> list[Event]:
    """The generic decode of every object, naming the first that fails."""
    events: list[Event] = []
    for obj, place in zip(batch.objs, batch.places, strict=True):
        try:
            events.append(EVENTS.decode_obj(obj))
        except MessageError as exc:
            raise unreadable(place, exc) from exc
    return events
