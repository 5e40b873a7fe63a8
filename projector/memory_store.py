"""The in-memory read-model store: the fake the contract suite holds the real ones to."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from projector.store import LeadsPage, Outcome, after_cursor, decode_cursor, encode_cursor
from projector.views import (
    ConversationView,
    LeadView,
    lead_fields,
    lead_from_fields,
    view_from_fields,
)
from projector.write_set import WriteSet


@dataclass
class _Namespace:
    conversations: dict[str, dict[str, str]] = field(default_factory=dict)
    transcripts: dict[str, list[bytes]] = field(default_factory=dict)
    leads: dict[str, dict[str, str]] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    frontier: dict[str, int] = field(default_factory=dict)


class InMemoryReadModel:
    def __init__(self) -> None:
        self._spaces: dict[str, _Namespace] = {}
        self._current: str | None = None
        self._serial = 0

    def _space(self, namespace: str) -> _Namespace:
        return self._spaces.setdefault(namespace, _Namespace())

    async def current_namespace(self) -> str:
        if self._current is None:
            self._current = await self.new_namespace()
        return self._current

    async def load_views(
        self, namespace: str, conversation_ids: Collection[str]
    ) -> dict[str, ConversationView]:
        stored = self._space(namespace).conversations
        return {cid: view_from_fields(stored[cid]) for cid in conversation_ids if cid in stored}

    async def apply(
        self, namespace: str, write_sets: Sequence[WriteSet], *, live: bool
    ) -> list[Outcome]:
        return [self._apply_one(namespace, ws, live) for ws in write_sets]

    def _apply_one(self, namespace: str, ws: WriteSet, live: bool) -> Outcome:
        if live and namespace != self._current:
            return Outcome.MOVED
        space = self._space(namespace)
        held = int(space.conversations.get(ws.conversation_id, {}).get("last_seq", "0"))
        if held >= ws.new_seq:
            return Outcome.DUPLICATE
        if held != ws.base_seq:
            return Outcome.CONFLICT
        space.conversations[ws.conversation_id] = dict(ws.fields)
        space.transcripts.setdefault(ws.conversation_id, []).extend(ws.transcript)
        if ws.lead is not None:
            space.leads[ws.conversation_id] = lead_fields(ws.lead)
        for inc in ws.increments:
            counters = space.counters.setdefault(inc.key, {})
            counters[inc.field] = counters.get(inc.field, 0) + inc.delta
        return Outcome.APPLIED

    async def new_namespace(self) -> str:
        self._serial += 1
        name = f"n{self._serial}"
        self._space(name)
        return name

    async def set_frontier(
        self, namespace: str, frontier: Mapping[str, int], *, live: bool = False
    ) -> None:
        if live and namespace != self._current:
            return
        self._space(namespace).frontier.update(frontier)

    async def frontier(self, namespace: str) -> dict[str, int]:
        return dict(self._space(namespace).frontier)

    async def switch_to(self, namespace: str) -> str:
        previous = await self.current_namespace()
        self._space(namespace)
        self._current = namespace
        return previous

    async def drop_namespace(self, namespace: str) -> int:
        if namespace == self._current:
            raise ValueError(f"namespace {namespace!r} is current; switch away first")
        space = self._spaces.pop(namespace, None)
        if space is None:
            return 0
        return (
            len(space.conversations)
            + len(space.transcripts)
            + len(space.leads)
            + len(space.counters)
        )

    async def conversation(self, conversation_id: str) -> ConversationView | None:
        views = await self.load_views(await self.current_namespace(), [conversation_id])
        return views.get(conversation_id)

    async def transcript(
        self, conversation_id: str, after_seq: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        space = self._space(await self.current_namespace())
        entries = [orjson.loads(e) for e in space.transcripts.get(conversation_id, [])]
        return [e for e in entries if e["seq"] > after_seq][:limit]

    async def lead(self, conversation_id: str) -> LeadView | None:
        raw = self._space(await self.current_namespace()).leads.get(conversation_id)
        return None if raw is None else lead_from_fields(raw)

    async def leads(self, site_id: str, cursor: str | None = None, limit: int = 50) -> LeadsPage:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        position = None if cursor is None else decode_cursor(cursor)
        space = self._space(await self.current_namespace())
        leads = sorted(
            (lead_from_fields(f) for f in space.leads.values() if f["site_id"] == site_id),
            key=lambda lead: (lead.captured_at, lead.conversation_id),
            reverse=True,
        )
        page = [lead for lead in leads if after_cursor(lead, position)][: limit + 1]
        more = len(page) > limit
        page = page[:limit]
        last = page[-1] if more else None
        return LeadsPage(
            page, None if last is None else encode_cursor(last.captured_at, last.conversation_id)
        )

    async def counters(self, key: str) -> dict[str, int]:
        return dict(self._space(await self.current_namespace()).counters.get(key, {}))

    async def mark_erased(self, conversation_id: str) -> bool:
        space = self._space(await self.current_namespace())
        raw = space.leads.get(conversation_id)
        if raw is None:
            return False
        erased = replace(lead_from_fields(raw), sealed="", erased=True)
        space.leads[conversation_id] = lead_fields(erased)
        return True

    async def ping(self) -> bool:
        return True
