"""The read models' values and how they are stored as flat string fields.

A conversation is stored as a hash of string fields (readable with
``HGETALL`` by anyone's dashboard), a lead as another hash, the transcript as
a list of JSON entries. The encoding is deterministic (sorted, ``repr`` for
floats) so that the same events always give byte-for-byte the same store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.codec import from_mapping
from schemas.commands import VisitorContext


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationView:
    """One conversation as of event ``last_seq``.

    ``nodes``, ``edges`` and ``left`` are the distinct nodes entered, edges
    (``from>to``) traversed and nodes left, in first-seen order: they make the
    funnel count each conversation once per node or edge, even when it loops.
    ``went_back``: the distinct nodes whose answer the visitor changed (going
    back re-opened them), likewise counted once per conversation."""

    conversation_id: str
    site_id: str
    flow_id: str
    flow_version: int
    status: str  # "active" | "completed"
    current_node: str
    last_seq: int
    lead_captured: bool
    answers: tuple[tuple[str, str], ...]
    context: VisitorContext
    started_at: float
    updated_at: float
    completed_at: float | None = None
    lead_at: float | None = None
    nodes: tuple[str, ...] = ()
    edges: tuple[str, ...] = ()
    left: tuple[str, ...] = ()
    went_back: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadView:
    """A lead as stored: the contact details stay sealed until read with the key."""

    conversation_id: str
    site_id: str
    flow_id: str
    flow_version: int
    event_id: str
    captured_at: float
    sealed: str
    fields_present: tuple[str, ...]
    consent: bool
    erased: bool = False


def _float(value: float | None) -> str:
    return "" if value is None else repr(value)


def _opt_float(raw: str) -> float | None:
    return None if raw == "" else float(raw)


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def view_fields(view: ConversationView) -> dict[str, str]:
    """The view as string fields (the conversation hash); ``went_back`` only when
    the visitor went back (a conversation that did not is stored as before)."""
    fields = {
        "conversation_id": view.conversation_id,
        "site_id": view.site_id,
        "flow_id": view.flow_id,
        "flow_version": str(view.flow_version),
        "status": view.status,
        "current_node": view.current_node,
        "last_seq": str(view.last_seq),
        "lead_captured": "1" if view.lead_captured else "0",
        "answers": _json(view.answers),
        "context": _json(view.context),
        "started_at": _float(view.started_at),
        "updated_at": _float(view.updated_at),
        "completed_at": _float(view.completed_at),
        "lead_at": _float(view.lead_at),
        "nodes": _json(view.nodes),
        "edges": _json(view.edges),
        "left": _json(view.left),
    }
    if view.went_back:
        fields["went_back"] = _json(view.went_back)
    return fields


def view_from_fields(fields: Mapping[str, str]) -> ConversationView:
    """The inverse of :func:`view_fields`."""
    return ConversationView(
        conversation_id=fields["conversation_id"],
        site_id=fields["site_id"],
        flow_id=fields["flow_id"],
        flow_version=int(fields["flow_version"]),
        status=fields["status"],
        current_node=fields["current_node"],
        last_seq=int(fields["last_seq"]),
        lead_captured=fields["lead_captured"] == "1",
        answers=tuple((a, b) for a, b in orjson.loads(fields["answers"])),
        context=from_mapping(VisitorContext, orjson.loads(fields["context"])),
        started_at=float(fields["started_at"]),
        updated_at=float(fields["updated_at"]),
        completed_at=_opt_float(fields.get("completed_at", "")),
        lead_at=_opt_float(fields.get("lead_at", "")),
        nodes=tuple(orjson.loads(fields.get("nodes", "[]"))),
        edges=tuple(orjson.loads(fields.get("edges", "[]"))),
        left=tuple(orjson.loads(fields.get("left", "[]"))),
        went_back=tuple(orjson.loads(fields.get("went_back", "[]"))),
    )


def lead_fields(lead: LeadView) -> dict[str, str]:
    return {
        "conversation_id": lead.conversation_id,
        "site_id": lead.site_id,
        "flow_id": lead.flow_id,
        "flow_version": str(lead.flow_version),
        "event_id": lead.event_id,
        "captured_at": repr(lead.captured_at),
        "sealed": lead.sealed,
        "fields_present": _json(lead.fields_present),
        "consent": "1" if lead.consent else "0",
        "erased": "1" if lead.erased else "0",
    }


def lead_from_fields(fields: Mapping[str, str]) -> LeadView:
    return LeadView(
        conversation_id=fields["conversation_id"],
        site_id=fields["site_id"],
        flow_id=fields["flow_id"],
        flow_version=int(fields["flow_version"]),
        event_id=fields["event_id"],
        captured_at=float(fields["captured_at"]),
        sealed=fields["sealed"],
        fields_present=tuple(orjson.loads(fields["fields_present"])),
        consent=fields["consent"] == "1",
        erased=fields.get("erased", "0") == "1",
    )


def decode_fields(raw: Mapping[bytes, bytes] | Mapping[str, str]) -> dict[str, str]:
    """A hash as read from a store that returns bytes, as text fields."""
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }
