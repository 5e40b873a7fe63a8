"""The oracle the read-model tests compare stores to: a fold of the log, one event at a time.

``Oracle`` applies each event on its own (no batching, no cache, no
pipelining) to the in-memory fake, and remembers every conversation, site and
counter key it saw, so that any store can be read back in full through the
port and compared with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from projector.memory_store import InMemoryReadModel
from projector.plan import plan
from projector.store import ReadModelStore
from projector.views import ConversationView
from schemas.events import ConversationStarted, Event


@dataclass
class Oracle:
    store: InMemoryReadModel = field(default_factory=InMemoryReadModel)
    conversations: set[str] = field(default_factory=set)
    sites: set[str] = field(default_factory=set)
    counter_keys: set[str] = field(default_factory=set)
    _views: dict[str, ConversationView | None] = field(default_factory=dict)

    async def fold(self, events: Iterable[Event]) -> Oracle:
        namespace = await self.store.current_namespace()
        for event in events:
            cid = event.conversation_id
            if isinstance(event, ConversationStarted):
                self.conversations.add(cid)
                self.sites.add(event.site_id)
            after, write_set = plan(self._views.get(cid), [event])
            if write_set is None:
                continue
            self.counter_keys.update(inc.key for inc in write_set.increments)
            [outcome] = await self.store.apply(namespace, [write_set], live=True)
            assert outcome == 1, outcome
            self._views[cid] = after
        return self

    async def read(self, store: ReadModelStore | None = None) -> dict[str, Any]:
        """Everything the oracle knows of, as read from ``store`` (default: its own)."""
        return await read_all(
            store or self.store, self.conversations, self.sites, self.counter_keys
        )


async def read_all(
    store: ReadModelStore, cids: Iterable[str], sites: Iterable[str], counter_keys: Iterable[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {"conversations": {}, "transcripts": {}, "leads": {}, "counters": {}}
    for cid in sorted(cids):
        out["conversations"][cid] = await store.conversation(cid)
        out["transcripts"][cid] = await store.transcript(cid, 0, 10_000)
    for site in sorted(sites):
        leads, cursor = [], None
        while True:
            page = await store.leads(site, cursor, 50)
            leads.extend(page.leads)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        out["leads"][site] = leads
    for key in sorted(counter_keys):
        out["counters"][key] = await store.counters(key)
    return out
