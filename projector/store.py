"""The read-model store port: one Protocol, a Redis adapter, a SQLite adapter, a fake.

Everything is kept under a *namespace*. Readers always read the current one; a
rebuild (``leadflow replay``) fills a fresh namespace, records how far into
the log it got (its *frontier*), switches the pointer atomically, and drops
the old namespace. A live projector writes with ``live=True``: a write into a
namespace that is no longer current is refused (``MOVED``) atomically with the
check, so nothing is ever written into a namespace after its replacement.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from projector.views import ConversationView, LeadView
from projector.write_set import WriteSet


class Outcome(enum.IntEnum):
    """What became of one write set."""

    APPLIED = 1
    DUPLICATE = 0  # the store already holds new_seq (a replayed event): nothing written
    CONFLICT = -1  # the store holds neither base_seq nor new_seq: reload and plan again
    MOVED = -2  # live write into a namespace that is no longer current: nothing written


@dataclass(frozen=True, slots=True)
class LeadsPage:
    leads: list[LeadView]
    next_cursor: str | None


class BadCursor(ValueError):
    pass


def encode_cursor(captured_at: float, conversation_id: str) -> str:
    """An opaque keyset cursor: the last lead of a page, ordered (captured_at, id) desc."""
    raw = orjson.dumps([repr(captured_at), conversation_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw: Any = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at, cid = raw
        return float(at), str(cid)
    except (ValueError, TypeError) as exc:
        raise BadCursor("invalid cursor") from exc


def after_cursor(lead: LeadView, cursor: tuple[float, str] | None) -> bool:
    """True when ``lead`` comes after ``cursor`` in (captured_at, id) descending order."""
    if cursor is None:
        return True
    at, cid = cursor
    return lead.captured_at < at or (lead.captured_at == at and lead.conversation_id < cid)


class ReadModelStore(Protocol):
    """Where projections are written and read. Adapters: Redis (distributed),
    SQLite (embedded), in memory (tests). One contract suite runs on all three."""

    # -- writing -------------------------------------------------------------
    async def current_namespace(self) -> str:
        """The namespace readers read; created on first use."""
        ...

    async def load_views(
        self, namespace: str, conversation_ids: Collection[str]
    ) -> dict[str, ConversationView]:
        """The stored views of those conversations that have one."""
        ...

    async def apply(
        self, namespace: str, write_sets: Sequence[WriteSet], *, live: bool
    ) -> list[Outcome]:
        """Apply each write set atomically with its seq check, all in one round trip."""
        ...

    # -- rebuilding ----------------------------------------------------------
    async def new_namespace(self) -> str: ...

    async def set_frontier(
        self, namespace: str, frontier: Mapping[str, int], *, live: bool = False
    ) -> None:
        """Record how far into the log this namespace holds: the next offset per
        partition (or the SQLite log's last position). Merges into what is
        there. A rebuild sets it before switching; the live projector keeps it
        current after every batch, and with ``live`` it is written only while
        ``namespace`` is current (atomically with that check), so a replaced
        and dropped namespace is never written again."""
        ...

    async def frontier(self, namespace: str) -> dict[str, int]: ...

    async def switch_to(self, namespace: str) -> str:
        """Make ``namespace`` current, atomically; returns the previous one."""
        ...

    async def drop_namespace(self, namespace: str) -> int:
        """Delete a (non-current) namespace; returns how many entries went."""
        ...

    # -- reading (the current namespace) --------------------------------------
    async def conversation(self, conversation_id: str) -> ConversationView | None: ...

    async def transcript(
        self, conversation_id: str, after_seq: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]: ...

    async def lead(self, conversation_id: str) -> LeadView | None: ...

    async def leads(self, site_id: str, cursor: str | None = None, limit: int = 50) -> LeadsPage:
        """A site's leads, newest first, keyset-paginated."""
        ...

    async def counters(self, key: str) -> dict[str, int]:
        """A counter hash: a funnel or a daily rollup (keys in :mod:`projector.write_set`)."""
        ...

    async def mark_erased(self, conversation_id: str) -> bool:
        """Blank a lead's sealed details (its key is deleted separately)."""
        ...

    async def ping(self) -> bool: ...
