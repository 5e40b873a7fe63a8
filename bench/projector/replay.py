"""Part 2: a full replay of the ``events`` topic into Redis, timed end to end.

The log is produced first, untimed: one ``EventBatch`` record per command,
keyed by conversation id, into the ``events`` topic of a fresh topic prefix
(created by ``ensure_topics`` with ``partitions`` partitions). Then
``rebuild_from_kafka`` runs on its own (consumer start, metadata, every
partition to its end offset, the frontier, the switch, the drop of the
previous namespace), into a fresh Redis prefix.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from bench.kafka.sysstats import CpuSnapshot
from bench.procstats import Json
from bench.projector.engine_runs import cpu_block, pids
from bench.projector.gcstats import GcTimer
from bench.projector.profiling import Spy
from bench.projector.traffic import Summary
from bench.projector.verify import counter_keys, sample_ids
from projector.kafka_replay import rebuild_from_kafka
from projector.redis_store import RedisReadModel
from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics


async def produce(
    settings: KafkaSettings, records: list[tuple[bytes, bytes]], summary: Summary
) -> Json:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    began = time.perf_counter()
    await producer.start()
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(settings.events_topic, key=key, value=value))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    wall = time.perf_counter() - began
    return {
        "topic": settings.events_topic,
        "partitions": settings.partitions,
        "records": len(records),
        "events": summary.events,
        "bytes": sum(len(v) for _, v in records),
        "wall_s": round(wall, 2),
        "records_per_s": round(len(records) / wall, 1),
    }


class _Progress:
    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.next = 0.1

    def __call__(self, done: int, total: int) -> None:
        if total and done / total >= self.next:
            print(
                f"  replay {done / total:4.0%}: {done:,}/{total:,} records, "
                f"{time.perf_counter() - self.began:.1f} s",
                flush=True,
            )
            while self.next <= done / total:
                self.next += 0.1


async def rebuild(
    settings: KafkaSettings,
    client: Redis,
    prefix: str,
    summary: Summary,
    redis_pid: int | None,
    broker_pid: int | None,
    profile_out: Path | None = None,
) -> Json:
    """One timed replay; with ``profile_out``, py-spy samples it (not for judging)."""
    store = RedisReadModel(client, prefix=prefix)
    spy = None if profile_out is None else await Spy(profile_out).__aenter__()
    before = CpuSnapshot.take(pids(redis_pid, broker_pid))
    began = time.perf_counter()
    with GcTimer() as collector:
        report = await rebuild_from_kafka(settings, store, progress=_Progress())
    wall = time.perf_counter() - began
    after = CpuSnapshot.take(pids(redis_pid, broker_pid))
    if spy is not None:
        await spy.__aexit__()
    cpu = cpu_block(before, after, summary.events)
    run: Json = {
        "prefix": prefix,
        "namespace": report.namespace,
        "events": report.events,
        "conversations": report.conversations,
        "leads": report.leads,
        "wall_s": round(wall, 2),
        "report_seconds": round(report.seconds, 2),
        "events_per_s": round(report.events / wall, 1),
        **cpu,
        "gc": collector.as_json(report.events),
    }
    if spy is not None:
        run["profile"] = spy.summary()
    used = cpu["cpu_s"].get("projector")
    run["events_per_projector_cpu_s"] = round(report.events / used, 1) if used else None
    run["checks"] = await _check(store, report.namespace, run, summary)
    return run


async def _check(store: RedisReadModel, namespace: str, run: Json, summary: Summary) -> Json:
    current = await store.current_namespace()
    started = 0
    for key in counter_keys(summary):
        if key.startswith("funnel:"):
            started += (await store.counters(key)).get("started", 0)
    wrong: list[str] = []
    for cid in sample_ids(summary, 200, 1):
        view = await store.conversation(cid)
        if view is None or view.last_seq != summary.last_seq[cid]:
            wrong.append(cid)
    generated = len(summary.conversations)
    checks: Json = {
        "conversations_generated": generated,
        "conversations_replayed": run["conversations"],
        "funnel_started_in_redis": started,
        "events_produced": summary.events,
        "events_replayed": run["events"],
        "switched_to_new_namespace": current == namespace,
        "sampled_views_wrong": wrong[:10],
    }
    checks["ok"] = (
        run["conversations"] == generated
        and started == generated
        and run["events"] == summary.events
        and current == namespace
        and not wrong
    )
    return checks
