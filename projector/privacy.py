"""Erasure and reading of lead details (crypto-shredding in practice)."""

from __future__ import annotations

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
    fields: dict[str, str] | None = None
    key = None if lead.erased else await keys.get(lead.conversation_id)
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
