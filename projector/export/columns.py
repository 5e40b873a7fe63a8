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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

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
    "from_node",
    "withdrawn_seq",
    "idle_seconds",
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


def lead_columns(opened: OpenedLead | None) -> tuple[str | None, bool]:
    """(``lead``, ``lead_erased``): a lead with no opened details is erased."""
    if opened is None or opened.fields is None:
        return None, True
    return orjson.dumps(dict(opened.fields), option=orjson.OPT_SORT_KEYS).decode(), False
