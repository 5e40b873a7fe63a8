"""The in-memory :class:`~services.delivery.store.DeliveryStore` (tests, and the
reference the contract suite holds the real adapters to)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.conversation.state import ConversationState
from services.delivery.model import Delivery, Status
from services.delivery.store import Page, Summary


class MemoryDeliveryStore:
    def __init__(self) -> None:
        self.deliveries: dict[str, Delivery] = {}
        self.order: list[str] = []  # creation order
        self.claims: dict[str, float] = {}  # id -> claimed until
        self.kept: dict[str, tuple[ConversationState, float]] = {}
        self.offsets: dict[int, int] = {}
        self.off: dict[tuple[str, str], str] = {}
        self.since: float | None = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def deliver_since(self, now: float) -> float:
        if self.since is None:
            self.since = now
        return self.since

    async def positions(self) -> dict[int, int]:
        return dict(self.offsets)

    async def states(self, conversation_ids: Sequence[str]) -> dict[str, ConversationState]:
        return {c: self.kept[c][0] for c in conversation_ids if c in self.kept}

    async def take_in(
        self,
        states: Mapping[str, ConversationState | None],
        deliveries: Sequence[Delivery],
        positions: Mapping[int, int],
    ) -> int:
        for cid, state in states.items():
            if state is None:
                self.kept.pop(cid, None)
            else:
                self.kept[cid] = (state, state.updated_at)
        new = 0
        for delivery in deliveries:
            if delivery.id not in self.deliveries:
                self.deliveries[delivery.id] = delivery
                self.order.append(delivery.id)
                new += 1
        self.offsets.update(positions)
        return new

    async def claim_due(self, now: float, limit: int, lease: float) -> list[Delivery]:
        due = sorted(
            (
                d
                for d in self.deliveries.values()
                if d.status == "pending" and d.next_at <= now and self.claims.get(d.id, 0.0) <= now
            ),
            key=lambda d: (d.next_at, d.id),
        )[:limit]
        for d in due:
            self.claims[d.id] = now + lease
        return due

    async def save(self, delivery: Delivery) -> None:
        if delivery.id not in self.deliveries:
            self.order.append(delivery.id)
        self.deliveries[delivery.id] = delivery
        self.claims.pop(delivery.id, None)

    async def get(self, delivery_id: str) -> Delivery | None:
        return self.deliveries.get(delivery_id)

    async def page(
        self,
        site_id: str | None,
        status: Status | None,
        limit: int,
        cursor: str | None = None,
    ) -> Page:
        # The cursor is a creation index (the next page starts below it), so
        # deliveries added between pages neither shift nor repeat a page.
        def wanted(d: Delivery) -> bool:
            return (site_id is None or d.site_id == site_id) and (
                status is None or d.status == status
            )

        i = int(cursor) if cursor else len(self.order)
        out: list[Delivery] = []
        while i > 0 and len(out) < limit:
            i -= 1
            d = self.deliveries[self.order[i]]
            if wanted(d):
                out.append(d)
        more = any(wanted(self.deliveries[x]) for x in self.order[:i])
        return Page(out, str(i) if more else None)

    async def delivered_since(
        self, site_id: str, since: float, destination: str | None
    ) -> list[Delivery]:
        return [
            d
            for d in (self.deliveries[i] for i in self.order)
            if d.site_id == site_id
            and d.status == "delivered"
            and d.lead.captured_at >= since
            and (destination is None or d.destination == destination)
        ]

    async def summary(self, site_id: str | None = None) -> Summary:
        counts: dict[Status, int] = {}
        oldest: float | None = None
        for d in self.deliveries.values():
            if site_id is not None and d.site_id != site_id:
                continue
            counts[d.status] = counts.get(d.status, 0) + 1
            if d.status == "pending":
                at = d.lead.captured_at
                oldest = at if oldest is None else min(oldest, at)
        return Summary(counts, oldest)

    async def disable(self, site_id: str, destination: str, reason: str, at: float) -> None:
        self.off[(site_id, destination)] = reason

    async def enable(self, site_id: str, destination: str) -> bool:
        return self.off.pop((site_id, destination), None) is not None

    async def disabled(self) -> dict[tuple[str, str], str]:
        return dict(self.off)

    async def forget_states_before(self, updated_before: float) -> int:
        old = [c for c, (_, at) in self.kept.items() if at < updated_before]
        for c in old:
            del self.kept[c]
        return len(old)
