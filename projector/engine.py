"""The projector's engine: consumed events in, one pipelined write per batch out.

It groups a batch's events by conversation, plans one write set per
conversation (:func:`projector.plan.plan`) on the view it remembers (an LRU
cache) or loads, and hands all write sets to the store in one call. A
conflict (the store holds something else than the view planned on, e.g. after
a rebalance or beside a rebuild) reloads that view and plans again; a
duplicate (already applied) changes nothing. Both loops converge because the
store's check is atomic with the write.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from projector.plan import plan
from projector.store import Outcome, ReadModelStore
from projector.views import ConversationView
from projector.write_set import WriteSet
from schemas.events import Event

MAX_ROUNDS = 8


class NamespaceMoved(Exception):
    """The current namespace changed under a live projector (a rebuild switched it)."""


class ProjectionStuck(RuntimeError):
    """A write set kept conflicting: someone else keeps writing the same conversation."""


@dataclass
class BatchResult:
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    conflicts: int = 0
    last_event_at: float | None = None
    outcomes: dict[str, Outcome] = field(default_factory=dict)


def group_by_conversation(events: Iterable[Event]) -> dict[str, list[Event]]:
    groups: dict[str, list[Event]] = {}
    for event in events:
        groups.setdefault(event.conversation_id, []).append(event)
    for group in groups.values():
        group.sort(key=lambda e: e.seq)
    return groups


class Projector:
    """Projects batches of events into one namespace of a store.

    ``live`` projectors follow the current namespace and stop (NamespaceMoved)
    when a rebuild replaces it; a rebuild's projector writes its own namespace.
    """

    def __init__(
        self, store: ReadModelStore, namespace: str, *, live: bool, cache_size: int = 20_000
    ) -> None:
        self.store = store
        self.namespace = namespace
        self.live = live
        self._cache: OrderedDict[str, ConversationView | None] = OrderedDict()
        self._cache_size = cache_size

    def forget(self) -> None:
        self._cache.clear()

    async def project(self, events: Iterable[Event]) -> BatchResult:
        groups = group_by_conversation(events)
        result = BatchResult(events=sum(len(g) for g in groups.values()))
        for group in groups.values():
            at = group[-1].at
            if result.last_event_at is None or at > result.last_event_at:
                result.last_event_at = at
        pending = groups
        reload: set[str] = set()
        for _ in range(MAX_ROUNDS):
            views = await self._views(pending, reload)
            planned: dict[str, tuple[ConversationView | None, WriteSet]] = {}
            for cid, group in pending.items():
                after, write_set = plan(views[cid], group)
                if write_set is None:
                    self._remember(cid, after if after is not None else views[cid])
                    continue
                planned[cid] = (after, write_set)
            if not planned:
                return result
            outcomes = await self.store.apply(
                self.namespace, [ws for _, ws in planned.values()], live=self.live
            )
            retry: dict[str, list[Event]] = {}
            for (cid, (after, _)), outcome in zip(planned.items(), outcomes, strict=True):
                result.outcomes[cid] = outcome
                if outcome is Outcome.MOVED:
                    self.forget()
                    raise NamespaceMoved(self.namespace)
                if outcome is Outcome.APPLIED:
                    result.applied += 1
                    self._remember(cid, after)
                elif outcome is Outcome.DUPLICATE:
                    result.duplicates += 1
                    self._cache.pop(cid, None)
                else:
                    result.conflicts += 1
                    self._cache.pop(cid, None)
                    retry[cid] = pending[cid]
            if not retry:
                return result
            pending, reload = retry, set(retry)
        raise ProjectionStuck(f"conversations kept conflicting: {sorted(pending)[:5]}")

    async def _views(
        self, groups: dict[str, list[Event]], reload: set[str]
    ) -> dict[str, ConversationView | None]:
        """Cached views; a conversation whose first event here is its start needs
        no read (if the store has it after all, the write comes back a conflict
        or a duplicate); the rest are read in one round trip."""
        views: dict[str, ConversationView | None] = {}
        missing: list[str] = []
        for cid, group in groups.items():
            if cid in self._cache:
                self._cache.move_to_end(cid)
                views[cid] = self._cache[cid]
            elif group[0].seq == 1 and cid not in reload:
                views[cid] = None
            else:
                missing.append(cid)
        if missing:
            loaded = await self.store.load_views(self.namespace, missing)
            for cid in missing:
                views[cid] = loaded.get(cid)
        return views

    def _remember(self, cid: str, view: ConversationView | None) -> None:
        if view is None:
            return
        self._cache[cid] = view
        self._cache.move_to_end(cid)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
