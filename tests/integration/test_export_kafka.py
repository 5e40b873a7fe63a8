"""``leadflow export --kafka`` and ``load_events(kafka=...)`` on a real broker.

Records are produced as the processor produces them (one record per command,
keyed by conversation, timestamped at or after the events' time), some of
them in an aborted transaction.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from app.cli import main
from projector.export import load_events
from projector.export.arrow import schema
from schemas.events import ConversationStarted, Event, LeadCaptured
from tests.support.distributed import Cluster
from tests.support.export_logs import cohort, type_counts
from tests.support.projection import command_records
from tests.support.server import free_port
from tests.support.traffic import Traffic, simulate

CONVERSATIONS = 300


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return asyncio.run(simulate(CONVERSATIONS, seed=21, prefix="k"))


@pytest.fixture
def cluster(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """The shared cluster, with its settings in this process's environment (the CLI
    under test reads them there)."""
    for name, value in cluster.env.items():
        monkeypatch.setenv(name, value)
    return cluster


async def _produce(
    cluster: Cluster, events: Sequence[Event], aborted: Sequence[Event] = ()
) -> None:
    """Each command's record timestamped 50 ms after its events (as the processor
    does, after the gateway stamped them); ``aborted`` in an aborted transaction."""
    producer = AIOKafkaProducer(
        bootstrap_servers=cluster.bootstrap,
        acks="all",
        enable_idempotence=True,
        transactional_id=f"{cluster.prefix}export-test",
    )
    topic = f"{cluster.prefix}events"
    await producer.start()
    try:
        for records, commit in ((command_records(events), True), (command_records(aborted), False)):
            if not records:
                continue
            async with producer.transaction() if commit else _aborting(producer):
                for cid, value in records:
                    at = orjson.loads(value)["events"][0]["at"]
                    await producer.send(
                        topic, key=cid.encode(), value=value, timestamp_ms=int(at * 1000) + 50
                    )
    finally:
        await producer.stop()


class _aborting:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def __aenter__(self) -> None:
        await self._producer.begin_transaction()

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.abort_transaction()


async def _end_offsets(cluster: Cluster, isolation_level: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=cluster.bootstrap, group_id=None, isolation_level=isolation_level
    )
    await consumer.start()
    try:
        tps = [TopicPartition(f"{cluster.prefix}events", p) for p in range(cluster.partitions)]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        return ends
    finally:
        await consumer.stop()


async def _wait_stable(cluster: Cluster, within: float = 30.0) -> None:
    """Until every transaction's markers are written (last stable offset = high
    watermark): a committed transaction is exported only from then on."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        stable = await _end_offsets(cluster, "read_committed")
        if stable == await _end_offsets(cluster, "read_uncommitted"):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("transaction markers not written in time")


def produce(cluster: Cluster, events: Sequence[Event], aborted: Sequence[Event] = ()) -> None:
    asyncio.run(_produce(cluster, events, aborted))
    asyncio.run(_wait_stable(cluster))


async def _commit_for_group(cluster: Cluster, group: str, offset: int) -> None:
    """Stand in for a live projector: a group with committed offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=cluster.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(f"{cluster.prefix}events", p) for p in range(cluster.partitions)]
        consumer.assign(tps)
        await consumer.commit({tp: offset for tp in tps})
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


async def _groups(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {group[0] for group in await admin.list_consumer_groups()}
    finally:
        await admin.close()


def export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["export", "--kafka", *args])
    out, err = capsys.readouterr()
    return code, out, err


def per_conversation(ids_and_cids: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for event_id, cid in ids_and_cids:
        out.setdefault(cid, []).append(event_id)
    return out


def exported(path: Path) -> dict[str, list[str]]:
    table = pq.read_table(path, columns=["event_id", "conversation_id"])
    ids = table.column("event_id").to_pylist()
    return per_conversation(
        list(zip(ids, table.column("conversation_id").to_pylist(), strict=True))
    )


def expected(events: Sequence[Event]) -> dict[str, list[str]]:
    return per_conversation([(e.id, e.conversation_id) for e in events])


def test_export_reads_every_committed_event_and_leaves_no_trace_in_kafka(
    cluster: Cluster, traffic: Traffic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """read_committed: an aborted transaction's events are not exported; no group
    id: no consumer group appears and nothing is committed."""
    half = [e for e in traffic.events if int(e.conversation_id[1:]) < CONVERSATIONS // 2]
    rest = [e for e in traffic.events if int(e.conversation_id[1:]) >= CONVERSATIONS // 2]
    produce(cluster, half, aborted=rest)
    live = f"{cluster.prefix}projector"
    asyncio.run(_commit_for_group(cluster, live, 1))
    groups_before = asyncio.run(_groups(cluster.bootstrap))
    committed_before = asyncio.run(_committed(cluster.bootstrap, live))
    out = tmp_path / "all.parquet"
    code, stdout, _ = export(capsys, "--out", str(out))
    assert code == 0
    assert exported(out) == expected(half)  # every event once, each conversation in seq order
    assert f"exported {len(half):,} events of {CONVERSATIONS // 2:,} conversations" in stdout
    types = pq.read_table(out, columns=["type"]).column("type").to_pylist()
    assert dict(type_counts(half)) == {t: types.count(t) for t in set(types)}
    assert asyncio.run(_groups(cluster.bootstrap)) == groups_before
    assert asyncio.run(_committed(cluster.bootstrap, live)) == committed_before
    assert set(committed_before.values()) == {1}


def test_from_starts_at_offsets_for_times_and_keeps_whole_conversations(
    cluster: Cluster, traffic: Traffic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    produce(cluster, traffic.events)
    times = sorted(e.at for e in traffic.events if isinstance(e, ConversationStarted))
    since, until = times[100], times[200]
    out = tmp_path / "range.parquet"
    code, _, stderr = export(capsys, "--out", str(out), "--from", str(since), "--to", str(until))
    assert code == 0
    assert exported(out) == expected(cohort(traffic.events, since, until))
    scanned = [int(n.replace(",", "")) for n in re.findall(r"100%\s+([\d,]+)/", stderr)]
    assert scanned and scanned[-1] < len(command_records(traffic.events))  # skipped the start


def test_flow_and_site_filters_and_load_events(
    cluster: Cluster, traffic: Traffic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    produce(cluster, traffic.events)
    out = tmp_path / "f.parquet"
    assert export(capsys, "--out", str(out), "--flow", "saas-demo", "--site", "acme")[0] == 0
    assert exported(out) == expected(cohort(traffic.events, flow_id="saas-demo", site_id="acme"))
    frame = load_events(kafka=cluster.settings, flow_id="saas-demo", site_id="acme")
    key = ["conversation_id", "seq"]
    pd.testing.assert_frame_equal(
        frame.sort_values(key).reset_index(drop=True),
        pq.read_table(out).to_pandas().sort_values(key).reset_index(drop=True),
    )


def test_a_mistyped_flow_or_site_is_an_error_naming_the_ids(
    cluster: Cluster, traffic: Traffic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An id neither configured nor in the topic: exit 2, one line, no file."""
    produce(cluster, traffic.events[:200])
    out = tmp_path / "typo.parquet"
    code, stdout, stderr = export(capsys, "--out", str(out), "--flow", "saas-dmeo")
    assert code == 2 and stdout == ""
    *progress, line = stderr.splitlines()  # known only once the topic was read
    assert all(p.startswith("export: ") for p in progress)
    assert "'saas-dmeo'" in line and "saas-demo" in line and "--flow" in line
    assert not out.exists()
    code, _, stderr = export(capsys, "--out", str(out), "--site", "acmee")
    assert code == 2 and "'acmee'" in stderr and "--site" in stderr
    assert not out.exists()


def test_an_unknown_version_names_partition_and_offset(
    cluster: Cluster, traffic: Traffic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = traffic.events[0]
    record = orjson.loads(command_records([first])[0][1])
    record["events"][0]["v"] = 3
    records = command_records(traffic.events[:50])

    async def send() -> tuple[int, int]:
        producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap)
        await producer.start()
        try:
            for cid, value in records:
                await producer.send_and_wait(
                    f"{cluster.prefix}events", key=cid.encode(), value=value
                )
            meta = await producer.send_and_wait(
                f"{cluster.prefix}events", key=b"newer", value=orjson.dumps(record)
            )
            return meta.partition, meta.offset
        finally:
            await producer.stop()

    partition, offset = asyncio.run(send())
    out = tmp_path / "x.parquet"
    code, stdout, stderr = export(capsys, "--out", str(out))
    assert code == 2 and stdout == ""
    assert f"partition {partition} offset {offset}: ConversationStarted version 3" in stderr
    assert "upgrade leadflow" in stderr
    assert not out.exists()


def test_an_empty_topic_and_an_empty_range_write_empty_files(
    cluster: Cluster, traffic: Traffic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "empty.parquet"
    code, stdout, _ = export(capsys, "--out", str(out))
    assert code == 0 and stdout.startswith("exported 0 events of 0 conversations")
    assert pq.read_table(out).schema == schema(False)
    produce(cluster, traffic.events[:100])
    code, stdout, _ = export(capsys, "--out", str(out), "--from", str(traffic.events[-1].at + 3600))
    assert code == 0 and stdout.startswith("exported 0 events")
    assert pq.read_table(out).num_rows == 0


def test_a_missing_topic_is_a_usage_error(
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("LEADFLOW_TOPIC_PREFIX", "no-such-prefix.")
    code, _, stderr = export(capsys, "--out", str(tmp_path / "x.jsonl"))
    assert code == 2 and "does not exist" in stderr


def test_include_pii_opens_leads_with_the_redis_keys(
    cluster: Cluster, traffic: Traffic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    produce(cluster, traffic.events)
    keys = dict(traffic.keys._keys)
    leads = [e for e in traffic.events if isinstance(e, LeadCaptured)]
    erased = leads[0].conversation_id

    async def store_keys() -> None:
        redis = Redis.from_url(cluster.redis_url)
        try:
            for cid, key in keys.items():
                if cid != erased:
                    await redis.set(f"{cluster.prefix}key:{cid}", key)
        finally:
            await redis.aclose()

    asyncio.run(store_keys())
    out = tmp_path / "pii.parquet"
    code, stdout, stderr = export(capsys, "--out", str(out), "--include-pii")
    assert code == 0
    assert "@example.com" not in stdout + stderr
    rows = {
        r["conversation_id"]: r
        for r in pq.read_table(out).to_pylist()
        if r["type"] == "LeadCaptured"
    }
    assert len(rows) == len(leads)
    assert rows[erased]["lead_erased"] and rows[erased]["lead"] is None
    opened = [orjson.loads(r["lead"]) for cid, r in rows.items() if cid != erased]
    assert all(lead["email"].endswith("@example.com") for lead in opened)


def test_an_unreachable_broker_is_a_clean_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("LEADFLOW_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    code, stdout, stderr = export(capsys, "--out", str(tmp_path / "x.parquet"))
    assert code == 2 and stdout == ""
    assert "stopped, nothing written: cannot reach Kafka at 127.0.0.1:" in stderr
    assert not list(tmp_path.iterdir())
