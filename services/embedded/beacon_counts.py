"""The embedded mode's beacon counters (services.beacons): a SQLite file of their own,
``beacons.db`` in the data directory, beside (not inside) the read models: beacons are
not events, so a rebuild of the read models from the log must not drop them, and
their writes do not queue behind the event log's."""

from __future__ import annotations

import sqlite3

from services.embedded.sqlite_worker import SqliteAdapter

BEACONS_DB = "beacons.db"


class SqliteBeaconCounts(SqliteAdapter):
    """:class:`services.beacons.BeaconCounts` on SQLite; the worker groups the writes
    of concurrent beacons into one transaction."""

    schema = """
CREATE TABLE IF NOT EXISTS beacon_counts (
    key TEXT NOT NULL,
    field TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (key, field)
) WITHOUT ROWID;
"""

    async def add(self, counters: list[tuple[str, str]]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO beacon_counts (key, field, value) VALUES (?, ?, 1) "
                "ON CONFLICT (key, field) DO UPDATE SET value = value + 1",
                counters,
            )

        await self._writer.write(write)

    async def counters(self, key: str) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            cur = conn.execute("SELECT field, value FROM beacon_counts WHERE key = ?", (key,))
            return {field: int(value) for field, value in cur}

        return await self._reader.read(read)
