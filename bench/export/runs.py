"""One timed run each: the export to Parquet, and the raw read it is built on.

The raw reads are the baselines: the same bounded read through the same log
followers (SQLite chunks of bodies, Kafka records of a manually assigned
consumer), nothing decoded. export / raw shows what decoding, the
columns and Parquet cost on top of reading.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bench.procstats import machine_cpu_seconds
from projector.export.arrow import schema
from projector.export.export import export_events
from projector.export.kafka_reader import events_follower as kafka_follower
from projector.export.sinks import ParquetSink
from projector.export.source import KafkaOrigin, Origin, Selection, SqliteOrigin
from projector.export.sqlite_reader import CHUNK
from projector.export.sqlite_reader import events_follower as sqlite_follower
from services.distributed.settings import KafkaSettings
from services.log_follower import LogFollower, bounded_range, read_bounded


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


async def _read(follower: LogFollower, chunk: int) -> int:
    """Records of the whole log, read as the export reads them, none decoded."""
    await follower.start()
    try:
        start, end = await bounded_range(follower)
        return sum([len(c.records) async for c in read_bounded(follower, start, end, chunk)])
    finally:
        await follower.stop()


def raw_sqlite_run(data_dir: Path) -> Run:
    return _timed(
        "raw", "sqlite", lambda: (asyncio.run(_read(sqlite_follower(data_dir), CHUNK)), 0)
    )


def raw_kafka_run(settings: KafkaSettings) -> Run:
    return _timed("raw", "kafka", lambda: (asyncio.run(_read(kafka_follower(settings), 10_000)), 0))


def origins(data_dir: Path, settings: KafkaSettings | None) -> list[Origin]:
    out: list[Origin] = [SqliteOrigin(data_dir)]
    if settings is not None:
        out.append(KafkaOrigin(settings))
    return out
