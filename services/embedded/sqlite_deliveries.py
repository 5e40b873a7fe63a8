"""The delivery worker's state in SQLite (the embedded mode): deliveries.db.

A file of its own, apart from the event log, in WAL mode. Writes go through one
:class:`~services.embedded.sqlite_worker.SqliteWorker` thread (each job one
transaction, or a savepoint in a group commit), reads through another, so the
event loop never waits on the disk. :meth:`SqliteDeliveryStore.take_in` is one
job: states, new deliveries and positions commit together or not at all.

A claim sets ``claimed_until`` on the row; a due delivery is a pending row with
``next_at <= now`` and ``claimed_until <= now``. Claims are writes, and the
writer thread (and ``BEGIN IMMEDIATE`` across processes) serialises them, so
two claimers never take the same row. :meth:`save` clears the claim.

The schema version is ``PRAGMA user_version``; a file written by a newer
Leadflow is refused rather than misread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from services.conversation.state import ConversationState
from services.conversation.state_codec import decode_state, encode_state
from services.delivery.model import STATUSES, Delivery, Status, decode_delivery, encode_delivery
from services.delivery.store import Page, Summary
from services.embedded.sqlite_worker import SqliteWorker

SCHEMA_VERSION = 1
CHUNK = 500  # bound variables per statement, under old builds' 999
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS deliveries (
        created_seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        site_id TEXT NOT NULL,
        destination TEXT NOT NULL,
        status TEXT NOT NULL,
        next_at REAL NOT NULL,
        claimed_until REAL NOT NULL DEFAULT 0,
        captured_at REAL NOT NULL,
        body BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at)",
    "CREATE INDEX IF NOT EXISTS deliveries_site ON deliveries (site_id, created_seq)",
    "CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (status, created_seq)",
    """CREATE TABLE IF NOT EXISTS conversation_states (
        conversation_id TEXT PRIMARY KEY,
        updated_at REAL NOT NULL,
        body BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS states_updated ON conversation_states (updated_at)",
    """CREATE TABLE IF NOT EXISTS positions (
        partition INTEGER PRIMARY KEY,
        next_offset INTEGER NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL NOT NULL)",
    """CREATE TABLE IF NOT EXISTS disabled_destinations (
        site_id TEXT NOT NULL,
        destination TEXT NOT NULL,
        reason TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (site_id, destination)
    )""",
)
UPSERT = """INSERT INTO deliveries
    (id, site_id, destination, status, next_at, captured_at, body) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET status = excluded.status, next_at = excluded.next_at,
    claimed_until = 0, body = excluded.body"""


class NewerSchema(RuntimeError):
    """deliveries.db was written by a newer Leadflow: upgrade, do not downgrade."""


def _row(d: Delivery) -> tuple[str, str, str, str, float, float, bytes]:
    body = encode_delivery(d)
    return (d.id, d.site_id, d.destination, d.status, d.next_at, d.lead.captured_at, body)


def _where(site_id: str | None, status: Status | None) -> tuple[str, list[object]]:
    clauses, args = [], list[object]()
    if site_id is not None:
        clauses.append("site_id = ?")
        args.append(site_id)
    if status is not None:
        clauses.append("status = ?")
        args.append(status)
    return " AND ".join(clauses) or "1", args


def pack_state(state: ConversationState) -> bytes:
    """A state as stored: its JSON, deflated (1.3 KB to 0.5 KB on average, which
    keeps it within one 1 KiB page instead of a chain of overflow pages that
    every update rewrote: about 7 of the 22 pages an intake commit wrote)."""
    return zlib.compress(encode_state(state), 1)


def unpack_state(body: bytes) -> ConversationState:
    """A stored state; one written before states were deflated is plain JSON
    (a zlib stream never starts with ``{``)."""
    return decode_state(body if body[:1] == b"{" else zlib.decompress(body))


class SqliteDeliveryStore:
    """:class:`~services.delivery.store.DeliveryStore` on one SQLite file."""

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.path = path
        self._writer = SqliteWorker(path, "", synchronous, checkpoints=True)
        self._reader = SqliteWorker(path, "", synchronous)
        self._started = False

    async def start(self) -> None:
        await asyncio.to_thread(self._writer.start)
        self._started = True
        try:
            await self._writer.write(_migrate)
            await asyncio.to_thread(self._reader.start)
        except BaseException:
            await self.close()
            raise

    async def release_claims(self) -> int:
        """Forget every claim: for the one worker that owns this file (``leadflow
        serve``), at its start, since claims left by a killed process are stale
        and would otherwise hold their deliveries for a whole lease. Returns how
        many were released. Never from a second process beside a running worker."""

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE deliveries SET claimed_until = 0 WHERE claimed_until > 0"
            ).rowcount

        released: int = await self._writer.write(run)
        return released

    async def close(self) -> None:
        if self._started:
            self._started = False
            await asyncio.to_thread(self._reader.close)
            await asyncio.to_thread(self._writer.close)

    async def deliver_since(self, now: float) -> float:
        def run(conn: sqlite3.Connection) -> float:
            conn.execute(
                "INSERT INTO meta VALUES ('deliver_since', ?) ON CONFLICT DO NOTHING", (now,)
            )
            since: float = conn.execute(
                "SELECT value FROM meta WHERE name = 'deliver_since'"
            ).fetchone()[0]
            return since

        return await self._writer.write(run)

    async def positions(self) -> dict[int, int]:
        def run(conn: sqlite3.Connection) -> dict[int, int]:
            return dict(conn.execute("SELECT partition, next_offset FROM positions"))

        return await self._reader.read(run)

    async def states(self, conversation_ids: Sequence[str]) -> dict[str, ConversationState]:
        wanted = list(dict.fromkeys(conversation_ids))

        def run(conn: sqlite3.Connection) -> dict[str, ConversationState]:
            out: dict[str, ConversationState] = {}
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                cur = conn.execute(
                    "SELECT conversation_id, body FROM conversation_states"
                    f" WHERE conversation_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                out.update((cid, unpack_state(bytes(body))) for cid, body in cur)
            return out

        return await self._reader.read(run) if wanted else {}

    async def take_in(
        self,
        states: Mapping[str, ConversationState | None],
        deliveries: Sequence[Delivery],
        positions: Mapping[int, int],
    ) -> int:
        kept = [(c, s.updated_at, s) for c, s in states.items() if s is not None]
        gone = [(c,) for c, s in states.items() if s is None]
        rows = [_row(d) for d in deliveries]

        def run(conn: sqlite3.Connection) -> int:
            packed = [(c, at, pack_state(s)) for c, at, s in kept]  # in the writer's thread
            conn.executemany("INSERT OR REPLACE INTO conversation_states VALUES (?, ?, ?)", packed)
            conn.executemany("DELETE FROM conversation_states WHERE conversation_id = ?", gone)
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO deliveries (id, site_id, destination, status, next_at, captured_at,"
                " body) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                rows,
            )
            new = conn.total_changes - before
            conn.executemany(
                "INSERT INTO positions VALUES (?, ?)"
                " ON CONFLICT (partition) DO UPDATE SET next_offset = excluded.next_offset",
                list(positions.items()),
            )
            return new

        return await self._writer.write(run)

    async def claim_due(self, now: float, limit: int, lease: float) -> list[Delivery]:
        def run(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute(
                "SELECT created_seq, body FROM deliveries WHERE status = 'pending'"
                " AND next_at <= ? AND claimed_until <= ? ORDER BY next_at, id LIMIT ?",
                (now, now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE deliveries SET claimed_until = ? WHERE created_seq = ?",
                [(now + lease, seq) for seq, _ in rows],
            )
            return [bytes(body) for _, body in rows]

        if limit <= 0:
            return []
        return [decode_delivery(body) for body in await self._writer.write(run)]

    async def save(self, delivery: Delivery) -> None:
        row = _row(delivery)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(UPSERT, row)

        await self._writer.write(run)

    async def get(self, delivery_id: str) -> Delivery | None:
        def run(conn: sqlite3.Connection) -> bytes | None:
            found = conn.execute(
                "SELECT body FROM deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
            return None if found is None else bytes(found[0])

        body = await self._reader.read(run)
        return None if body is None else decode_delivery(body)

    async def page(
        self,
        site_id: str | None,
        status: Status | None,
        limit: int,
        cursor: str | None = None,
    ) -> Page:
        """The cursor is the last row's ``created_seq``: rows added later sort above it."""
        where, args = _where(site_id, status)
        if cursor:
            where += " AND created_seq < ?"
            args.append(int(cursor))

        def run(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
            return conn.execute(
                f"SELECT created_seq, body FROM deliveries WHERE {where}"
                " ORDER BY created_seq DESC LIMIT ?",
                (*args, limit + 1),
            ).fetchall()

        rows = await self._reader.read(run)
        shown = rows[:limit]
        more = len(rows) > limit and bool(shown)
        return Page(
            [decode_delivery(bytes(body)) for _, body in shown],
            str(shown[-1][0]) if more else None,
        )

    async def delivered_since(
        self, site_id: str, since: float, destination: str | None
    ) -> list[Delivery]:
        where = "site_id = ? AND status = 'delivered' AND captured_at >= ?"
        args: list[object] = [site_id, since]
        if destination is not None:
            where += " AND destination = ?"
            args.append(destination)

        def run(conn: sqlite3.Connection) -> list[bytes]:
            cur = conn.execute(
                f"SELECT body FROM deliveries WHERE {where} ORDER BY created_seq", args
            )
            return [bytes(body) for (body,) in cur]

        return [decode_delivery(body) for body in await self._reader.read(run)]

    async def summary(self, site_id: str | None = None) -> Summary:
        where, args = _where(site_id, None)

        def run(conn: sqlite3.Connection) -> Summary:
            counts: dict[Status, int] = {}
            for status, count in conn.execute(
                f"SELECT status, COUNT(*) FROM deliveries WHERE {where} GROUP BY status", args
            ):
                if status in STATUSES:
                    counts[status] = count
            oldest = conn.execute(
                f"SELECT MIN(captured_at) FROM deliveries WHERE {where} AND status = 'pending'",
                args,
            ).fetchone()[0]
            return Summary(counts, oldest)

        return await self._reader.read(run)

    async def disable(self, site_id: str, destination: str, reason: str, at: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO disabled_destinations VALUES (?, ?, ?, ?)",
                (site_id, destination, reason, at),
            )

        await self._writer.write(run)

    async def enable(self, site_id: str, destination: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM disabled_destinations WHERE site_id = ? AND destination = ?",
                (site_id, destination),
            )
            return cur.rowcount > 0

        return await self._writer.write(run)

    async def disabled(self) -> dict[tuple[str, str], str]:
        def run(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
            cur = conn.execute("SELECT site_id, destination, reason FROM disabled_destinations")
            return {(site, dest): reason for site, dest, reason in cur}

        return await self._reader.read(run)

    async def forget_states_before(self, updated_before: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM conversation_states WHERE updated_at < ?", (updated_before,)
            )
            return cur.rowcount

        return await self._writer.write(run)


def _migrate(conn: sqlite3.Connection) -> None:
    """Create the schema in the writer's transaction, or refuse a newer file."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        raise NewerSchema(
            f"{path}: delivery store schema version {version} is newer than this"
            f" Leadflow understands ({SCHEMA_VERSION}); run a newer Leadflow on it"
        )
    for statement in SCHEMA:
        conn.execute(statement)
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
