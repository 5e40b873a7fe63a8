"""The delivery worker's state: the port, and what every adapter promises.

One store holds three things, so that taking in a stretch of the log is one
atomic step (:meth:`DeliveryStore.take_in`): the states of conversations in
progress, the deliveries, and the log positions they reflect. Adapters:
SQLite (the embedded mode, :mod:`services.embedded.sqlite_deliveries`), Redis
(the distributed mode, :mod:`services.distributed.redis_deliveries`) and an
in-memory fake (:mod:`services.delivery.memory_store`); one contract suite
(tests/support/delivery_store_contract.py) runs against each.

Several workers may share one store (the distributed mode): a due delivery
is *claimed* for ``lease`` seconds, so only one worker tries it; a worker
that dies mid-attempt leaves the claim to expire, and another tries again
(at least once; the receiver deduplicates by ``webhook-id``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.conversation.state import ConversationState
from services.delivery.model import Delivery, Status


@dataclass(frozen=True, slots=True)
class Page:
    deliveries: list[Delivery]
    next_cursor: str | None  # pass it back for the next page; None: no more


@dataclass(frozen=True, slots=True)
class Summary:
    counts: Mapping[Status, int]
    oldest_pending_at: float | None  # the oldest pending delivery's lead capture time


class DeliveryStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def deliver_since(self, now: float) -> float:
        """When this store began delivering: set to ``now`` by the first call
        ever, returned unchanged afterwards (leads captured earlier are not sent)."""
        ...

    async def positions(self) -> dict[int, int]:
        """The log positions taken in: partition -> the next offset to read."""
        ...

    async def states(self, conversation_ids: Sequence[str]) -> dict[str, ConversationState]:
        """The kept states of those conversations that have one."""
        ...

    async def take_in(
        self,
        states: Mapping[str, ConversationState | None],
        deliveries: Sequence[Delivery],
        positions: Mapping[int, int],
    ) -> int:
        """Atomically: keep (or, for None, forget) ``states``, add the deliveries
        whose id is new (an existing one is left as it is), and record
        ``positions``. Returns how many deliveries were new."""
        ...

    async def claim_due(self, now: float, limit: int, lease: float) -> list[Delivery]:
        """Up to ``limit`` pending deliveries due at ``now``, oldest due first, each
        claimed until ``now + lease`` (another claim does not return it meanwhile)."""
        ...

    async def save(self, delivery: Delivery) -> None:
        """Store a delivery after an attempt (or a deferral): a pending one is due
        at its ``next_at`` and claimable again; the others leave the due set."""
        ...

    async def get(self, delivery_id: str) -> Delivery | None: ...

    async def page(
        self,
        site_id: str | None,
        status: Status | None,
        limit: int,
        cursor: str | None = None,
    ) -> Page:
        """Deliveries newest first (by creation), filtered by site and status."""
        ...

    async def delivered_since(
        self, site_id: str, since: float, destination: str | None
    ) -> list[Delivery]:
        """A site's delivered deliveries whose lead was captured at or after ``since``."""
        ...

    async def summary(self, site_id: str | None = None) -> Summary: ...

    async def disable(self, site_id: str, destination: str, reason: str, at: float) -> None:
        """Mark a destination disabled (a 410 Gone), until :meth:`enable`."""
        ...

    async def enable(self, site_id: str, destination: str) -> bool: ...

    async def disabled(self) -> dict[tuple[str, str], str]:
        """(site, destination) -> why it is disabled."""
        ...

    async def forget_states_before(self, updated_before: float) -> int:
        """Drop the states of conversations untouched since then (abandoned)."""
        ...
