"""A partition's conversation states: the hot ones in memory, the rest on local disk.

A processor keeps every conversation it has seen on a partition, because any
of them may send another command (a visitor resumes a conversation weeks
later, with a token that is still valid). Held as objects, that grew without
bound: about 2.4 KB per conversation, every conversation since the topic was
created. :class:`StateCache` holds at most ``capacity`` decoded states in
memory, the most recently written ones; older ones move, encoded, to a SQLite
file on local disk (the spill file) and are read back from it on demand.

The spill file is a cache of the changelog, not a second truth: it is created
empty each time the partition is taken over (the states are recovered from
the changelog and the events after it, as before) and deleted when the
partition is let go. So it needs no durability (no fsync, no journal) and
survives nothing; a kill -9 leaves a file the next start removes.

Reads do not promote a state into memory: a command that changes a
conversation writes its new state, which is what makes it hot. So iterating
over every state (the timers at recovery) does not churn the memory part.

Blocking SQLite calls run on the event loop: a read by primary key on a local
file takes tens of microseconds, and spills are written in groups.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from pathlib import Path

from services.conversation.state import ConversationState
from services.conversation.state_codec import decode_state, encode_state

DEFAULT_CAPACITY = 10_000
"""States per partition held in memory: ~24 MB at ~2.4 KB a state, so twelve
partitions on one processor stay well inside its 1 GiB limit (deploy/k8s)."""

SPILL_CHUNK = 256  # states moved to the spill file per write


class StateCache(MutableMapping[bytes, ConversationState]):
    """``capacity`` None: everything in memory (tests, tools). Otherwise states
    beyond it go to ``spill_path`` (created, or emptied, on first use)."""

    def __init__(self, capacity: int | None = None, spill_path: Path | None = None) -> None:
        if capacity is not None and (capacity < 1 or spill_path is None):
            raise ValueError("a bounded state cache needs a capacity of 1 or more and a file")
        self.capacity = capacity
        self.spill_path = spill_path
        self._hot: OrderedDict[bytes, ConversationState] = OrderedDict()
        self._db: sqlite3.Connection | None = None
        self._spilled = 0

    # -- the mapping -------------------------------------------------------

    def __getitem__(self, key: bytes) -> ConversationState:
        state = self._hot.get(key)
        if state is not None:
            return state
        if self._db is not None:
            row = self._db.execute("SELECT state FROM states WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return decode_state(row[0])
        raise KeyError(key)

    def __setitem__(self, key: bytes, state: ConversationState) -> None:
        if key in self._hot:
            self._hot.move_to_end(key)
        elif self._spilled:  # a state lives in one place: memory or the file
            assert self._db is not None
            self._spilled -= self._db.execute("DELETE FROM states WHERE key = ?", (key,)).rowcount
        self._hot[key] = state
        if self.capacity is not None and len(self._hot) > self.capacity:
            # down to a little under the capacity: one write moves a group of states
            low = self.capacity - min(SPILL_CHUNK, self.capacity // 4)
            self._spill(len(self._hot) - low)

    def __delitem__(self, key: bytes) -> None:
        if self._hot.pop(key, None) is not None:
            return  # a state lives in one place: memory or the file
        deleted = 0
        if self._spilled:
            assert self._db is not None
            deleted = self._db.execute("DELETE FROM states WHERE key = ?", (key,)).rowcount
            self._spilled -= deleted
        if not deleted:
            raise KeyError(key)

    def __iter__(self) -> Iterator[bytes]:
        yield from list(self._hot)
        if self._db is not None:
            for (key,) in self._db.execute("SELECT key FROM states").fetchall():
                yield key

    def __len__(self) -> int:
        return len(self._hot) + self._spilled

    def __contains__(self, key: object) -> bool:
        if key in self._hot:
            return True
        if self._db is None or not isinstance(key, bytes):
            return False
        return self._db.execute("SELECT 1 FROM states WHERE key = ?", (key,)).fetchone() is not None

    def states(self) -> Iterator[ConversationState]:
        """Every state, the hot ones first, without moving any into memory."""
        yield from list(self._hot.values())
        if self._db is None:
            return
        rows = self._db.execute("SELECT key, state FROM states")  # never in memory too
        while chunk := rows.fetchmany(SPILL_CHUNK):
            for _, data in chunk:
                yield decode_state(data)

    @property
    def in_memory(self) -> int:
        return len(self._hot)

    @property
    def spilled(self) -> int:
        return self._spilled

    # -- the spill file ----------------------------------------------------

    def _spill(self, count: int) -> None:
        """Move the ``count`` least recently written states to the file."""
        db = self._open()
        rows = []
        for _ in range(min(count, len(self._hot))):
            key, state = self._hot.popitem(last=False)
            rows.append((key, encode_state(state)))
        db.executemany("INSERT INTO states (key, state) VALUES (?, ?)", rows)
        self._spilled += len(rows)

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            assert self.spill_path is not None
            self.spill_path.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("", "-journal", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{self.spill_path}{suffix}").unlink()
            db = sqlite3.connect(self.spill_path, isolation_level=None)
            db.execute("PRAGMA journal_mode=OFF")  # a cache: rebuilt from the changelog
            db.execute("PRAGMA synchronous=OFF")
            db.execute("CREATE TABLE states (key BLOB PRIMARY KEY, state BLOB NOT NULL)")
            self._db = db
        return self._db

    def close(self) -> None:
        """Drop the spill file (the partition is let go, or taken over again)."""
        self._hot.clear()
        self._spilled = 0
        if self._db is not None:
            self._db.close()
            self._db = None
            assert self.spill_path is not None
            with contextlib.suppress(FileNotFoundError):
                self.spill_path.unlink()
