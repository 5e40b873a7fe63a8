"""Events as rows of one flat, analyst-friendly table (pure).

Every event gets the common columns, and its conversation's flow and site
(from its ``ConversationStarted``); each type fills its own columns, the
others stay null. Privacy rules, applied here so every format obeys them:

* ``LeadCaptured.sealed`` is never exported. Contact details appear only with
  ``include_pii``, opened with the conversation's key, as the ``lead`` column
  (a JSON object) and ``lead_erased``; without it those columns do not exist.
* ``CommandRejected.fields`` maps field names to fixed validation messages
  that never echo a value, but the names of *unknown* fields are whatever the
  visitor's client sent: without ``include_pii`` they are only counted
  (``unknown_fields``), and ``field_errors`` holds the form's own fields.
* ``referrer`` is a URL the visitor's browser sent, whose path and query can
  carry anything: without ``include_pii`` only its ``scheme://host`` is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from schemas.events import (
    ButtonPressed,
    CommandRejected,
    ConversationCompleted,
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
    NodeEntered,
)

UNKNOWN_FIELD = "is not a field of this form"  # services.conversation.leads.validate_lead

COMMON = (
    "event_id",
    "conversation_id",
    "seq",
    "command_seq",
    "type",
    "v",
    "at",
    "flow_id",
    "flow_version",
    "site_id",
)
SPECIFIC = (
    "node_id",
    "button_id",
    "kind",
    "candidates",
    "chosen",
    "propensity",
    "policy_version",
    "seed",
    "features",
    "fields_present",
    "consent",
    "lead_captured",
    "command_type",
    "reason",
    "detail",
    "consumed",
    "field_errors",
    "unknown_fields",
    "device",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "locale",
    "time_zone",
)
PII = ("lead", "lead_erased")


def column_names(include_pii: bool) -> tuple[str, ...]:
    return COMMON + SPECIFIC + (PII if include_pii else ())


@dataclass(frozen=True, slots=True)
class Conversation:
    """What every event of a conversation is tagged with."""

    flow_id: str
    flow_version: int
    site_id: str


@dataclass(frozen=True, slots=True)
class OpenedLead:
    """A lead's contact details (None: erased, its key deleted)."""

    fields: Mapping[str, str] | None


def referrer_origin(referrer: str) -> str:
    """``https://news.example/a?b=c`` -> ``https://news.example`` ("" stays "")."""
    if not referrer:
        return ""
    try:
        parts = urlsplit(referrer)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return ""
    return f"{parts.scheme}://{host}{port}" if parts.scheme and host else ""


def field_errors(fields: Mapping[str, str], include_pii: bool) -> tuple[str | None, int]:
    """(the errors as a JSON object or None, how many named unknown fields)."""
    unknown = sum(1 for message in fields.values() if message == UNKNOWN_FIELD)
    shown = dict(fields) if include_pii else {k: m for k, m in fields.items() if m != UNKNOWN_FIELD}
    text = orjson.dumps(shown, option=orjson.OPT_SORT_KEYS).decode() if shown else None
    return text, unknown


Cols = dict[str, list[Any]]


def _started(e: ConversationStarted, i: int, cols: Cols, pii: bool) -> None:
    c = e.context
    cols["device"][i] = c.device
    cols["referrer"][i] = c.referrer if pii else referrer_origin(c.referrer)
    cols["utm_source"][i] = c.utm_source
    cols["utm_medium"][i] = c.utm_medium
    cols["utm_campaign"][i] = c.utm_campaign
    cols["locale"][i] = c.locale
    cols["time_zone"][i] = c.time_zone


def _pressed(e: ButtonPressed, i: int, cols: Cols, pii: bool) -> None:
    cols["node_id"][i] = e.node_id
    cols["button_id"][i] = e.button_id


def _chosen(e: EdgeChosen, i: int, cols: Cols, pii: bool) -> None:
    cols["node_id"][i] = e.node_id
    cols["button_id"][i] = e.button_id
    cols["candidates"][i] = list(e.candidates)
    cols["chosen"][i] = e.chosen
    cols["propensity"][i] = e.propensity
    cols["policy_version"][i] = e.policy_version
    cols["seed"][i] = e.seed
    cols["features"][i] = list(e.features)


def _entered(e: NodeEntered, i: int, cols: Cols, pii: bool) -> None:
    cols["node_id"][i] = e.node_id
    cols["kind"][i] = e.kind


def _lead(e: LeadCaptured, i: int, cols: Cols, pii: bool) -> None:
    cols["node_id"][i] = e.node_id
    cols["fields_present"][i] = list(e.fields_present)
    cols["consent"][i] = e.consent


def _completed(e: ConversationCompleted, i: int, cols: Cols, pii: bool) -> None:
    cols["node_id"][i] = e.node_id
    cols["lead_captured"][i] = e.lead_captured


def _rejected(e: CommandRejected, i: int, cols: Cols, pii: bool) -> None:
    errors, unknown = field_errors(e.fields, pii)
    cols["command_type"][i] = e.command_type
    cols["reason"][i] = e.reason
    cols["detail"][i] = e.detail
    cols["consumed"][i] = e.consumed
    cols["field_errors"][i] = errors
    cols["unknown_fields"][i] = unknown


_FILL: dict[str, Callable[[Any, int, Cols, bool], None]] = {
    "ConversationStarted": _started,
    "ButtonPressed": _pressed,
    "EdgeChosen": _chosen,
    "NodeEntered": _entered,
    "LeadCaptured": _lead,
    "ConversationCompleted": _completed,
    "CommandRejected": _rejected,
}


def lead_columns(opened: OpenedLead | None) -> tuple[str | None, bool]:
    """(``lead``, ``lead_erased``): a lead with no opened details is erased."""
    if opened is None or opened.fields is None:
        return None, True
    return orjson.dumps(dict(opened.fields), option=orjson.OPT_SORT_KEYS).decode(), False


def _tags(
    events: Sequence[Event], conversations: dict[str, Conversation]
) -> list[Conversation | None]:
    """Each event's conversation; a start registers its conversation first."""
    tags: list[Conversation | None] = []
    for e in events:
        if isinstance(e, ConversationStarted):
            conversations[e.conversation_id] = Conversation(e.flow_id, e.flow_version, e.site_id)
        tags.append(conversations.get(e.conversation_id))
    return tags


def to_columns(
    events: Sequence[Event],
    conversations: dict[str, Conversation],
    include_pii: bool,
    leads: Mapping[str, OpenedLead] | None = None,
) -> Cols:
    """The columns of ``events`` (in :func:`column_names` order). Type-specific
    columns start all null and each event fills only its own."""
    n = len(events)
    tags = _tags(events, conversations)
    cols: Cols = {
        "event_id": [e.id for e in events],
        "conversation_id": [e.conversation_id for e in events],
        "seq": [e.seq for e in events],
        "command_seq": [e.command_seq for e in events],
        "type": [e.type for e in events],
        "v": [e.v for e in events],
        "at": [round(e.at * 1_000_000) for e in events],
        "flow_id": [None if t is None else t.flow_id for t in tags],
        "flow_version": [None if t is None else t.flow_version for t in tags],
        "site_id": [None if t is None else t.site_id for t in tags],
    }
    for name in SPECIFIC + (PII if include_pii else ()):
        cols[name] = [None] * n
    for i, e in enumerate(events):
        _FILL[e.type](e, i, cols, include_pii)
    if include_pii:
        for i, e in enumerate(events):
            if isinstance(e, LeadCaptured):
                lead = None if leads is None else leads.get(e.id)
                cols["lead"][i], cols["lead_erased"][i] = lead_columns(lead)
    return cols
