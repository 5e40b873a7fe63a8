"""Erasure and reading of lead details (crypto-shredding in practice)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from projector.views import LeadView
from services.conversation.sealing import AesGcmSealer, Unsealable
from services.ports import KeyStore


@dataclass(frozen=True, slots=True)
class LeadRecord:
    conversation_id: str
    site_id: str
    flow_id: str
    captured_at: float
    consent: bool
    status: str  # "captured" or "erased"
    fields: dict[str, str] | None


async def open_lead(keys: KeyStore, lead: LeadView) -> LeadRecord:
    """Decrypt a lead's details; an erased key (or blob) shows the lead as erased."""
    key = None if lead.erased else await keys.get(lead.conversation_id)
    return opened(lead, key)


async def open_leads(keys: KeyStore, leads: Sequence[LeadView]) -> list[LeadRecord]:
    """:func:`open_lead` for a page of leads, with their keys fetched in one batch."""
    found = await keys.get_many([lead.conversation_id for lead in leads if not lead.erased])
    return [opened(lead, found.get(lead.conversation_id)) for lead in leads]


def opened(lead: LeadView, key: bytes | None) -> LeadRecord:
    """The lead with its details opened with ``key`` (None: erased)."""
    fields: dict[str, str] | None = None
    if key is not None and lead.sealed:
        try:
            fields = orjson.loads(AesGcmSealer(key).open(lead.sealed, lead.event_id))
        except Unsealable:
            fields = None
    return LeadRecord(
        conversation_id=lead.conversation_id,
        site_id=lead.site_id,
        flow_id=lead.flow_id,
        captured_at=lead.captured_at,
        consent=lead.consent,
        status="captured" if fields is not None else "erased",
        fields=fields,
    )
