"""The export's columns, filled from event objects (orjson-decoded wire form).

The export reads records straight into these objects (the fast path,
:mod:`projector.export.raw`); decoded events go through the very same fillers
by way of their wire form (:func:`to_columns`), so there is one mapping and one
set of privacy rules (:mod:`projector.export.columns`). Optional fields absent
from an object take their dataclass defaults, as the generic decoder gives them
(``tests/unit/test_export_raw.py`` holds the two ways to the same table).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from projector.export.columns import (
    PII,
    SPECIFIC,
    Cols,
    Conversation,
    OpenedLead,
    field_errors,
    lead_columns,
    referrer_origin,
)
from projector.export.raw import Obj
from schemas.codec import encode
from schemas.commands import VisitorContext
from schemas.events import Event

_CONTEXT = {f.name: f.default for f in dataclasses.fields(VisitorContext)}


def _started(o: Obj, i: int, cols: Cols, pii: bool) -> None:
    c = {**_CONTEXT, **o["context"]}
    cols["device"][i] = c["device"]
    cols["referrer"][i] = c["referrer"] if pii else referrer_origin(c["referrer"])
    cols["utm_source"][i] = c["utm_source"]
    cols["utm_medium"][i] = c["utm_medium"]
    cols["utm_campaign"][i] = c["utm_campaign"]
    cols["locale"][i] = c["locale"]
    cols["time_zone"][i] = c["time_zone"]


def _pressed(o: Obj, i: int, cols: Cols, pii: bool) -> None:
    cols["node_id"][i] = o["node_id"]
    cols["button_id"][i] = o["button_id"]


def _chosen(o: Obj, i: int, cols: Cols, pii: bool) -> None:
    cols["node_id"][i] = o["node_id"]
    cols["button_id"][i] = o["button_id"]
    cols["candidates"][i] = o["candidates"]
    cols["chosen"][i] = o["chosen"]
    cols["propensity"][i] = float(o["propensity"])
    cols["policy_version"][i] = o["policy_version"]
    cols["seed"][i] = o["seed"]
    cols["features"][i] = o.get("features", [])


def _entered(o: Obj, i: int, cols: Cols, pii: bool) -> None:
    cols["node_id"][i] = o["node_id"]
    cols["kind"][i] = o["kind"]


def _lead(o: Obj, i: int, cols: Cols, pii: bool) -> None:
    cols["node_id"][i] = o["node_id"]
    cols["fields_present"][i] = o["fields_present"]
    cols["consent"][i] = o["consent"]


def _answered(o: Obj, i: int, cols: Cols, pii: bool) -> None:
    """A free-text answer: its node only (its value, personal or not, is not exported)."""
    cols["node_id"][i] = o["node_id"]


def _completed(o: Obj, i: int, cols: Cols, pii: bool) -> None:
    cols["node_id"][i] = o["node_id"]
    cols["lead_captured"][i] = o["lead_captured"]


def _went_back(o: Obj, i: int, cols: Cols, pii: bool) -> None:
    cols["node_id"][i] = o["node_id"]
    cols["from_node"][i] = o["from_node"]
    cols["withdrawn_seq"][i] = o["withdrawn_seq"]


def _timer(o: Obj, i: int, cols: Cols, pii: bool) -> None:
    """A fired timer: the idle nudge or abandonment, on the node the visitor was on."""
    cols["node_id"][i] = o["node_id"]
    cols["idle_seconds"][i] = o["idle_seconds"]
    if "lead_captured" in o:
        cols["lead_captured"][i] = o["lead_captured"]


def _rejected(o: Obj, i: int, cols: Cols, pii: bool) -> None:
    errors, unknown = field_errors(o.get("fields", {}), pii)
    cols["command_type"][i] = o["command_type"]
    cols["reason"][i] = o["reason"]
    cols["detail"][i] = o["detail"]
    cols["consumed"][i] = o["consumed"]
    cols["field_errors"][i] = errors
    cols["unknown_fields"][i] = unknown


_FILL: dict[str, Callable[[Obj, int, Cols, bool], None]] = {
    "ConversationStarted": _started,
    "ButtonPressed": _pressed,
    "EdgeChosen": _chosen,
    "NodeEntered": _entered,
    "LeadCaptured": _lead,
    "QuestionAnswered": _answered,
    "WentBack": _went_back,
    "VisitorNudged": _timer,
    "ConversationAbandoned": _timer,
    "ConversationCompleted": _completed,
    "CommandRejected": _rejected,
}


def _tags(objs: Sequence[Obj], conversations: dict[str, Conversation]) -> list[Any]:
    tags: list[Conversation | None] = []
    for o in objs:
        if o["type"] == "ConversationStarted":
            conversations[o["conversation_id"]] = Conversation(
                o["flow_id"], o["flow_version"], o["site_id"]
            )
        tags.append(conversations.get(o["conversation_id"]))
    return tags


def raw_to_columns(
    objs: Sequence[Obj],
    conversations: dict[str, Conversation],
    include_pii: bool,
    leads: Mapping[str, OpenedLead] | None = None,
) -> Cols:
    """The columns of ``objs`` (in :func:`~projector.export.columns.column_names`
    order). Type-specific columns start all null and each event fills its own."""
    n = len(objs)
    tags = _tags(objs, conversations)
    cols: Cols = {
        "event_id": [o["id"] for o in objs],
        "conversation_id": [o["conversation_id"] for o in objs],
        "seq": [o["seq"] for o in objs],
        "command_seq": [o["command_seq"] for o in objs],
        "type": [o["type"] for o in objs],
        "v": [o["v"] for o in objs],
        "at": [round(o["at"] * 1_000_000) for o in objs],
        "flow_id": [None if t is None else t.flow_id for t in tags],
        "flow_version": [None if t is None else t.flow_version for t in tags],
        "site_id": [None if t is None else t.site_id for t in tags],
    }
    for name in SPECIFIC + (PII if include_pii else ()):
        cols[name] = [None] * n
    for i, o in enumerate(objs):
        _FILL[o["type"]](o, i, cols, include_pii)
    if include_pii:
        for i, o in enumerate(objs):
            if o["type"] == "LeadCaptured":
                lead = None if leads is None else leads.get(o["id"])
                cols["lead"][i], cols["lead_erased"][i] = lead_columns(lead)
    return cols


def to_columns(
    events: Sequence[Event],
    conversations: dict[str, Conversation],
    include_pii: bool,
    leads: Mapping[str, OpenedLead] | None = None,
) -> Cols:
    """:func:`raw_to_columns` of decoded events, through their wire form."""
    objs = [orjson.loads(encode(e)) for e in events]
    return raw_to_columns(objs, conversations, include_pii, leads)
