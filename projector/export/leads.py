"""Opening the leads of an export made with ``--include-pii``.

Keys are read, never created: the embedded key file is opened read-only (a
missing file means every lead is erased), Redis is only read with GET. A
lead whose key is gone (erased) or whose blob will not open is exported as
erased. Nothing here logs or prints a field.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Protocol

import orjson

from projector.export.columns import OpenedLead
from projector.export.raw import Obj
from schemas.events import LeadCaptured
from services.conversation.sealing import AesGcmSealer, Unsealable
from services.embedded.sqlite_thread import ThreadOwnedConnection

KEYS_DB = "keys.db"  # app.embedded.KEYS_DB
_IN_CHUNK = 500
_MGET_CHUNK = 1_000


class LeadKeys(Protocol):
    async def get_many(self, conversation_ids: Sequence[str]) -> dict[str, bytes]:
        """The keys that exist among these conversations'."""
        ...

    async def close(self) -> None: ...


class SqliteLeadKeys:
    """``keys.db`` of a data directory, read-only."""

    def __init__(self, data_dir: Path) -> None:
        path = data_dir / KEYS_DB
        self._conn = ThreadOwnedConnection(path) if path.exists() else None

    @staticmethod
    def _select(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT conversation_id, key FROM conversation_keys"
                f" WHERE conversation_id IN ({marks})",
                chunk,
            )
            found.update((cid, bytes(key)) for cid, key in rows)
        return found

    async def get_many(self, conversation_ids: Sequence[str]) -> dict[str, bytes]:
        if self._conn is None:
            return {}
        return await self._conn.call(partial(self._select, ids=conversation_ids))

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class RedisLeadKeys:
    """The distributed mode's key store (``LEADFLOW_REDIS_URL``), read with MGET
    (a thousand keys a round trip) under :class:`RedisKeyStore`'s key names."""

    def __init__(self, url: str, prefix: str) -> None:
        from services.distributed.redis_client import redis_client

        self._redis = redis_client(url)
        self._prefix = f"{prefix}key:"  # services.distributed.redis_keystore.RedisKeyStore

    async def get_many(self, conversation_ids: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for i in range(0, len(conversation_ids), _MGET_CHUNK):
            chunk = conversation_ids[i : i + _MGET_CHUNK]
            values = await self._redis.mget([self._prefix + cid for cid in chunk])
            found.update(
                (cid, v) for cid, v in zip(chunk, values, strict=True) if isinstance(v, bytes)
            )
        return found

    async def close(self) -> None:
        await self._redis.aclose()


def open_sealed(sealed: str, event_id: str, key: bytes | None) -> OpenedLead:
    """A lead's details opened with its conversation's key; erased without it."""
    if key is None:
        return OpenedLead(None)
    try:
        fields = orjson.loads(AesGcmSealer(key).open(sealed, event_id))
    except (Unsealable, ValueError):
        return OpenedLead(None)
    if not isinstance(fields, dict):
        return OpenedLead(None)
    return OpenedLead({str(k): str(v) for k, v in fields.items()})


def open_lead(event: LeadCaptured, key: bytes | None) -> OpenedLead:
    return open_sealed(event.sealed, event.id, key)


async def open_leads(objs: Sequence[Obj], keys: LeadKeys) -> dict[str, OpenedLead]:
    """The opened details of every ``LeadCaptured`` object, by event id."""
    leads = [o for o in objs if o["type"] == "LeadCaptured"]
    if not leads:
        return {}
    found = await keys.get_many(sorted({o["conversation_id"] for o in leads}))
    return {
        o["id"]: open_sealed(o["sealed"], o["id"], found.get(o["conversation_id"])) for o in leads
    }
