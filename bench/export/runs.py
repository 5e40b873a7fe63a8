"""One timed run each: the export to Parquet, and the raw read it is built on.

The raw reads are the baselines: the same SQLite chunks (``SELECT`` of the
bodies, nothing decoded) and the same manually assigned Kafka consumer
(records fetched, nothing decoded). export / raw shows what decoding, the
columns and Parquet cost on top of reading.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bench.procstats import machine_cpu_seconds
from projector.export.arrow import schema
from projector.export.export import export_events
from projector.export.kafka_reader import assign_ranges
from projector.export.sinks import ParquetSink
from projector.export.source import KafkaOrigin, Origin, Selection, SqliteOrigin
from projector.export.sqlite_reader import CHUNK, bounds, open_readonly, read_chunk
from projector.kafka_replay import read_records
from services.distributed.readers import manual_consumer
from services.distributed.settings import KafkaSettings


@dataclass(frozen=True, slots=True)
class Run:
    kind: str  # "export" or "raw"
    origin: str  # "sqlite" or "kafka"
    events: int  # events exported (export) or rows/records read (raw)
    seconds: float
    cpu_seconds: float
    machine_cpu_seconds: float | None
    output_bytes: int = 0

    def json(self, events: int) -> dict[str, Any]:
        """``events``: the log's events, the rate's numerator for both kinds."""
        return {
            "kind": self.kind,
            "origin": self.origin,
            "items": self.events,
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "events_per_s": round(events / self.seconds),
            "events_per_cpu_s": round(events / max(1e-9, self.cpu_seconds)),
            "others_cores": None
            if self.machine_cpu_seconds is None
            else round(max(0.0, self.machine_cpu_seconds - self.cpu_seconds) / self.seconds, 2),
            "output_bytes": self.output_bytes,
        }


def _timed(kind: str, origin: str, fn: Any) -> Run:
    """``fn`` timed: wall and this process's CPU, and the whole machine's CPU
    (what the other processes took is the difference: the machine is shared)."""
    machine, wall, cpu = machine_cpu_seconds(), time.perf_counter(), time.process_time()
    items, size = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = machine_cpu_seconds()
    busy = None if machine is None or after is None else after - machine
    return Run(kind, origin, items, wall, cpu, busy, size)


def export_run(origin: Origin, out: Path) -> Run:
    def go() -> tuple[int, int]:
        sink = ParquetSink(out, schema(False))
        result = asyncio.run(export_events(origin, Selection(), sink))
        if pq.ParquetFile(out).metadata.num_rows != result.events:
            raise AssertionError("the Parquet file does not hold every exported event")
        return result.events, out.stat().st_size

    name = "sqlite" if isinstance(origin, SqliteOrigin) else "kafka"
    return _timed("export", name, go)


def raw_sqlite_run(data_dir: Path) -> Run:
    def go() -> tuple[int, int]:
        conn = open_readonly(data_dir)
        try:
            after, end, _ = conn.call_blocking(partial(bounds, since=None))
            rows = 0
            while after < end:
                chunk = conn.call_blocking(partial(read_chunk, after=after, end=end, limit=CHUNK))
                if not chunk:
                    break
                after, rows = chunk[-1][0], rows + len(chunk)
            return rows, 0
        finally:
            conn.close()

    return _timed("raw", "sqlite", go)


async def _consume(settings: KafkaSettings) -> int:
    consumer = manual_consumer(settings)
    await consumer.start()
    try:
        start, end = await assign_ranges(consumer, settings, None)
        return sum(
            [len(records) async for records, _ in read_records(consumer, dict(start), end, 10_000)]
        )
    finally:
        await consumer.stop()


def raw_kafka_run(settings: KafkaSettings) -> Run:
    return _timed("raw", "kafka", lambda: (asyncio.run(_consume(settings)), 0))


def origins(data_dir: Path, settings: KafkaSettings | None) -> list[Origin]:
    out: list[Origin] = [SqliteOrigin(data_dir)]
    if settings is not None:
        out.append(KafkaOrigin(settings))
    return out
