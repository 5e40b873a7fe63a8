"""The LogFollower contract (tests/support/log_follower_contract.py) on the
SQLite follower over a real events.db and on the Kafka follower over a real
broker (its manual and consumer-group variants); the unit tier runs the same
cases on the in-memory fake."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.distributed.kafka_follower import KafkaLogFollower
from services.distributed.settings import KafkaSettings
from services.distributed.topics import TopicSpec, ensure_topics
from services.embedded.sqlite_eventlog import SqliteEventLog
from services.embedded.sqlite_follower import SqliteLogFollower, bounds_sql
from services.log_follower import LogFollower, bounded_range, read_bounded
from tests.support.log_follower_contract import LogFollowerContract, Put


class SqliteHarness:
    """Rows inserted as the event log inserts them, by a writer connection of its own."""

    partitions = 1
    gaps = False
    tombstones = False
    groups = False

    def __init__(self, path: Path) -> None:
        self.path = path
        log = SqliteEventLog(path)  # creates the schema
        log.start()
        log.close()
        self._seq = 0

    def follower(self, group_id: str | None = None) -> LogFollower:
        assert group_id is None
        return SqliteLogFollower(self.path)

    async def append(self, puts: Sequence[Put]) -> list[int]:
        rows = []
        for put in puts:
            assert put.partition == 0 and put.value is not None
            self._seq += 1
            rows.append(
                (f"id-{self._seq}", put.key.decode(), self._seq, "X", put.timestamp, put.value)
            )

        def insert() -> list[int]:
            with sqlite3.connect(self.path) as conn:
                return [
                    int(
                        conn.execute(
                            "INSERT INTO events (id, conversation_id, seq, type, at, body)"
                            " VALUES (?, ?, ?, ?, ?, ?) RETURNING position",
                            row,
                        ).fetchone()[0]
                    )
                    for row in rows
                ]

        return await asyncio.to_thread(insert)

    async def append_aborted(self, partition: int, values: Sequence[bytes]) -> None:
        raise AssertionError("SQLite has no aborted transactions in its log")

    def where(self, partition: int, offset: int) -> str:
        return f"events.db position {offset}"


class TestSqliteLogFollower(LogFollowerContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> SqliteHarness:
        return SqliteHarness(tmp_path / "events.db")


async def test_the_sqlite_follower_reads_the_journal_with_its_columns_as_headers(
    tmp_path: Path,
) -> None:
    from schemas.commands import StartConversation
    from tests.support.log_follower_contract import started

    log = SqliteEventLog(tmp_path / "events.db")
    log.start()
    try:
        command = StartConversation(conversation_id="c1", seq=1, at=5.0, flow_id="f", site_id="s")
        await log.append([started("c1")], command)
    finally:
        log.close()
    follower = SqliteLogFollower(tmp_path / "events.db", table="commands")
    await follower.start()
    try:
        await follower.seek(0, None)
        (record,) = await follower.poll()
        assert (record.offset, record.key, record.timestamp) == (1, b"c1", 5.0)
        assert record.header("type") == b"StartConversation"
        assert record.header("event_seq") == b"1"
        assert follower.name == "events.db commands"
    finally:
        await follower.stop()


async def test_a_sqlite_follower_of_some_types_skips_the_rows_between_and_moves_past_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    SqliteHarness(path)  # the schema
    kinds = ["A", "Lead", "A", "A", "Lead", "Lead", "A", "Lead", "A", "A"]

    def insert(kinds: Sequence[str], first: int) -> None:
        with sqlite3.connect(path) as conn:
            conn.executemany(
                "INSERT INTO events (id, conversation_id, seq, type, at, body)"
                " VALUES (?, 'c', ?, ?, 1.0, ?)",
                [(f"id-{i}", i, kind, kind.encode()) for i, kind in enumerate(kinds, first)],
            )

    insert(kinds, 1)
    follower = SqliteLogFollower(path, types=("Lead",))
    await follower.start()
    try:
        await follower.seek(0, None)
        first = await follower.poll(max_records=2)  # a full chunk: read ahead from there
        rest = await follower.poll(max_records=2)
        last = await follower.poll(max_records=2, wait=0.0)
        assert [r.offset for r in first + rest + last] == [2, 5, 6, 8]
        assert {r.header("type") for r in first + rest + last} == {b"Lead"}
        assert await follower.poll(max_records=2, wait=0.0) == []
        assert await follower.position(0) == 11  # past the trailing rows of other types
        insert(["A", "A"], 11)
        assert await follower.poll(wait=0.0) == []
        assert await follower.position(0) == 13 and follower.lag() == {0: 0}
        insert(["Lead"], 13)
        assert [r.offset for r in await follower.poll(wait=0.0)] == [13]
    finally:
        await follower.stop()


def test_a_logs_bounds_are_found_without_scanning_it(tmp_path: Path) -> None:
    SqliteHarness(tmp_path / "events.db")
    with sqlite3.connect(tmp_path / "events.db") as conn:
        steps = [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {bounds_sql('events')}")]
    assert not any(step.startswith("SCAN events") for step in steps), steps
    assert sum(step.startswith("SEARCH events") for step in steps) == 2, steps


class KafkaHarness:
    """A topic of its own on the session's broker; records produced to explicit
    partitions by an idempotent producer, aborted ones by a transactional one."""

    partitions = 2
    gaps = True
    tombstones = True
    groups = True

    def __init__(self, bootstrap: str) -> None:
        self.settings = KafkaSettings(
            bootstrap=bootstrap, prefix=f"f{uuid.uuid4().hex[:8]}.", partitions=self.partitions
        )
        self.topic = self.settings.events_topic
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )

    async def start(self) -> None:
        await ensure_topics(self.settings, [TopicSpec(self.topic, self.partitions, 1)])
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    def follower(self, group_id: str | None = None) -> LogFollower:
        return KafkaLogFollower(
            self.settings, self.topic, group_id=group_id, session_timeout_ms=6_000
        )

    async def append(self, puts: Sequence[Put]) -> list[int]:
        sent = [
            await self.producer.send(
                self.topic,
                value=put.value,
                key=put.key,
                partition=put.partition,
                timestamp_ms=round(put.timestamp * 1000),
            )
            for put in puts
        ]
        return [(await future).offset for future in sent]

    async def append_aborted(self, partition: int, values: Sequence[bytes]) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap,
            enable_idempotence=True,
            transactional_id=f"{self.settings.prefix}contract-{uuid.uuid4().hex[:6]}",
        )
        await producer.start()
        try:
            await producer.begin_transaction()
            for value in values:
                await producer.send_and_wait(self.topic, value=value, partition=partition)
            await producer.abort_transaction()
        finally:
            await producer.stop()
        await self._wait_stable()

    async def _end(self, isolation_level: str) -> dict[TopicPartition, int]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap,
            group_id=None,
            isolation_level=isolation_level,
        )
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            return ends
        finally:
            await consumer.stop()

    async def _wait_stable(self, within: float = 30.0) -> None:
        """Until the abort markers are written (last stable offset = high watermark)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await self._end("read_committed") == await self._end("read_uncommitted"):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("transaction markers not written in time")

    def where(self, partition: int, offset: int) -> str:
        return f"events partition {partition} offset {offset}"


class TestKafkaLogFollower(LogFollowerContract):
    @pytest.fixture
    async def harness(self, kafka_bootstrap: str) -> AsyncIterator[KafkaHarness]:
        harness = KafkaHarness(kafka_bootstrap)
        await harness.start()
        yield harness
        await harness.stop()


async def test_a_manual_kafka_follower_reads_only_the_partitions_it_was_given(
    kafka_bootstrap: str,
) -> None:
    harness = KafkaHarness(kafka_bootstrap)
    await harness.start()
    try:
        await harness.append([Put(0, b"zero"), Put(1, b"one")])
        follower = KafkaLogFollower(harness.settings, harness.topic, partitions=[1])
        await follower.start()
        try:
            assert follower.assigned() == [1]
            start, end = await bounded_range(follower)
            assert (start, end) == ({1: 0}, {1: 1})
            values = [r.value async for c in read_bounded(follower, start, end) for r in c.records]
            assert values == [b"one"]
        finally:
            await follower.stop()
        missing = KafkaLogFollower(harness.settings, f"{harness.settings.prefix}nothing")
        await missing.start()
        try:
            assert missing.assigned() == []  # no such topic: no partitions
            assert await missing.end_offsets() == {}
        finally:
            await missing.stop()
    finally:
        await harness.stop()
